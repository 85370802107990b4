#!/usr/bin/env python3
"""Build the container image without a Docker daemon, and start it.

    python scripts/build_image.py build [--out build/image] [--install-tools]
    python scripts/build_image.py run [--out build/image] -- run --tfserving.grpc-address=...

The Dockerfile stays the source of truth for the real image (``docker build``); this script
builds the same image from what this project's machines can reach (Debian's and PyPI's
registries, no base image from a container registry) and refuses to build when the two are
out of step (``check_dockerfile``; tests/test_image.py checks the same):

1. Base: a Debian bookworm root filesystem made by ``mmdebstrap --variant=essential`` with
   only ``python3`` (Debian's 3.11.2), ``ca-certificates`` and ``libstdc++6`` (grpcio's wheel
   links to it); docs, man pages and locales left out, as in Debian's slim images. It stands
   in for ``python:3.11-slim-bookworm`` (bookworm-slim, i.e. the minbase variant with apt,
   plus ca-certificates, netbase, tzdata and its own newer CPython 3.11 in /usr/local): here
   there is no apt, netbase or tzdata, and the python is /usr/bin/python3. Kept as a tarball
   in the cache folder, keyed by the mmdebstrap options.
2. Builder stage: a copy of the base, chrooted into in a private mount namespace, with the
   same files the Dockerfile's builder COPYs (``BUILDER_COPIES``) bind-mounted at /src, and
   the same command (``BUILD_COMMAND``) run by the rootfs's own python3, so the venv's python
   links to the image's interpreter. The rootfs has no pip: pip's wheel is put on PYTHONPATH
   from outside (build_slim_venv.py runs ``python -m pip --python /opt/venv/bin/python``).
   By default the dependencies are pinned to the versions installed on this machine (what
   the test suite ran), with PIP_CONSTRAINT, and the TF generated modules come from this
   machine's installed ``tensorflow`` package (``--tensorflow-wheel`` given a site-packages
   directory, mounted read-only), so no 600 MB wheel is downloaded; ``--no-pin-host``
   resolves as the Dockerfile does (newest allowed, the tensorflow wheel downloaded).
   Then the builder RUN's checks: no tensorflow/__init__.py, no libtensorflow*, --version.
3. Final stage: the pristine base as one layer and the builder's /opt/venv as a second one
   (``COPY --from=builder /opt/venv /opt/venv``), made into an OCI image layout with
   ``umoci``, with the Dockerfile's ENV, USER, WORKDIR, EXPOSE, LABELs, ENTRYPOINT and CMD.
   HEALTHCHECK is Docker's image format only; the OCI config has no such field.
4. The image is unpacked again with ``umoci unpack`` into a runtime bundle (its config.json
   derived from the image config: user, env, cwd, args), which ``run`` starts with ``crun``,
   network namespace dropped (host network), root filesystem read-only. Where crun cannot
   run, ``--runtime chroot`` starts the same rootfs with chroot(8) --userspec=65534:65534 in
   a private mount namespace.

Outputs in --out: ``oci/`` (OCI image layout, tag ``IMAGE_TAG``), ``bundle/`` (config.json,
rootfs/), ``summary.json`` (sizes, times, versions). Needs root (mmdebstrap, chroot, crun).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request

from build_slim_venv import directory_size  # the slim venv's own measure (scripts/ is on path)

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
DOCKERFILE = os.path.join(REPO, "Dockerfile")
DEFAULT_OUT = os.path.join(REPO, "build", "image")
DEFAULT_CACHE = os.path.join(REPO, "build", "image-cache")

IMAGE_NAME = "tfserving-exporter"
APT_TOOLS = ("mmdebstrap", "umoci", "crun", "podman")

# --- What the Dockerfile says; tests/test_image.py and check_dockerfile() compare. ----------
# Builder stage: (sources, destination) of each COPY, relative to WORKDIR.
BUILDER_WORKDIR = "/src"
BUILDER_COPIES = [
    (["scripts/build_slim_venv.py", "scripts/tf_proto_files.py"], "scripts/"),
    (["pyproject.toml", "README.md"], "./"),
    (["exporter/"], "exporter/"),
    (["tfserving_wire/"], "tfserving_wire/"),
]
BUILDER_ENV = {"PIP_DISABLE_PIP_VERSION_CHECK": "1", "PIP_ROOT_USER_ACTION": "ignore",
               "PYTHONDONTWRITEBYTECODE": "1"}
# The first command of the builder's RUN (the rest are the checks in build_venv()).
BUILD_COMMAND = ["python", "scripts/build_slim_venv.py", "--dest", "/opt/venv",
                 "--download-dir", "/tmp/tf-wheel"]
VENV = "/opt/venv"
# Final stage.
FINAL_COPIES = [("builder", VENV, VENV)]
ENV = {"PATH": "/opt/venv/bin:$PATH", "PYTHONUNBUFFERED": "1", "PYTHONDONTWRITEBYTECODE": "1",
       "MALLOC_ARENA_MAX": "2"}
USER = "65534:65534"
WORKDIR = "/tmp"
EXPOSE = ["9850"]
ENTRYPOINT = ["tfserving-exporter"]
CMD = ["run"]
LABEL_KEYS = ["org.opencontainers.image.title", "org.opencontainers.image.description",
              "org.opencontainers.image.version", "org.opencontainers.image.revision",
              "org.opencontainers.image.created", "org.opencontainers.image.licenses",
              "org.opencontainers.image.documentation", "org.opencontainers.image.base.name"]

# --- The stand-in for python:3.11-slim-bookworm. -------------------------------------------
SUITE = "bookworm"
# libstdc++6: grpcio's manylinux wheel links to it ("ImportError: libstdc++.so.6: cannot open
# shared object file" without it); bookworm-slim has it because apt needs it, the essential
# variant has no apt.
PACKAGES = ["python3", "ca-certificates", "libstdc++6"]
MIRRORS = ["deb http://deb.debian.org/debian bookworm main",
           "deb http://deb.debian.org/debian bookworm-updates main",
           "deb http://deb.debian.org/debian-security bookworm-security main"]
MMDEBSTRAP_OPTIONS = [
    "--variant=essential", "--include=" + ",".join(PACKAGES),
    # usr-is-merged instead of usrmerge (which drags in perl, 50 MB).
    "--hook-dir=/usr/share/mmdebstrap/hooks/merged-usr",
    "--dpkgopt=path-exclude=/usr/share/man/*", "--dpkgopt=path-exclude=/usr/share/info/*",
    "--dpkgopt=path-exclude=/usr/share/locale/*", "--dpkgopt=path-exclude=/usr/share/doc/*",
    "--dpkgopt=path-include=/usr/share/doc/*/copyright",
]
# PATH of the base image's config (python:3.11-slim has /usr/local/bin first too).
BASE_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def _log(message: str) -> None:
    print(f"[build_image] {message}", file=sys.stderr, flush=True)


def run(command: list[str], **kwargs) -> subprocess.CompletedProcess:
    _log("$ " + " ".join(shlex.quote(c) for c in command))
    return subprocess.run(command, check=True, **kwargs)


# --- Dockerfile parsing. ------------------------------------------------------------------

def dockerfile_instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined, comments dropped."""
    instructions, current = [], ""
    for line in text.splitlines():
        stripped = line.strip()
        if not current and (not stripped or stripped.startswith("#")):
            continue
        if current and stripped.startswith("#"):  # comment inside a continued instruction
            continue
        if stripped.endswith("\\"):
            current += stripped[:-1] + " "
            continue
        current += stripped
        keyword, _, rest = current.partition(" ")
        instructions.append((keyword.upper(), rest.strip()))
        current = ""
    if current:
        keyword, _, rest = current.partition(" ")
        instructions.append((keyword.upper(), rest.strip()))
    return instructions


