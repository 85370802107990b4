"""The container image's slim environment, built here as a plain venv (no Docker daemon here).

scripts/build_slim_venv.py is what the Dockerfile's builder stage runs; these tests build it
once into a temporary directory and check that it holds no TensorFlow runtime and no TF
Serving simulator, stays under 100 MB, and runs the exporter: its smoke test subset passes with
the venv's own python (the simulator those tests talk to comes from the checkout, as test code).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import zipfile
from importlib.metadata import version as installed_version
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
SCRIPTS = REPO / "scripts"
sys.path.insert(0, str(SCRIPTS))
import tf_proto_files  # noqa: E402

# Building the venv (pip, possibly the network) belongs to the first test's time budget.
pytestmark = pytest.mark.timeout(600)

SIZE_LIMIT_MB = 100
SMOKE_TESTS = ["tests/test_protos.py", "tests/test_exporter_metrics.py", "tests/test_server.py"]
# Strips site-packages from sys.path to fake a machine without protos; in the venv that also
# strips the installed exporter, so it only makes sense in a source checkout (where it runs).
NOT_IN_VENV = ["tests/test_protos.py::test_missing_protos_give_a_clear_error"]


def _build(dest: Path) -> dict:
    out = subprocess.run([sys.executable, str(SCRIPTS / "build_slim_venv.py"), "--dest", str(dest),
                          "--json"], capture_output=True, text=True, timeout=540)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    print(out.stdout)
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def slim(tmp_path_factory) -> dict:
    return _build(tmp_path_factory.mktemp("slim") / "venv")


def test_site_packages_is_under_100_mb(slim):
    print(f"\nslim venv: site-packages {slim['site_packages_mb']} MB, "
          f"{slim['tf_modules']} TF modules ({slim['tf_modules_bytes'] / 1024:.0f} KiB), "
          f"built in {slim['seconds']} s")
    measured = sum(p.stat().st_size for p in Path(slim["site_packages"]).rglob("*")
                   if p.is_file() and not p.is_symlink())
    assert measured == slim["site_packages_bytes"]
    assert measured / 1e6 < SIZE_LIMIT_MB


def test_venv_has_no_tensorflow_runtime(slim):
    site = Path(slim["site_packages"])
    venv = Path(slim["dest"])
    assert (site / "tensorflow" / "core" / "framework" / "tensor_pb2.py").is_file()
    assert not (site / "tensorflow" / "__init__.py").exists()
    assert not list(site.glob("tensorflow-*.dist-info"))
    assert not list(site.glob("tensorflow_cpu-*.dist-info"))
    assert not (site / "keras").exists()
    assert [str(p) for p in venv.rglob("*libtensorflow*")] == []
    # Only generated modules (and empty package markers) below tensorflow/.
    for path in (site / "tensorflow").rglob("*.py"):
        assert path.name.endswith("_pb2.py") or (path.name == "__init__.py"
                                                 and path.stat().st_size == 0), path

    probe = ("import json, tensorflow\n"
             "print(json.dumps({'file': getattr(tensorflow, '__file__', None),\n"
             "                  'version': hasattr(tensorflow, '__version__'),\n"
             "                  'names': sorted(n for n in dir(tensorflow)\n"
             "                                  if not n.startswith('__'))}))")
    out = subprocess.run([slim["python"], "-c", probe], capture_output=True, text=True,
                         timeout=60)
    if out.returncode == 0:  # a bare namespace package: no TensorFlow API at all
        found = json.loads(out.stdout)
        assert found == {"file": None, "version": False, "names": []}, found
    else:
        assert "ModuleNotFoundError" in out.stderr


def test_venv_holds_exactly_the_shared_module_set(slim):
    """The Dockerfile runs the same script, so this is also the image's file list."""
    site = Path(slim["site_packages"])
    serving = tf_proto_files.Source(str(site))
    expected = tf_proto_files.compute(serving, serving)  # the venv's own files must suffice
    present = sorted(str(p.relative_to(site)) for p in (site / "tensorflow").rglob("*.py"))
    assert present == expected.files
    assert len(present) == slim["tf_modules"]
    assert expected.total_bytes == slim["tf_modules_bytes"]


