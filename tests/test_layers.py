"""The import rules of docs/architecture.md, checked on the source: which package may import
which, where the exporter may reach the simulator, and no import cycle anywhere."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
PACKAGES = ("exporter", "tfserving_wire", "tfserving_simulator")


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imports(path: Path) -> list[tuple[str, bool]]:
    """(imported module, at module level?) for every import of a first-party module."""
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    top_level = {id(node) for node in tree.body}
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            # "from package import module" imports the module when it is one.
            names = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
        else:
            continue
        for name in names:
            if name.split(".")[0] in PACKAGES and _exists(name):
                found.append((name, id(node) in top_level))
    return found


def _exists(module: str) -> bool:
    base = REPO.joinpath(*module.split("."))
    return base.with_suffix(".py").is_file() or (base / "__init__.py").is_file()


MODULES = {_module_name(path): path for package in PACKAGES
           for path in sorted((REPO / package).rglob("*.py"))}
IMPORTS = {name: _imports(path) for name, path in MODULES.items()}


def _importers_of(prefix: str) -> dict[str, list[str]]:
    return {module: [name for name, _ in imports if name.split(".")[0] == prefix]
            for module, imports in IMPORTS.items()
            if any(name.split(".")[0] == prefix for name, _ in imports)}


def test_the_source_has_the_three_packages():
    for package in PACKAGES:
        assert package in MODULES, package
    assert len(MODULES) > 60


def test_tfserving_wire_imports_neither_side():
    for module, imports in IMPORTS.items():
        if module.startswith("tfserving_wire"):
            assert {name.split(".")[0] for name, _ in imports} <= {"tfserving_wire"}, module


def test_the_simulator_never_imports_the_exporter():
    offenders = {module: names for module, names in _importers_of("exporter").items()
                 if module.startswith("tfserving_simulator")}
    assert offenders == {}


def test_the_exporter_reaches_the_simulator_only_inside_demo_and_simulate():
    importers = _importers_of("tfserving_simulator")
    exporter_side = {module for module in importers if module.startswith("exporter")}
    assert exporter_side == {"exporter.cli", "exporter.demo"}
    for module in exporter_side:
        assert all(not top for name, top in IMPORTS[module]
                   if name.startswith("tfserving_simulator")), module


@pytest.mark.parametrize("layer, allowed", [
    ("exporter.tfserving", ("exporter.tfserving", "exporter.files", "exporter.textclip",
                            "tfserving_wire")),
    ("exporter.canary", ("exporter.canary", "exporter.tfserving", "exporter.files",
                         "exporter.textclip", "exporter.suggest", "exporter.durations",
                         "exporter.addresses", "exporter.selfmetrics", "exporter.logsetup",
                         "exporter", "tfserving_wire")),
])
def test_a_lower_layer_imports_nothing_above_it(layer, allowed):
    for module, imports in IMPORTS.items():
        if module == layer or module.startswith(layer + "."):
            for name, _ in imports:
                assert any(name == a or name.startswith(a + ".") for a in allowed) \
                    or name == "exporter", f"{module} imports {name}"


def test_no_collector_imports_another_collector():
    for module, imports in IMPORTS.items():
        if module.startswith("exporter.collectors."):
            others = [name for name, _ in imports if name.startswith("exporter.collectors.")
                      and name != module and not _same_family(module, name)]
            assert others == [], module


def _same_family(module: str, other: str) -> bool:
    # The native bridge is one collector in several modules (native, native_units, ...), and
    # every collector may use the shared base.
    leaf, other_leaf = module.rsplit(".", 1)[1], other.rsplit(".", 1)[1]
    return other_leaf == "base" or (leaf.startswith("native") and other_leaf.startswith("native"))


def test_no_import_cycle():
    # Module-level imports only: an import inside a function runs when it is called, after
    # both modules have loaded, so it cannot form a cycle at import time.
    graph = {module: sorted({name for name, top in imports if top and name in MODULES
                             and name != module})
             for module, imports in IMPORTS.items()}
    cycles = []
    state: dict[str, int] = {}  # 1 = on the current path, 2 = done

    def visit(module: str, path: list[str]) -> None:
        state[module] = 1
        for target in graph[module]:
            if state.get(target) == 1 and not _package_of(module, target):
                cycles.append(path[path.index(target):] + [target])
            elif target not in state:
                visit(target, path + [target])
        state[module] = 2

    for module in graph:
        if module not in state:
            visit(module, [module])
    assert cycles == []


def _package_of(module: str, target: str) -> bool:
    # A module importing its own package's __init__ (or the reverse) is how Python packages
    # work, not a cycle between modules.
    return module.startswith(target + ".") or target.startswith(module + ".")


# What an exporter process has imported after serving a scrape: numpy (~11 MiB of RSS) only
# when canaries have golden files; never TensorFlow.
_IMPORTS_AFTER_A_SCRAPE = """
import json, sys
import requests
from exporter.config import load_config
from exporter.runtime import start_exporter
running = start_exporter(load_config(None, {
    "web.listen_address": "127.0.0.1:0", "tfserving.grpc_address": "127.0.0.1:9",
    "tfserving.rest_address": "", "collectors.native.enabled": False,
    "models": ["half_plus_two"], "canary.golden_dir": sys.argv[1]}))
try:
    reply = requests.get(f"http://127.0.0.1:{running.port}/metrics", timeout=30)
    assert reply.status_code == 200, reply.status_code
finally:
    running.stop()
# protos.py registers a bare "tensorflow" package for the generated modules; the runtime is
# tensorflow.python.
print(json.dumps({name: name in sys.modules for name in ("numpy", "tensorflow.python")}))
"""


@pytest.mark.parametrize("golden, numpy", [(False, False), (True, True)])
def test_the_exporter_loads_numpy_only_for_canaries(golden, numpy):
    import json
    import subprocess
    import sys

    from tfserving_simulator.demo_files import STANDIN_GOLDEN_DIR

    golden_dir = STANDIN_GOLDEN_DIR if golden else ""  # no golden files: no canaries
    result = subprocess.run([sys.executable, "-c", _IMPORTS_AFTER_A_SCRAPE, golden_dir],
                            capture_output=True, text=True, timeout=120, cwd=REPO)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout.splitlines()[-1]) == {"numpy": numpy,
                                                          "tensorflow.python": False}