def _key_values(text: str) -> dict[str, str]:
    values = {}
    for item in shlex.split(text):
        key, sep, value = item.partition("=")
        if not sep:
            raise ValueError(f"not KEY=VALUE: {item!r} in {text!r}")
        values[key] = value
    return values


def parse_dockerfile(path: str = DOCKERFILE) -> dict:
    """The facts of the Dockerfile that this script must agree with."""
    with open(path, encoding="utf-8") as file:
        instructions = dockerfile_instructions(file.read())
    stages: list[dict] = []
    for keyword, rest in instructions:
        if keyword == "FROM":
            words = rest.split()
            name = words[2] if len(words) == 3 and words[1].upper() == "AS" else None
            stages.append({"from": words[0], "name": name, "copies": [], "env": {}, "run": [],
                           "labels": {}, "user": None, "workdir": None, "expose": [],
                           "entrypoint": None, "cmd": None, "healthcheck": None})
            continue
        if not stages:
            continue  # ARG before FROM
        stage = stages[-1]
        if keyword == "COPY":
            words = [w for w in shlex.split(rest)]
            source_stage = None
            while words and words[0].startswith("--"):
                flag = words.pop(0)
                if flag.startswith("--from="):
                    source_stage = flag.split("=", 1)[1]
            stage["copies"].append((source_stage, words[:-1], words[-1]))
        elif keyword == "ENV":
            stage["env"].update(_key_values(rest))
        elif keyword == "LABEL":
            stage["labels"].update(_key_values(rest))
        elif keyword == "RUN":
            words = rest.split()
            while words and words[0].startswith("--"):
                words.pop(0)  # --mount=...
            stage["run"].append(" ".join(words))
        elif keyword == "USER":
            stage["user"] = rest
        elif keyword == "WORKDIR":
            stage["workdir"] = rest
        elif keyword == "EXPOSE":
            stage["expose"].extend(rest.split())
        elif keyword in ("ENTRYPOINT", "CMD"):
            stage[keyword.lower()] = json.loads(rest)
        elif keyword == "HEALTHCHECK":
            stage["healthcheck"] = rest
    if len(stages) != 2:
        raise ValueError(f"{path}: expected a builder and a final stage, found {len(stages)}")
    return {"builder": stages[0], "final": stages[1]}