def test_exporter_version_runs_from_the_venv(slim):
    executable = Path(slim["dest"]) / "bin" / "tfserving-exporter"
    out = subprocess.run([str(executable), "--version"], capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == f"tfserving-exporter {installed_version('tfserving-exporter')}"


def test_venv_leaves_the_simulator_out(slim, tmp_path):
    site = Path(slim["site_packages"])
    assert (site / "exporter" / "cli.py").is_file()
    assert (site / "tfserving_wire" / "protos.py").is_file()
    assert not (site / "tfserving_simulator").exists()
    assert not list(site.rglob("demo_data"))
    assert not [p for p in site.rglob("*.py") if "simulator" in p.name]
    executable = Path(slim["dest"]) / "bin" / "tfserving-exporter"
    for command in (["demo"], ["simulate", "--port=0"]):
        out = subprocess.run([str(executable), *command], capture_output=True, text=True,
                             timeout=60, cwd=tmp_path)
        assert out.returncode == 1, out
        assert out.stdout == ""
        [line] = out.stderr.splitlines()
        assert line.startswith(f"tfserving-exporter {command[0]}: this installation has no "
                               "TF Serving simulator"), line


def test_smoke_suite_passes_with_the_venv_python(slim, tmp_path):
    python = slim["python"]
    # The test tools go into a directory of their own, so the venv stays as the image has it.
    tools = [f"{name}=={installed_version(name)}" for name in ("pytest", "pytest-timeout")]
    subprocess.run([sys.executable, "-m", "pip", "--python", python, "--quiet", "install",
                    "--target", str(tmp_path / "tools"), *tools],
                   check=True, capture_output=True, timeout=300)
    # A copy of the tests without the source tree beside it, so `exporter` is the installed
    # package, not the checkout. The tests' TF Serving stand-in comes along as test code: the
    # venv has none, as the image has none.
    for tree in ("tests", "tfserving_simulator", "benchmarks"):  # the tests' own helpers
        shutil.copytree(REPO / tree, tmp_path / "run" / tree,
                        ignore=shutil.ignore_patterns("__pycache__"))
    env = dict(os.environ, PYTHONPATH=str(tmp_path / "tools"))
    where = subprocess.run(
        [python, "-c", "import exporter, tfserving_simulator as s; print(exporter.__file__); "
                       "print(s.__file__)"],
        cwd=tmp_path / "run", capture_output=True, text=True, timeout=60, env=env)
    exporter_file, simulator_file = where.stdout.split()
    assert exporter_file.startswith(slim["site_packages"]), where
    assert simulator_file.startswith(str(tmp_path / "run")), where
    deselect = [arg for test in NOT_IN_VENV for arg in ("--deselect", test)]
    out = subprocess.run([python, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                          "--timeout", "120", *SMOKE_TESTS, *deselect],
                         cwd=tmp_path / "run", capture_output=True, text=True, timeout=500, env=env)
    summary = out.stdout.strip().splitlines()[-1] if out.stdout.strip() else ""
    print(summary)
    assert out.returncode == 0, out.stdout[-5000:] + out.stderr[-2000:]
    assert "passed" in summary and "skipped" not in summary and "failed" not in summary


def test_a_wheel_of_the_repository_has_the_simulator_as_its_own_package(tmp_path):
    # Built from a copy, as the slim venv is, so the checkout gets no build/ litter.
    source = tmp_path / "src"
    source.mkdir()
    for item in ("pyproject.toml", "README.md"):
        shutil.copy2(REPO / item, source / item)
    for tree in ("exporter", "tfserving_wire", "tfserving_simulator"):
        shutil.copytree(REPO / tree, source / tree,
                        ignore=shutil.ignore_patterns("__pycache__"))
    out = subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps",
                          "--no-build-isolation", "-w", str(tmp_path / "wheels"), str(source)],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    [wheel] = list((tmp_path / "wheels").glob("tfserving_exporter-*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    top_level = {name.split("/")[0] for name in names if not name.split("/")[0].endswith(
        ".dist-info")}
    assert top_level == {"exporter", "tfserving_wire", "tfserving_simulator"}
    assert not [name for name in names if name.startswith("exporter/") and "simulator" in name]
    assert "tfserving_simulator/demo_data/golden/half_plus_two.json" in names
    assert "tfserving_simulator/demo_data/models/image_classifier/1/variables/variables.index" \
        in names and "tfserving_simulator/demo_data/models/half_plus_two/00000123/saved_model.pb" \
        in names
    assert "tfserving_simulator/app.py" in names and "tfserving_wire/protos.py" in names
    entry_points = next(name for name in names if name.endswith("entry_points.txt"))
    assert "tfserving-exporter = exporter.cli:main" in zipfile.ZipFile(wheel).read(
        entry_points).decode()


