"""The container image, built without a Docker daemon by scripts/build_image.py, and started.

The Dockerfile is the source of truth; the first tests parse it and check that the build
script does the same (file list, user, entrypoint, cmd, env), which needs no image. The others
use the image that `.ci/run` built (`python scripts/build_image.py build`, into build/image or
$IMAGE_DIR): its size, its contents (no TensorFlow runtime, no simulator, no pip), its OCI
config, and the started image answering /metrics and /-/healthy against the simulator as uid
65534, with crun (host network, read-only root) and with chroot.

With CI=true a missing image, tool or root is a failure; elsewhere those tests skip.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from tests.helpers import free_port, in_ci

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "scripts"))
import build_image  # noqa: E402

IN_CI = in_ci()
IMAGE_DIR = Path(os.environ.get("IMAGE_DIR", build_image.DEFAULT_OUT))
# Limits with room: measured 68 MB compressed, 189 MB unpacked (venv 87 MB), ~1 s to ready.
IMAGE_LIMIT_MB = 120
ROOTFS_LIMIT_MB = 260
READY_LIMIT_S = 20
RUNTIMES = ["crun", "podman", "chroot"]
MODELS = ["half_plus_two", "image_classifier"]  # the simulator's demo models


def _unavailable(reason: str):
    if IN_CI:
        pytest.fail(f"{reason} (CI=true: the image step of .ci/run must have built it)")
    pytest.skip(reason)


# --- The Dockerfile and the build script agree (no image needed). -------------------------

def test_build_script_is_in_step_with_the_dockerfile():
    assert build_image.dockerfile_differences() == []


def test_dockerfile_facts_as_parsed():
    facts = build_image.parse_dockerfile()
    builder, final = facts["builder"], facts["final"]
    assert final["user"] == "65534:65534" == build_image.USER
    assert final["entrypoint"] == ["tfserving-exporter"] == build_image.ENTRYPOINT
    assert final["cmd"] == ["run"] == build_image.CMD
    assert final["copies"] == [("builder", ["/opt/venv"], "/opt/venv")]
    copied = [path for _stage, sources, _dest in builder["copies"] for path in sources]
    assert copied == build_image.source_paths()
    assert "tfserving_simulator/" not in copied
    for path in copied:
        assert (REPO / path).exists(), path
    # The health check asks the default port that EXPOSE names.
    assert f"127.0.0.1:{final['expose'][0]}/-/healthy" in final["healthcheck"]


def test_dockerignore_admits_exactly_the_copied_paths():
    lines = [line.strip() for line in (REPO / ".dockerignore").read_text().splitlines()
             if line.strip() and not line.startswith("#")]
    admitted = [line[1:].rstrip("/") for line in lines if line.startswith("!")]
    assert lines[0] == "*"
    assert admitted == [path.rstrip("/") for path in build_image.source_paths()]


@pytest.mark.parametrize("edit, what", [
    (("USER 65534:65534", "USER 0"), "USER"),
    (('ENTRYPOINT ["tfserving-exporter"]', 'ENTRYPOINT ["python", "-m", "exporter"]'),
     "ENTRYPOINT"),
    (('CMD ["run"]', 'CMD ["demo"]'), "CMD"),
    (("COPY tfserving_wire/ tfserving_wire/",
      "COPY tfserving_wire/ tfserving_wire/\nCOPY tfserving_simulator/ tfserving_simulator/"),
     "builder COPY"),
    (("--download-dir /tmp/tf-wheel", "--download-dir /tmp/tf-wheel --no-pin-host"),
     "builder RUN command"),
    (("    MALLOC_ARENA_MAX=2", "    MALLOC_ARENA_MAX=4"), "final ENV"),
])
def test_a_changed_dockerfile_is_caught(tmp_path, edit, what):
    text = (REPO / "Dockerfile").read_text()
    old, new = edit
    assert old in text
    changed = tmp_path / "Dockerfile"
    changed.write_text(text.replace(old, new))
    differences = build_image.dockerfile_differences(build_image.parse_dockerfile(str(changed)))
    assert [d for d in differences if d.startswith(what + ":")], differences


# --- The built image. ---------------------------------------------------------------------

@pytest.fixture(scope="module")
def image() -> dict:
    summary = IMAGE_DIR / "summary.json"
    if not summary.is_file():
        _unavailable(f"no image built: {summary} missing "
                     "(python scripts/build_image.py build --install-tools)")
    with open(summary) as file:
        found = json.load(file)
    if not Path(found["rootfs"]).is_dir():
        _unavailable(f"{found['rootfs']} missing")
    return found


def _oci_blob(layout: Path, digest: str) -> Path:
    algorithm, value = digest.split(":")
    return layout / "blobs" / algorithm / value


def test_image_size_is_reported(image):
    layout = IMAGE_DIR / "oci"
    index = json.loads((layout / "index.json").read_text())
    [descriptor] = [m for m in index["manifests"]
                    if m["annotations"]["org.opencontainers.image.ref.name"] == image["tag"]]
    manifest = json.loads(_oci_blob(layout, descriptor["digest"]).read_text())
    blobs = [manifest["config"], *manifest["layers"]]
    for blob in blobs:
        assert _oci_blob(layout, blob["digest"]).stat().st_size == blob["size"]
    size = sum(b["size"] for b in blobs) + descriptor["size"]
    assert size == image["image_bytes"]
    rootfs = build_image.directory_size(image["rootfs"])
    assert rootfs == image["rootfs_bytes"]
    print(f"\nimage {image['image']}: OCI {size / 1e6:.1f} MB "
          f"(layers {[round(b['size'] / 1e6, 1) for b in manifest['layers']]} MB gzip), "
          f"unpacked rootfs {rootfs / 1e6:.1f} MB, of which /opt/venv {image['venv_mb']} MB; "
          f"{image['python']}; built in {image['build_seconds']} s "
          f"(base {image['base_seconds']} s{', cached' if image['base_cached'] else ''}, "
          f"venv {image['venv_seconds']} s, OCI {image['oci_seconds']} s, "
          f"unpack {image['unpack_seconds']} s)")
    assert size / 1e6 < IMAGE_LIMIT_MB
    assert rootfs / 1e6 < ROOTFS_LIMIT_MB


def test_image_config_is_the_dockerfiles(image):
    layout = IMAGE_DIR / "oci"
    index = json.loads((layout / "index.json").read_text())
    [descriptor] = [m for m in index["manifests"]
                    if m["annotations"]["org.opencontainers.image.ref.name"] == image["tag"]]
    manifest = json.loads(_oci_blob(layout, descriptor["digest"]).read_text())
    config = json.loads(_oci_blob(layout, manifest["config"]["digest"]).read_text())["config"]
    final = build_image.parse_dockerfile()["final"]
    assert config["User"] == final["user"]
    assert config["Entrypoint"] == final["entrypoint"]
    assert config["Cmd"] == final["cmd"]
    assert config["WorkingDir"] == final["workdir"]
    assert sorted(config["ExposedPorts"]) == [f"{port}/tcp" for port in final["expose"]]
    env = dict(item.split("=", 1) for item in config["Env"])
    for key, value in final["env"].items():
        if key == "PATH":
            assert env["PATH"].startswith(value.replace("$PATH", ""))
        else:
            assert env[key] == value, key
    assert sorted(config["Labels"]) == sorted(final["labels"])
    assert config["Labels"]["org.opencontainers.image.version"] == image["tag"]


def test_image_has_no_tensorflow_runtime_no_simulator_no_pip(image):
    rootfs = Path(image["rootfs"])
    site = rootfs / "opt/venv/lib/python3.11/site-packages"
    assert (site / "tensorflow/core/framework/tensor_pb2.py").is_file()  # generated modules
    assert not (site / "tensorflow/__init__.py").exists()
    assert (site / "exporter/cli.py").is_file()
    found = {"libtensorflow": [], "tensorflow dist": [], "simulator": [], "pip": []}
    for directory, dirs, names in os.walk(rootfs):
        for name in dirs + names:
            path = os.path.join(directory, name)
            if name.startswith("libtensorflow"):
                found["libtensorflow"].append(path)
            if re.match(r"tensorflow(_cpu|_gpu|_intel)?-[0-9].*\.dist-info$", name) or \
                    name in ("keras", "tensorboard"):
                found["tensorflow dist"].append(path)
            if "tfserving_simulator" in name or "demo_data" == name:
                found["simulator"].append(path)
            if re.match(r"pip(-[0-9].*\.dist-info)?$", name) and "site-packages" in directory:
                found["pip"].append(path)
    assert found == {"libtensorflow": [], "tensorflow dist": [], "simulator": [], "pip": []}
    # The only python is Debian's, which the venv links to.
    assert os.readlink(rootfs / "opt/venv/bin/python3") == "/usr/bin/python3"
    assert not list((rootfs / "usr/local/bin").iterdir())


# --- The started image. -------------------------------------------------------------------

def _require_runtime(runtime: str) -> None:
    if os.geteuid() != 0:
        _unavailable("starting the image needs root (crun, chroot, mounts)")
    for tool in ([runtime] if runtime != "chroot" else []) + ["unshare", "chroot"]:
        if shutil.which(tool) is None:
            _unavailable(f"{tool} not installed")


def _status(pid: int) -> dict[str, str]:
    with open(f"/proc/{pid}/status") as file:
        return dict(line.rstrip("\n").split(":\t", 1) for line in file if ":\t" in line)


def _started(image, runtime, args, log_path):
    log = open(log_path, "wb")
    container = build_image.start(image["bundle"], args, runtime=runtime, stdout=log,
                                  stderr=subprocess.STDOUT)
    return container, log


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_started_image_serves_the_simulator_as_nobody(image, runtime, simulator, tmp_path):
    _require_runtime(runtime)
    port = free_port()
    args = ["run", f"--tfserving.grpc-address=127.0.0.1:{simulator.grpc_port}",
            f"--tfserving.rest-address=http://127.0.0.1:{simulator.rest_port}",
            f"--web.listen-address=127.0.0.1:{port}",  # the models.config is not in the image:
            *[f"--model={name}" for name in MODELS]]
    url = f"http://127.0.0.1:{port}"
    started = time.monotonic()
    container, log = _started(image, runtime, args, tmp_path / "container.log")
    try:
        try:
            build_image.wait_ready(url + "/-/ready", container, timeout=READY_LIMIT_S)
        except (RuntimeError, TimeoutError) as err:
            pytest.fail(f"{err}: {(tmp_path / 'container.log').read_text()[-3000:]}")
        ready_seconds = time.monotonic() - started

        status = _status(container.pid)
        assert status["Uid"].split() == ["65534"] * 4, status["Uid"]
        assert status["Gid"].split() == ["65534"] * 4, status["Gid"]
        assert status["Groups"].split() in ([], ["65534"]), status["Groups"]
        # The exporter itself (the console script exec'd by the runtime), in the image's root.
        assert os.readlink(f"/proc/{container.pid}/exe").endswith("/usr/bin/python3.11")
        assert os.path.realpath(f"/proc/{container.pid}/root") in (
            os.path.realpath(image["rootfs"]), "/")  # "/" when seen from another mount ns
        # Its own root, not this machine's (which has no /opt/venv): the image's venv is there.
        assert os.path.exists(f"/proc/{container.pid}/root/opt/venv/pyvenv.cfg")
        assert not os.path.exists("/opt/venv/pyvenv.cfg")

        healthy = requests.get(url + "/-/healthy", timeout=10)
        assert healthy.status_code == 200 and healthy.text == "Healthy\n"
        metrics = requests.get(url + "/metrics", timeout=30)
        assert metrics.status_code == 200, metrics.text[:500]
        assert 'tfserving_up{protocol="grpc"} 1.0' in metrics.text
        assert 'tfserving_up{protocol="rest"} 1.0' in metrics.text
        for name in MODELS:
            assert re.search(r'^tfserving_model_version_state\{[^}]*model="%s"' % name,
                             metrics.text, re.M), name
        rss_kib = int(_status(container.pid)["VmRSS"].split()[0])
        print(f"\n{runtime}: ready in {ready_seconds:.2f} s, exporter RSS {rss_kib / 1024:.1f} MiB "
              f"after one scrape, pid {container.pid}, Uid {status['Uid']}")
        measured = IMAGE_DIR / f"run-{runtime}.json"
        measured.write_text(json.dumps({"runtime": runtime, "rss_kib": rss_kib,
                                        "ready_seconds": round(ready_seconds, 2)}))
    finally:
        code = container.stop()
        log.close()
    assert code in (0, -15, 143), (tmp_path / "container.log").read_text()[-3000:]


def test_image_has_no_simulator_to_run(image, tmp_path):
    _require_runtime("crun")
    container, log = _started(image, "crun", ["simulate", "--port=0"], tmp_path / "out.log")
    try:
        code = container.process.wait(60)
    finally:
        container.stop()
        log.close()
    out = (tmp_path / "out.log").read_text()
    assert code == 1, out
    assert "this installation has no TF Serving simulator" in out