def dockerfile_differences(facts: dict | None = None) -> list[str]:
    """What this script does differently from the Dockerfile; empty when in step."""
    facts = facts or parse_dockerfile()
    builder, final = facts["builder"], facts["final"]
    found: list[str] = []

    def same(what, dockerfile_value, script_value):
        if dockerfile_value != script_value:
            found.append(f"{what}: Dockerfile {dockerfile_value!r}, "
                         f"build_image.py {script_value!r}")

    same("builder stage name", builder["name"], "builder")
    same("builder WORKDIR", builder["workdir"], BUILDER_WORKDIR)
    same("builder COPY", builder["copies"], [(None, s, d) for s, d in BUILDER_COPIES])
    same("builder ENV", builder["env"], BUILDER_ENV)
    first = builder["run"][0].split("&&")[0].split() if builder["run"] else []
    same("builder RUN command", first, BUILD_COMMAND)
    same("final COPY", final["copies"], [(s, [p], d) for s, p, d in FINAL_COPIES])
    same("final ENV", final["env"], ENV)
    same("final RUN (none expected)", final["run"], [])
    same("USER", final["user"], USER)
    same("WORKDIR", final["workdir"], WORKDIR)
    same("EXPOSE", final["expose"], EXPOSE)
    same("ENTRYPOINT", final["entrypoint"], ENTRYPOINT)
    same("CMD", final["cmd"], CMD)
    same("LABEL keys", sorted(final["labels"]), sorted(LABEL_KEYS))
    return found


def check_dockerfile() -> None:
    differences = dockerfile_differences()
    if differences:
        raise SystemExit("build_image: out of step with the Dockerfile:\n  "
                         + "\n  ".join(differences))


def source_paths() -> list[str]:
    """The repository paths the builder stage copies (the image's file list)."""
    return [path for sources, _dest in BUILDER_COPIES for path in sources]


# --- Tools. ---------------------------------------------------------------------------------

def ensure_tools(install: bool) -> None:
    needed = list(APT_TOOLS)
    missing = [tool for tool in needed if shutil.which(tool) is None]
    if not missing:
        return
    if not install:
        raise SystemExit(f"build_image: missing {', '.join(missing)} "
                         f"(apt-get install --no-install-recommends {' '.join(APT_TOOLS)}, "
                         "or pass --install-tools)")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    command = ["apt-get", "install", "-y", "-qq", "--no-install-recommends", *APT_TOOLS]
    if subprocess.run(command, env=env, stdout=subprocess.DEVNULL).returncode != 0:
        run(["apt-get", "update", "-qq"], env=env)
        run(command, env=env, stdout=subprocess.DEVNULL)


# --- Steps. ---------------------------------------------------------------------------------

def base_tarball(cache: str) -> tuple[str, bool]:
    """The mmdebstrap root filesystem as a tarball in ``cache``; (path, made now)."""
    key = hashlib.sha256(json.dumps([SUITE, MMDEBSTRAP_OPTIONS, MIRRORS]).encode()).hexdigest()
    path = os.path.join(cache, f"base-{SUITE}-{key[:12]}.tar")
    if os.path.isfile(path):
        _log(f"base root filesystem from the cache: {path}")
        return path, False
    os.makedirs(cache, exist_ok=True)
    partial = path + ".partial.tar"
    run(["mmdebstrap", "--quiet", *MMDEBSTRAP_OPTIONS, SUITE, partial, *MIRRORS])
    os.replace(partial, path)
    return path, True


def extract(tarball: str, dest: str) -> None:
    if os.path.exists(dest):
        shutil.rmtree(dest)
    os.makedirs(dest)
    run(["tar", "-xpf", tarball, "--numeric-owner", "-C", dest])