def test_rebuilding_is_idempotent(slim):
    again = _build(Path(slim["dest"]))
    for key in ("tf_modules", "tf_modules_bytes", "tensorflow_serving_api"):
        assert again[key] == slim[key], key
    # Byte counts drift by a few KiB between runs (bytecode caches written while the smoke
    # tests ran, pip's RECORD files); what must not happen is growth from piling up installs.
    assert abs(again["site_packages_bytes"] - slim["site_packages_bytes"]) \
        < 0.01 * slim["site_packages_bytes"]


# --- tf_proto_files on its own: the wheel path the Dockerfile takes, and its refusals ---

def _host_site_packages() -> str:
    import importlib.util
    spec = importlib.util.find_spec("tensorflow_serving")
    assert spec is not None and spec.submodule_search_locations
    return os.path.dirname(list(spec.submodule_search_locations)[0])


def test_wheel_and_directory_sources_give_the_same_set(tmp_path):
    site = _host_site_packages()
    directory = tf_proto_files.Source(site)
    from_dir = tf_proto_files.compute(directory, directory)
    assert from_dir.files and all(f.startswith("tensorflow/") for f in from_dir.files)
    assert "tensorflow/core/framework/tensor_pb2.py" in from_dir.files
    assert "tensorflow/__init__.py" not in from_dir.files

    # A stand-in tensorflow wheel: the needed files plus what must never be taken.
    wheel = tmp_path / "tensorflow-0.0.0-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as archive:
        for relpath in from_dir.files:
            archive.write(os.path.join(site, relpath), relpath)
        archive.writestr("tensorflow/__init__.py", "raise RuntimeError('runtime loaded')\n")
        archive.writestr("tensorflow/libtensorflow_framework.so.2", b"\0" * 64)
        archive.writestr("tensorflow/python/unrelated_pb2.py", "")
        archive.writestr("tensorflow-0.0.0.dist-info/METADATA", "Name: tensorflow\n")
    from_wheel_source = tf_proto_files.Source(str(wheel))
    from_wheel = tf_proto_files.compute(directory, from_wheel_source)
    assert from_wheel.files == from_dir.files
    assert from_wheel.total_bytes == from_dir.total_bytes

    dest = tmp_path / "site-packages"
    (dest / "tensorflow" / "stale").mkdir(parents=True)
    (dest / "tensorflow" / "stale" / "old_pb2.py").write_text("")
    tf_proto_files.remove_stale(from_wheel, str(dest))
    tf_proto_files.copy(from_wheel, from_wheel_source, str(dest))
    from_wheel_source.close()
    copied = sorted(str(p.relative_to(dest)) for p in dest.rglob("*") if p.is_file())
    assert copied == from_dir.files


def _fake_serving(tmp_path: Path, source: str) -> tf_proto_files.Source:
    apis = tmp_path / "serving" / "tensorflow_serving" / "apis"
    apis.mkdir(parents=True)
    (apis / "thing_pb2.py").write_text(source)
    return tf_proto_files.Source(str(tmp_path / "serving"))


def test_a_missing_tf_module_is_an_error(tmp_path):
    serving = _fake_serving(tmp_path, "from tensorflow.core.framework import nope_pb2\n"
                                      "from tensorflow.core.nothing_here import x_pb2\n")
    tensorflow = tf_proto_files.Source(_host_site_packages())
    with pytest.raises(tf_proto_files.ProtoSetError, match="tensorflow.core.nothing_here"):
        tf_proto_files.compute(serving, tensorflow)


