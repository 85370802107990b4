#!/usr/bin/env python3
"""Build the container image's slim Python environment as a plain venv.

    python scripts/build_slim_venv.py --dest DIR

The Dockerfile's builder stage runs this very script (``--dest /opt/venv``), so the image and
the venv that CI tests here (tests/test_slim_venv.py) are made by the same steps:

1. ``python -m venv --without-pip DIR``; every install below runs the pip of the interpreter
   running this script with ``--python DIR/bin/python`` (pip >= 22.3), so the environment
   carries no pip or setuptools.
2. ``pip install --no-deps tensorflow-serving-api``: its generated modules, without the
   ``tensorflow`` wheel it declares (2 GB installed).
3. The exporter's runtime dependencies from pyproject.toml, except tensorflow-serving-api and
   tensorflow, plus the other requirements tensorflow-serving-api declares (protobuf, grpcio).
4. The exporter itself with ``--no-deps`` (built from a copy of the source tree, so the
   checkout gets no build/ or egg-info litter). The copy leaves ``tfserving_simulator`` out,
   so the environment has no simulator: ``demo`` and ``simulate`` say so and exit.
5. TensorFlow's generated ``*_pb2`` modules that TF Serving's API modules import, computed by
   scripts/tf_proto_files.py and copied with their package structure, without
   ``tensorflow/__init__.py``. Source: the ``tensorflow`` package installed in the interpreter
   running this script, if any (found without importing it), else the tensorflow wheel
   fetched with ``pip download --no-deps`` (only the needed members are read from it).
6. numpy's own test suite (``numpy/**/tests``, 17 MB) is deleted: never used at run time.

Versions: where the running interpreter has a dependency installed, the venv gets the same
version (so the venv tests what the test suite tests, and pip can reuse its cache); pass
``--no-pin-host`` to take the newest allowed versions instead (the Dockerfile does not need
it: its builder has nothing installed).

Rerunning on an existing DIR brings it up to date (idempotent). Prints the site-packages size
and the number and size of the TF modules copied; ``--json`` adds a JSON summary line.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path.insert(0, HERE)
import tf_proto_files  # noqa: E402  (this directory's shared implementation)

# Dropped from the exporter's dependencies and handled by steps 2 and 5.
SERVING_API = "tensorflow-serving-api"
TENSORFLOW = "tensorflow"
# Packages whose own test suites are not shipped (numpy's are 17 MB of the 100 MB budget).
# Never needed at run time; numpy.testing, a public module, is a different directory.
PRUNE_TESTS_OF = ("numpy",)
# What the source copy needs to build the exporter's wheel. Not tfserving_simulator: the wheel
# built from this copy has no simulator (pyproject.toml includes only the packages present).
SOURCE_ITEMS = ("pyproject.toml", "README.md", "exporter", "tfserving_wire")


def _log(message: str) -> None:
    print(f"[build_slim_venv] {message}", flush=True)


def requirement_name(requirement: str) -> str:
    """Normalised project name of a PEP 508 requirement string."""
    match = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)", requirement)
    if not match:
        raise ValueError(f"not a requirement: {requirement!r}")
    return re.sub(r"[-_.]+", "-", match.group(1)).lower()


def read_dependencies(pyproject: str) -> list[str]:
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        import tomli as tomllib  # type: ignore[no-redef]
    with open(pyproject, "rb") as file:
        return list(tomllib.load(file)["project"]["dependencies"])


def split_dependencies(dependencies: list[str]) -> tuple[list[str], str]:
    """(runtime dependencies installed normally, the tensorflow-serving-api requirement)."""
    runtime, serving = [], SERVING_API
    for requirement in dependencies:
        name = requirement_name(requirement)
        if name == SERVING_API:
            serving = requirement
        elif name != TENSORFLOW:
            runtime.append(requirement)
    return runtime, serving


def host_version(name: str) -> str | None:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def venv_paths(dest: str) -> tuple[str, str]:
    """(python executable, site-packages) of the venv at ``dest``."""
    bindir = "Scripts" if os.name == "nt" else "bin"
    python = os.path.join(dest, bindir, "python")
    site = subprocess.run(
        [python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True, capture_output=True, text=True).stdout.strip()
    return python, site


def run(command: list[str], **kwargs) -> subprocess.CompletedProcess:
    _log("$ " + " ".join(command))
    return subprocess.run(command, check=True, **kwargs)


def pip(python: str, *args: str) -> None:
    """Run this interpreter's pip against the venv's interpreter: the venv has no pip."""
    env = dict(os.environ, PIP_DISABLE_PIP_VERSION_CHECK="1")
    run([sys.executable, "-m", "pip", "--python", python, "--quiet", *args], env=env)


def venv_requirements(python: str, distribution: str) -> list[str]:
    code = ("import importlib.metadata, json, sys; "
            "print(json.dumps(importlib.metadata.requires(sys.argv[1]) or []))")
    out = subprocess.run([python, "-c", code, distribution], check=True, capture_output=True,
                         text=True).stdout
    return [r for r in json.loads(out) if "extra ==" not in r.replace('"', "").replace("'", "")]


def directory_size(path: str) -> int:
    total = 0
    for directory, _dirs, names in os.walk(path):
        for name in names:
            full = os.path.join(directory, name)
            if not os.path.islink(full):
                total += os.path.getsize(full)
    return total


def prune_test_suites(site_packages: str) -> int:
    """Delete ``tests`` directories inside PRUNE_TESTS_OF packages; returns bytes freed."""
    freed = 0
    for package in PRUNE_TESTS_OF:
        for directory, dirs, _names in os.walk(os.path.join(site_packages, package)):
            if "tests" in dirs:
                dirs.remove("tests")
                path = os.path.join(directory, "tests")
                freed += directory_size(path)
                shutil.rmtree(path)
    if freed:
        _log(f"removed test suites of {', '.join(PRUNE_TESTS_OF)}: {freed / 1e6:.1f} MB")
    return freed


def copy_source(destination: str) -> None:
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info")
    os.makedirs(destination, exist_ok=True)
    for item in SOURCE_ITEMS:
        source = os.path.join(REPO, item)
        target = os.path.join(destination, item)
        if os.path.isdir(source):
            shutil.copytree(source, target, ignore=ignore)
        else:
            shutil.copy2(source, target)


def tensorflow_source(serving_version: str, download_dir: str, wheel: str | None) -> str:
    """A site-packages directory holding tensorflow/, or the tensorflow wheel."""
    if wheel:
        return wheel
    spec = importlib.util.find_spec(TENSORFLOW)  # locates, does not import
    if spec is not None and spec.submodule_search_locations:
        package_dir = list(spec.submodule_search_locations)[0]
        version = host_version(TENSORFLOW)
        if version and version.split(".")[:2] != serving_version.split(".")[:2]:
            _log(f"warning: installed tensorflow {version} differs from "
                 f"tensorflow-serving-api {serving_version}")
        _log(f"TF modules from the installed tensorflow package: {package_dir}")
        return os.path.dirname(package_dir)
    major_minor = ".".join(serving_version.split(".")[:2])
    os.makedirs(download_dir, exist_ok=True)
    existing = [f for f in os.listdir(download_dir)
                if f.startswith(f"{TENSORFLOW}-{major_minor}.") and f.endswith(".whl")]
    if not existing:
        run([sys.executable, "-m", "pip", "download", "--quiet", "--no-deps",
             "--only-binary=:all:", "--dest", download_dir, f"{TENSORFLOW}=={major_minor}.*"])
        existing = [f for f in os.listdir(download_dir)
                    if f.startswith(f"{TENSORFLOW}-") and f.endswith(".whl")]
    wheel = os.path.join(download_dir, sorted(existing)[-1])
    _log(f"TF modules from the wheel {wheel}")
    return wheel


def build(dest: str, pin_host: bool = True, tensorflow_wheel: str | None = None,
          download_dir: str | None = None) -> dict:
    started = time.monotonic()
    dest = os.path.abspath(dest)
    runtime, serving = split_dependencies(read_dependencies(os.path.join(REPO, "pyproject.toml")))

    if not os.path.isfile(os.path.join(dest, "bin", "python")):
        # No pip or setuptools inside (about 27 MB): nothing installs packages at run time.
        run([sys.executable, "-m", "venv", "--without-pip", dest])
    python, site_packages = venv_paths(dest)

    with tempfile.TemporaryDirectory(prefix="slim-venv-") as work:
        constraints = os.path.join(work, "constraints.txt")
        with open(constraints, "w", encoding="utf-8") as file:
            if pin_host:
                for requirement in [serving, *runtime, "protobuf", "grpcio"]:
                    name = requirement_name(requirement)
                    version = host_version(name)
                    if version:
                        file.write(f"{name}=={version}\n")

        # 2. TF Serving's API modules, without the tensorflow wheel.
        pip(python, "install", "--no-deps", "-c", constraints, serving)
        serving_version = subprocess.run(
            [python, "-c", "import importlib.metadata as m; print(m.version('%s'))" % SERVING_API],
            check=True, capture_output=True, text=True).stdout.strip()

        # 3. Runtime dependencies, and what tensorflow-serving-api needs besides tensorflow.
        #    (pip then reports that tensorflow is not installed: that is the point.)
        serving_needs = [r for r in venv_requirements(python, SERVING_API)
                         if requirement_name(r) != TENSORFLOW]
        pip(python, "install", "-c", constraints, *runtime, *serving_needs)

        # 4. The exporter, from a clean copy of the source.
        source = os.path.join(work, "src")
        copy_source(source)
        pip(python, "install", "--no-deps", "--force-reinstall", source)

        # 5. The generated TF modules.
        tf_location = tensorflow_source(serving_version,
                                        download_dir or os.path.join(work, "wheels"),
                                        tensorflow_wheel)
        serving_src = tf_proto_files.Source(site_packages)
        tf_src = tf_proto_files.Source(tf_location)
        try:
            proto_set = tf_proto_files.compute(serving_src, tf_src)
            tf_proto_files.remove_stale(proto_set, site_packages)
            tf_proto_files.copy(proto_set, tf_src, site_packages)
        finally:
            serving_src.close()
            tf_src.close()
        run([python, "-m", "compileall", "-q", os.path.join(site_packages, TENSORFLOW)])

    # 6. Dependencies' test suites.
    prune_test_suites(site_packages)

    size = directory_size(site_packages)
    summary = {
        "dest": dest,
        "python": python,
        "site_packages": site_packages,
        "site_packages_bytes": size,
        "site_packages_mb": round(size / 1e6, 1),
        "tensorflow_serving_api": serving_version,
        "tf_modules": len(proto_set.files),
        "tf_modules_bytes": proto_set.total_bytes,
        "seconds": round(time.monotonic() - started, 1),
    }
    _log(f"site-packages: {summary['site_packages_mb']} MB ({site_packages})")
    _log(f"TF generated modules copied: {summary['tf_modules']} files, "
         f"{proto_set.total_bytes / 1024:.0f} KiB")
    _log(f"done in {summary['seconds']} s")
    return summary


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dest", required=True, help="directory of the venv (created or updated)")
    parser.add_argument("--no-pin-host", action="store_true",
                        help="do not pin dependencies to the versions installed here")
    parser.add_argument("--tensorflow-wheel",
                        help="take the TF modules from this tensorflow wheel file")
    parser.add_argument("--download-dir",
                        help="where to keep the downloaded tensorflow wheel (default: temporary)")
    parser.add_argument("--json", action="store_true", help="print a JSON summary as last line")
    args = parser.parse_args(argv)
    try:
        summary = build(args.dest, pin_host=not args.no_pin_host,
                        tensorflow_wheel=args.tensorflow_wheel, download_dir=args.download_dir)
    except (subprocess.CalledProcessError, tf_proto_files.ProtoSetError) as err:
        print(f"build_slim_venv: {err}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