def tidy_base(rootfs: str) -> None:
    """What a container runtime provides at start, left out of the image's layer."""
    dev = os.path.join(rootfs, "dev")
    for name in os.listdir(dev):
        path = os.path.join(dev, name)
        if os.path.isdir(path) and not os.path.islink(path):
            shutil.rmtree(path)
        else:
            os.unlink(path)
    for name in ("resolv.conf", "hostname"):
        path = os.path.join(rootfs, "etc", name)
        if os.path.lexists(path):
            os.unlink(path)
        open(path, "w").close()  # empty: the runtime mounts its own


def host_pins() -> list[str]:
    """name==version of what build_slim_venv.py pins when run by this machine's python."""
    sys.path.insert(0, HERE)
    import build_slim_venv as slim  # noqa: E402

    runtime, serving = slim.split_dependencies(
        slim.read_dependencies(os.path.join(REPO, "pyproject.toml")))
    pins = []
    for requirement in [serving, *runtime, "protobuf", "grpcio"]:
        name = slim.requirement_name(requirement)
        version = slim.host_version(name)
        if version:
            pins.append(f"{name}=={version}")
    return pins


def host_tensorflow_site() -> str | None:
    """The site-packages directory of this machine's tensorflow package, found, not imported."""
    import importlib.util

    spec = importlib.util.find_spec("tensorflow")
    if spec is None or not spec.submodule_search_locations:
        return None
    return os.path.dirname(list(spec.submodule_search_locations)[0])


def host_ca_bundle() -> str | None:
    """The CA bundle this machine's pip uses (PIP_CERT, pip's config, or the system's)."""
    candidates = [os.environ.get("PIP_CERT")]
    out = subprocess.run([sys.executable, "-m", "pip", "config", "list"], capture_output=True,
                         text=True)
    for line in out.stdout.splitlines():
        key, _, value = line.partition("=")
        if key.endswith(".cert"):
            candidates.append(value.strip().strip("'\""))
    candidates.append("/etc/ssl/certs/ca-certificates.crt")
    return next((c for c in candidates if c and os.path.isfile(c)), None)


def pip_wheel(cache: str) -> str:
    """A pip wheel to run from PYTHONPATH inside the rootfs (which has no pip)."""
    import importlib.metadata

    version = importlib.metadata.version("pip")
    directory = os.path.join(cache, "pip-wheel")
    wheels = [f for f in os.listdir(directory)] if os.path.isdir(directory) else []
    if not wheels:
        run([sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--only-binary=:all:",
             "--dest", directory, f"pip=={version}"])
        wheels = os.listdir(directory)
    [wheel] = [w for w in wheels if w.startswith("pip-") and w.endswith(".whl")]
    return os.path.join(directory, wheel)


