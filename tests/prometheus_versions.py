"""The Prometheus versions the tests run on, and where their binaries are.

Every test that runs a real Prometheus or promtool takes the ``prometheus_version`` fixture of
``tests/conftest.py`` (params ``"2"`` and ``"3"``, ids ``prometheus2``/``prometheus3``) and
asks this module for the binary of that major version:

- ``$TFSERVING_EXPORTER_PROMETHEUS2`` / ``$TFSERVING_EXPORTER_PROMETHEUS3``: a directory
  holding ``prometheus`` and ``promtool`` of that version (``.ci/run`` sets both). When set,
  the binaries must be there and of that major version, or the test fails.
- otherwise, for 3.x, the folder ``.ci/prometheus3`` extracts Debian's packages into
  (``.ci/cache/prometheus3/usr/bin``), then ``PATH``;
- otherwise, for 2.x, ``PATH`` (Debian bookworm's ``apt-get install prometheus``: 2.42).

A binary is only taken when its ``--version`` says the wanted major version. Under
``CI=true`` a missing binary fails the test, never skips it, as ``require_tool`` does.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from functools import lru_cache

import pytest

from tests.helpers import in_ci

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
VERSIONS = ("2", "3")
ENVIRONMENT = {"2": "TFSERVING_EXPORTER_PROMETHEUS2", "3": "TFSERVING_EXPORTER_PROMETHEUS3"}
WELL_KNOWN = {"3": os.path.join(ROOT, ".ci", "cache", "prometheus3", "usr", "bin")}
HOW_TO_GET = {
    "2": "apt-get install prometheus (Debian bookworm: 2.42)",
    "3": "bash .ci/prometheus3 (Debian unstable's 3.5.x, extracted under .ci/cache/)",
}
_VERSION_LINE = re.compile(r"^(?:prometheus|promtool), version (\d+)\.(\d+)\.(\d+)\S*")


@lru_cache(maxsize=None)
def binary_version(path: str) -> tuple[int, int, int] | None:
    """(major, minor, patch) from ``<path> --version``; None if it does not say."""
    try:
        done = subprocess.run([path, "--version"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return None
    # promtool writes its version to stdout, prometheus 2.x to stderr.
    for line in (done.stdout + "\n" + done.stderr).splitlines():
        match = _VERSION_LINE.match(line.strip())
        if match:
            return tuple(int(part) for part in match.groups())  # type: ignore[return-value]
    return None


def _matches(path: str | None, version: str) -> bool:
    found = binary_version(path) if path else None
    return found is not None and str(found[0]) == version


def find_binary(tool: str, version: str) -> tuple[str | None, str]:
    """``(path or None, why not)`` of ``tool`` (prometheus, promtool) of major ``version``."""
    if version not in VERSIONS:
        raise ValueError(f"unknown Prometheus version {version!r}; known: {VERSIONS}")
    variable = ENVIRONMENT[version]
    directory = os.environ.get(variable)
    if directory:
        # Named explicitly: it must be right, never quietly replaced by another one.
        path = os.path.join(directory, tool)
        if not os.access(path, os.X_OK):
            return None, f"${variable}={directory} has no executable {tool}"
        if not _matches(path, version):
            return None, (f"${variable}: {path} --version says {binary_version(path)}, "
                          f"not {version}.x")
        return path, ""
    candidates = []
    if version in WELL_KNOWN:
        candidates.append(os.path.join(WELL_KNOWN[version], tool))
    candidates.append(shutil.which(tool))
    for path in candidates:
        if path and os.access(path, os.X_OK) and _matches(path, version):
            return path, ""
    seen = {path: binary_version(path) for path in candidates if path and os.path.exists(path)}
    return None, (f"no {tool} {version}.x (set ${variable}, or {HOW_TO_GET[version]}); "
                  f"found: {seen or 'none'}")


def require_binary(tool: str, version: str) -> str:
    """Path of ``tool`` of major ``version``; fails under CI=true (or a wrong ${variable}),
    skips otherwise."""
    path, why = find_binary(tool, version)
    if path:
        return path
    if in_ci() or os.environ.get(ENVIRONMENT[version]):
        pytest.fail(f"Prometheus {version}.x is required: {why}")
    pytest.skip(why)