def test_importing_the_tensorflow_package_itself_is_refused(tmp_path):
    serving = _fake_serving(tmp_path, "import tensorflow as tf\n")
    tensorflow = tf_proto_files.Source(_host_site_packages())
    with pytest.raises(tf_proto_files.ProtoSetError, match="runtime"):
        tf_proto_files.compute(serving, tensorflow)


def test_command_line_lists_the_set(tmp_path):
    site = _host_site_packages()
    out = subprocess.run([sys.executable, str(SCRIPTS / "tf_proto_files.py"), "--serving", site,
                          "--tensorflow", site, "--list", "--json"],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.strip().splitlines()
    summary = json.loads(lines[-1])
    assert summary["files"] == len(lines) - 1 > 0


# --- the Dockerfile: cannot be built here, so check it runs the script tested above ---

def _dockerfile() -> str:
    # Join continuation lines so each instruction is one line.
    return (REPO / "Dockerfile").read_text().replace("\\\n", " ")


def _instructions(text: str) -> list[tuple[str, str]]:
    return [(line.split(None, 1)[0].upper(), line.split(None, 1)[1].strip())
            for line in text.splitlines()
            if line.strip() and not line.lstrip().startswith("#")]


def test_dockerfile_builds_the_venv_with_the_same_script():
    text = _dockerfile()
    header = " ".join(line.lstrip("# ") for line in text.splitlines() if line.startswith("#"))
    assert "NOT BUILT IN THIS PROJECT'S CI" in header and "no Docker daemon" in header
    steps = _instructions(text)
    froms = [arg for op, arg in steps if op == "FROM"]
    assert froms == ["${PYTHON_IMAGE} AS builder", "${PYTHON_IMAGE}"]  # same base: venv links
    final = steps[[i for i, (op, _) in enumerate(steps) if op == "FROM"][1]:]
    builder = steps[:len(steps) - len(final)]
    copies = [arg for op, arg in builder if op == "COPY"]
    assert "scripts/build_slim_venv.py scripts/tf_proto_files.py scripts/" in copies
    runs = " ".join(arg for op, arg in builder if op == "RUN")
    assert "python scripts/build_slim_venv.py --dest /opt/venv" in runs
    final_ops = dict(final)
    assert ("COPY", "--from=builder /opt/venv /opt/venv") in final
    assert final_ops["USER"].split(":")[0] == "65534"
    assert final_ops["EXPOSE"] == "9850"
    assert json.loads(final_ops["ENTRYPOINT"]) == ["tfserving-exporter"]
    assert json.loads(final_ops["CMD"]) == ["run"]
    assert "http://127.0.0.1:9850/-/healthy" in final_ops["HEALTHCHECK"]
    labels = " ".join(arg for op, arg in final if op == "LABEL")
    for key in ("title", "description", "version", "revision", "created", "licenses"):
        assert f"org.opencontainers.image.{key}=" in labels, key


def test_dockerignore_lets_every_copied_file_through():
    rules = [line.strip() for line in (REPO / ".dockerignore").read_text().splitlines()
             if line.strip() and not line.startswith("#")]
    assert rules[0] == "*"
    allowed = {rule[1:].rstrip("/") for rule in rules if rule.startswith("!")}
    for op, arg in _instructions(_dockerfile()):
        if op == "COPY" and not arg.startswith("--from"):
            for source in arg.split()[:-1]:
                assert source.rstrip("/") in allowed, source


def test_healthcheck_command_follows_the_exporter_health(slim, exporter):
    instruction = dict(_instructions(_dockerfile()))["HEALTHCHECK"]
    command = json.loads(instruction[instruction.index("CMD") + 3:].strip())
    assert command[0] == "/opt/venv/bin/python"
    port = exporter.url.rsplit(":", 1)[1]

    def check(on_port: str) -> int:
        argv = [slim["python"]] + [arg.replace(":9850/", f":{on_port}/") for arg in command[1:]]
        return subprocess.run(argv, capture_output=True, timeout=30).returncode

    assert check(port) == 0
    from tests.helpers import free_port
    assert check(str(free_port())) != 0