def build_venv(builder: str, cache: str, pin_host: bool) -> dict:
    """Run the Dockerfile's builder RUN in the builder rootfs; returns build_slim_venv's JSON."""
    work = tempfile.mkdtemp(prefix="image-src-")
    try:
        src = os.path.join(work, "src")
        os.makedirs(src)
        ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info")
        for sources, dest in BUILDER_COPIES:  # COPY's rules: a directory's contents go
            for source in sources:            # into dest; a file into dest/ by its name
                origin = os.path.join(REPO, source)
                if os.path.isdir(origin):
                    shutil.copytree(origin, os.path.join(src, dest), ignore=ignore,
                                    dirs_exist_ok=True)
                else:
                    os.makedirs(os.path.join(src, dest), exist_ok=True)
                    shutil.copy2(origin, os.path.join(src, dest, os.path.basename(source)))

        mounts = {  # host path: path in the rootfs
            src: BUILDER_WORKDIR,
            os.path.dirname(pip_wheel(cache)): "/mnt/pip",
            os.path.join(cache, "pip-cache"): "/root/.cache/pip",  # RUN --mount=type=cache
            os.path.join(cache, "tf-wheel"): "/tmp/tf-wheel",
        }
        command = [("python3" if word == "python" else word) for word in BUILD_COMMAND]
        command.append("--json")
        env = {"PATH": BASE_PATH, "HOME": "/root", "LANG": "C.UTF-8", **BUILDER_ENV,
               "PYTHONPATH": "/mnt/pip/" + os.path.basename(pip_wheel(cache))}
        readonly = {"/mnt/host-ca"}
        # This machine's CA bundle, for pip only (a TLS-inspecting proxy's CA may be in it).
        ca_bundle = host_ca_bundle()
        if ca_bundle:
            ca_dir = os.path.join(work, "ca")
            os.makedirs(ca_dir)
            shutil.copy(ca_bundle, os.path.join(ca_dir, "ca.crt"))
            mounts[ca_dir] = "/mnt/host-ca"
            env["PIP_CERT"] = "/mnt/host-ca/ca.crt"
        if pin_host:
            constraints = os.path.join(work, "pins")
            os.makedirs(constraints)
            with open(os.path.join(constraints, "constraints.txt"), "w") as file:
                file.write("\n".join(host_pins()) + "\n")
            mounts[constraints] = "/mnt/pins"
            readonly.add("/mnt/pins")
            env["PIP_CONSTRAINT"] = "/mnt/pins/constraints.txt"
            tf_site = host_tensorflow_site()
            if tf_site:
                mounts[tf_site] = "/mnt/tf-site"
                readonly.add("/mnt/tf-site")
                command += ["--tensorflow-wheel", "/mnt/tf-site"]
        shell = ["set -e", f"mount -t proc proc {shlex.quote(builder)}/proc",
                 f"mount --rbind /dev {shlex.quote(builder)}/dev",
                 f"mount --bind /etc/resolv.conf {shlex.quote(builder)}/etc/resolv.conf"]
        for host, inside in mounts.items():
            os.makedirs(host, exist_ok=True)
            target = builder + inside
            os.makedirs(target, exist_ok=True)
            shell.append(f"mount --bind {shlex.quote(host)} {shlex.quote(target)}")
            if inside in readonly:
                shell.append(f"mount -o remount,bind,ro {shlex.quote(target)}")
        inner = f"cd {BUILDER_WORKDIR} && exec " + " ".join(shlex.quote(c) for c in command)
        shell.append("exec chroot " + shlex.quote(builder) + " /usr/bin/env -i "
                     + " ".join(shlex.quote(f"{k}={v}") for k, v in env.items())
                     + " /bin/sh -c " + shlex.quote(inner))
        out = run(["unshare", "--mount", "--propagation", "private", "--", "sh", "-c",
                   "\n".join(shell)], stdout=subprocess.PIPE, text=True)
        summary = json.loads(out.stdout.strip().splitlines()[-1])
    finally:
        shutil.rmtree(work, ignore_errors=True)

    # The builder RUN's own checks.
    venv = builder + VENV
    site = builder + summary["site_packages"]
    if os.path.exists(os.path.join(site, "tensorflow", "__init__.py")):
        raise SystemExit("build_image: tensorflow/__init__.py in the venv")
    for directory, _dirs, names in os.walk(venv):
        if any(name.startswith("libtensorflow") for name in names):
            raise SystemExit(f"build_image: libtensorflow* in {directory}")
    version = subprocess.run(["chroot", builder, VENV + "/bin/tfserving-exporter", "--version"],
                             check=True, capture_output=True, text=True).stdout.strip()
    summary["exporter_version"] = version
    _log(version)
    return summary


def git_revision() -> str:
    out = subprocess.run(["git", "-C", REPO, "rev-parse", "HEAD"], capture_output=True, text=True)
    return out.stdout.strip() if out.returncode == 0 else "unknown"


def labels(version: str, created: str) -> dict[str, str]:
    facts = parse_dockerfile()["final"]["labels"]
    values = dict(facts)
    values["org.opencontainers.image.version"] = version
    values["org.opencontainers.image.revision"] = git_revision()
    values["org.opencontainers.image.created"] = created
    values["org.opencontainers.image.base.name"] = (
        f"debian:{SUITE} (mmdebstrap essential + {', '.join(PACKAGES)})")
    return values


def make_oci(out: str, base: str, venv: str, tag: str, created: str) -> str:
    layout = os.path.join(out, "oci")
    if os.path.exists(layout):
        shutil.rmtree(layout)
    image = f"{layout}:{tag}"
    run(["umoci", "init", "--layout", layout])
    run(["umoci", "new", "--image", image])
    run(["umoci", "insert", "--image", image, "--history.created_by",
         f"mmdebstrap {' '.join(MMDEBSTRAP_OPTIONS)} {SUITE}", base, "/"])
    run(["umoci", "insert", "--image", image, "--history.created_by",
         f"COPY --from=builder {VENV} {VENV}", venv, VENV])
    config = ["umoci", "config", "--image", image, "--created", created,
              "--config.user", USER, "--config.workingdir", WORKDIR,
              "--config.entrypoint", *ENTRYPOINT[:1]]
    for word in ENTRYPOINT[1:]:
        config += ["--config.entrypoint", word]
    for word in CMD:
        config += ["--config.cmd", word]
    for port in EXPOSE:
        config += ["--config.exposedports", f"{port}/tcp"]
    for key, value in ENV.items():
        config += ["--config.env", f"{key}={value.replace('$PATH', BASE_PATH)}"]
    for key, value in labels(tag, created).items():
        config += ["--config.label", f"{key}={value}"]
    run(config + ["--history.created_by", "ENV/USER/WORKDIR/EXPOSE/LABEL/ENTRYPOINT/CMD "
                  "from the Dockerfile"])
    run(["umoci", "gc", "--layout", layout])
    return image


def oci_sizes(layout: str, tag: str) -> dict:
    def blob(digest: str) -> str:
        algorithm, value = digest.split(":")
        return os.path.join(layout, "blobs", algorithm, value)

    with open(os.path.join(layout, "index.json")) as file:
        index = json.load(file)
    [descriptor] = [m for m in index["manifests"]
                    if m.get("annotations", {}).get("org.opencontainers.image.ref.name") == tag]
    with open(blob(descriptor["digest"])) as file:
        manifest = json.load(file)
    layers = [layer["size"] for layer in manifest["layers"]]
    return {"manifest_digest": descriptor["digest"], "layers_bytes": layers,
            "image_bytes": sum(layers) + manifest["config"]["size"] + descriptor["size"]}


def unpack(out: str, image: str) -> str:
    bundle = os.path.join(out, "bundle")
    if os.path.exists(bundle):
        shutil.rmtree(bundle)
    run(["umoci", "unpack", "--image", image, bundle])
    return bundle


def build(out: str, cache: str, pin_host: bool, tag: str) -> dict:
    started = time.monotonic()
    check_dockerfile()
    os.makedirs(out, exist_ok=True)
    created = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(
        int(os.environ.get("SOURCE_DATE_EPOCH", time.time()))))
    timings = {}

    mark = time.monotonic()
    tarball, fresh = base_tarball(cache)
    timings["base_seconds"] = round(time.monotonic() - mark, 1)

    mark = time.monotonic()
    work = os.path.join(cache, "work")
    builder, base = os.path.join(work, "builder"), os.path.join(work, "base")
    extract(tarball, builder)
    venv_summary = build_venv(builder, cache, pin_host)
    timings["venv_seconds"] = round(time.monotonic() - mark, 1)

    mark = time.monotonic()
    extract(tarball, base)
    tidy_base(base)
    image = make_oci(out, base, builder + VENV, tag, created)
    timings["oci_seconds"] = round(time.monotonic() - mark, 1)

    mark = time.monotonic()
    bundle = unpack(out, image)
    timings["unpack_seconds"] = round(time.monotonic() - mark, 1)
    shutil.rmtree(work)

    sizes = oci_sizes(os.path.join(out, "oci"), tag)
    rootfs = os.path.join(bundle, "rootfs")
    summary = {
        "image": image, "tag": tag, "bundle": bundle, "rootfs": rootfs,
        "base_cached": not fresh, "pinned_to_host": pin_host,
        "python": subprocess.run(["chroot", rootfs, "/usr/bin/python3", "--version"],
                                 capture_output=True, text=True).stdout.strip(),
        "exporter_version": venv_summary["exporter_version"],
        "tensorflow_serving_api": venv_summary["tensorflow_serving_api"],
        "venv_site_packages_mb": venv_summary["site_packages_mb"],
        **sizes,
        "image_mb": round(sizes["image_bytes"] / 1e6, 1),
        "rootfs_bytes": directory_size(rootfs),
        "venv_bytes": directory_size(rootfs + VENV),
        **timings,
        "build_seconds": round(time.monotonic() - started, 1),
    }
    summary["rootfs_mb"] = round(summary["rootfs_bytes"] / 1e6, 1)
    summary["venv_mb"] = round(summary["venv_bytes"] / 1e6, 1)
    with open(os.path.join(out, "summary.json"), "w") as file:
        json.dump(summary, file, indent=2)
    _log(f"image {image}: {summary['image_mb']} MB compressed "
         f"(layers {[round(b / 1e6, 1) for b in sizes['layers_bytes']]} MB), "
         f"rootfs {summary['rootfs_mb']} MB unpacked (venv {summary['venv_mb']} MB), "
         f"built in {summary['build_seconds']} s")
    return summary


# --- Starting the image. ------------------------------------------------------------------

class Container:
    """A started image: ``pid`` is the exporter's process as this machine sees it."""

    def __init__(self, process: subprocess.Popen, pid: int | None, runtime: str,
                 name: str, podman: list[str] | None = None, storage: str | None = None) -> None:
        self.process, self.pid, self.runtime, self.name = process, pid, runtime, name
        self._podman, self._storage = podman or ["podman"], storage

    def stop(self, timeout: float = 15) -> int | None:
        if self.process.poll() is None:
            if self.runtime == "crun":
                subprocess.run(["crun", "kill", self.name, "TERM"], capture_output=True)
            elif self.runtime == "podman":
                subprocess.run([*self._podman, "kill", "--signal", "TERM", self.name],
                               capture_output=True)
            else:
                self.process.terminate()
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
        if self.runtime == "crun":
            subprocess.run(["crun", "delete", "--force", self.name], capture_output=True)
        if self._storage is not None:
            _remove_podman_storage(self._podman, self._storage)
        return self.process.returncode


def _remove_podman_storage(podman: list[str], storage: str) -> None:
    """podman's storage of one run: its overlay mounts first (``system reset``), then the
    folder."""
    subprocess.run([*podman, "system", "reset", "--force"], capture_output=True, timeout=60)
    shutil.rmtree(storage, ignore_errors=True)


def runtime_config(bundle: str, args: list[str], name: str) -> str:
    """A copy of umoci's config.json: host network, read-only root, the given arguments."""
    with open(os.path.join(bundle, "config.json")) as file:
        config = json.load(file)
    image_args = config["process"]["args"]  # ENTRYPOINT + CMD, from the image config
    if args:
        config["process"]["args"] = image_args[:len(ENTRYPOINT)] + args
    config["process"]["terminal"] = False
    config["root"]["readonly"] = True
    config["hostname"] = name
    linux = config.setdefault("linux", {})
    linux["namespaces"] = [ns for ns in linux.get("namespaces", []) if ns["type"] != "network"]
    linux.pop("resources", None)
    path = os.path.join(bundle, f"config-{name}.json")
    with open(path, "w") as file:
        json.dump(config, file, indent=2)
    return path


def start(bundle: str, args: list[str], runtime: str = "crun", name: str | None = None,
          stdout=None, stderr=None) -> Container:
    """Start the unpacked image with ``args`` after the ENTRYPOINT (default: CMD)."""
    name = name or f"tfserving-exporter-{os.getpid()}-{time.monotonic_ns() % 10**6}"
    if runtime == "crun":
        config = runtime_config(bundle, args, name)
        # No cgroups are set up (--cgroup-manager=disabled), and crun refuses this machine's
        # hybrid cgroup layout ("cgroups in hybrid mode not supported, drop all controllers
        # from cgroupv2": hugetlb sits on the v2 hierarchy): in a private mount namespace the
        # v2 mount at /sys/fs/cgroup/unified is hidden from crun, which then sees cgroup v1.
        crun = " ".join(shlex.quote(c) for c in [
            "crun", "--cgroup-manager=disabled", "run", "--bundle", bundle, "--config", config,
            name])
        hide = ("if mountpoint -q /sys/fs/cgroup/unified; then umount -l /sys/fs/cgroup/unified; "
                "fi; ")
        process = subprocess.Popen(
            ["unshare", "--mount", "--propagation", "private", "--", "sh", "-c",
             hide + "exec " + crun], stdin=subprocess.DEVNULL, stdout=stdout, stderr=stderr)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            state = subprocess.run(["crun", "state", name], capture_output=True, text=True)
            if state.returncode == 0:
                info = json.loads(state.stdout)
                if info.get("pid") and info.get("status") == "running":
                    return Container(process, info["pid"], runtime, name)
            if process.poll() is not None:  # already exited (a short command): no pid
                return Container(process, None, runtime, name)
            time.sleep(0.05)
        process.kill()
        raise RuntimeError("crun: the container did not reach 'running'")
    if runtime == "podman":
        # podman imports the OCI layout into its own storage (oci: transport), then runs crun:
        # the same cgroup workaround, and limits podman would otherwise raise (its defaults,
        # nofile 1048576 and nproc 4194304, fail: "setrlimit `RLIMIT_NOFILE`: Operation not
        # permitted", as this machine's root lacks CAP_SYS_RESOURCE).
        with open(os.path.join(os.path.dirname(bundle), "summary.json")) as file:
            image = json.load(file)["image"]
        # Storage of its own, removed when the container stops: the import must not pile up
        # in /var/lib/containers, one image per clone path.
        storage = tempfile.mkdtemp(prefix="tfserving-exporter-podman-")
        base = ["podman", "--root", os.path.join(storage, "root"),
                "--runroot", os.path.join(storage, "run")]
        podman = [*base, "run", "--rm", "--name", name, "--network", "host", "--read-only",
                  "--ulimit", "nofile=1024:1024", "--ulimit", "nproc=4096:4096",
                  f"oci:{image}", *args]
        hide = ("if mountpoint -q /sys/fs/cgroup/unified; then umount -l /sys/fs/cgroup/unified; "
                "fi; ")
        process = subprocess.Popen(
            ["unshare", "--mount", "--propagation", "private", "--", "sh", "-c",
             hide + "exec " + " ".join(shlex.quote(c) for c in podman)],
            stdin=subprocess.DEVNULL, stdout=stdout, stderr=stderr)
        deadline = time.monotonic() + 120  # includes copying the image into podman's storage
        while time.monotonic() < deadline:
            state = subprocess.run([*base, "inspect", "--format", "{{.State.Pid}}", name],
                                   capture_output=True, text=True)
            if state.returncode == 0 and state.stdout.strip() not in ("", "0"):
                return Container(process, int(state.stdout), runtime, name, base, storage)
            if process.poll() is not None:
                return Container(process, None, runtime, name, base, storage)
            time.sleep(0.1)
        process.kill()
        process.wait(10)
        _remove_podman_storage(base, storage)
        raise RuntimeError("podman: the container did not start")
    if runtime == "chroot":
        with open(os.path.join(bundle, "config.json")) as file:
            process_config = json.load(file)["process"]
        command = process_config["args"]
        if args:
            command = command[:len(ENTRYPOINT)] + args
        user = process_config["user"]
        rootfs = os.path.join(bundle, "rootfs")
        q = shlex.quote
        shell = ["set -e",
                 f"mount --bind {q(rootfs)} {q(rootfs)}",  # read-only root, then on top:
                 f"mount -o remount,bind,ro {q(rootfs)}",
                 f"mount -t proc proc {q(rootfs)}/proc",
                 f"mount -t tmpfs -o mode=755 tmpfs {q(rootfs)}/dev",
                 *[f"touch {q(rootfs)}/dev/{n} && mount --bind /dev/{n} {q(rootfs)}/dev/{n}"
                   for n in ("null", "zero", "full", "random", "urandom")],
                 "exec chroot --userspec={}:{} --groups= {} /usr/bin/env -i -C {} {} {}".format(
                     user["uid"], user["gid"], q(rootfs), q(process_config.get("cwd", "/")),
                     " ".join(q(e) for e in process_config["env"]),
                     " ".join(q(c) for c in command))]
        process = subprocess.Popen(
            ["unshare", "--mount", "--propagation", "private", "--", "sh", "-c",
             "\n".join(shell)], stdin=subprocess.DEVNULL, stdout=stdout, stderr=stderr)
        return Container(process, process.pid, runtime, name)
    raise ValueError(f"unknown runtime {runtime!r}")


def wait_ready(url: str, container: Container, timeout: float = 30) -> float:
    """Seconds until ``url`` answers 200."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if container.process.poll() is not None:
            raise RuntimeError(f"the container exited with {container.process.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=2) as reply:
                if reply.status == 200:
                    return time.monotonic() - started
        except OSError:
            pass
        time.sleep(0.02)
    raise TimeoutError(f"{url} not ready after {timeout} s")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    b = sub.add_parser("build", help="build the OCI image and unpack it into a bundle")
    b.add_argument("--out", default=DEFAULT_OUT)
    b.add_argument("--cache", default=DEFAULT_CACHE, help="base rootfs tarball, pip cache")
    b.add_argument("--tag", default=None, help="image tag (default: the exporter's version)")
    b.add_argument("--no-pin-host", action="store_true",
                   help="resolve as the Dockerfile does: newest allowed versions, TF wheel")
    b.add_argument("--install-tools", action="store_true",
                   help=f"apt-get install {' '.join(APT_TOOLS)} when missing")
    r = sub.add_parser("run", help="start the unpacked image (foreground)")
    r.add_argument("--out", default=DEFAULT_OUT)
    r.add_argument("--runtime", choices=("crun", "podman", "chroot"), default="crun")
    r.add_argument("args", nargs=argparse.REMAINDER, help="arguments after the ENTRYPOINT")
    sub.add_parser("check", help="compare with the Dockerfile and exit")
    args = parser.parse_args(argv)

    if args.command == "check":
        differences = dockerfile_differences()
        print("\n".join(differences) or "in step with the Dockerfile")
        return 1 if differences else 0
    if os.geteuid() != 0:
        raise SystemExit("build_image: needs root (mmdebstrap, chroot, mounts, crun)")
    if args.command == "build":
        ensure_tools(args.install_tools)
        if args.tag is None:
            import tomllib
            with open(os.path.join(REPO, "pyproject.toml"), "rb") as file:
                args.tag = tomllib.load(file)["project"]["version"]
        summary = build(os.path.abspath(args.out), os.path.abspath(args.cache),
                        not args.no_pin_host, args.tag)
        print(json.dumps(summary))
        return 0
    extra = args.args[1:] if args.args[:1] == ["--"] else args.args
    container = start(os.path.join(os.path.abspath(args.out), "bundle"), extra, args.runtime)
    try:
        return container.process.wait()
    except KeyboardInterrupt:
        return container.stop() or 0


if __name__ == "__main__":
    sys.exit(main())
