#!/usr/bin/env python3
"""A JSON schema for Grafana dashboards, generated from Grafana's published TypeScript types.

No Grafana server runs here, but Grafana publishes its dashboard model as TypeScript types in the
npm package ``@grafana/schema`` (type ``Dashboard`` in
``dist/types/raw/dashboard/x/types.gen.d.ts``). ``ts-json-schema-generator`` turns that type into
a JSON schema (draft 7) that ``jsonschema`` can check our dashboards against.

    python scripts/grafana_dashboard_schema.py            # prints the schema's path
    python scripts/grafana_dashboard_schema.py --schema-version   # prints e.g. 42

Both npm packages are pinned below and installed with ``npm install --no-save --prefix`` into
``.cache/grafana-schema/<versions>/`` in the repository (git-ignored); the generated schema is
kept there too, so later runs cost nothing. Needs ``node`` and ``npm`` and, on the first run,
the npm registry.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys

# Grafana 12.4's dashboard model (schemaVersion 42). Bump both together and re-run the tests.
GRAFANA_SCHEMA_PACKAGE = "@grafana/schema@12.4.11"
# 2.4.0 is the newest release that supports Node 18/20 (later ones require Node 22).
GENERATOR_PACKAGE = "ts-json-schema-generator@2.4.0"

TYPES_FILE = os.path.join("node_modules", "@grafana", "schema", "dist", "types", "raw",
                          "dashboard", "x", "types.gen.d.ts")
# The same model compiled to JavaScript: holds defaultDashboard, whose schemaVersion is the one
# this Grafana writes.
DEFAULTS_FILE = os.path.join("node_modules", "@grafana", "schema", "dist", "cjs", "raw",
                             "dashboard", "x", "types.gen.cjs")
GENERATOR_BIN = os.path.join("node_modules", ".bin", "ts-json-schema-generator")
SCHEMA_NAME = "dashboard.schema.json"

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_CACHE = os.path.join(REPO_ROOT, ".cache", "grafana-schema")

NPM_TIMEOUT_SECONDS = 600
GENERATOR_TIMEOUT_SECONDS = 300


class SchemaError(RuntimeError):
    """npm or the generator failed, or their output is not what we expect."""


def cache_dir(cache_root: str = DEFAULT_CACHE) -> str:
    """Directory of this pair of package versions (a version bump starts a fresh one)."""
    tag = re.sub(r"[^A-Za-z0-9.@-]+", "_", f"{GRAFANA_SCHEMA_PACKAGE}+{GENERATOR_PACKAGE}")
    return os.path.join(cache_root, tag.lstrip("@"))


def _run(args: list[str], cwd: str, timeout: float) -> None:
    try:
        done = subprocess.run(args, cwd=cwd, capture_output=True, text=True, timeout=timeout,
                              stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired as err:
        raise SchemaError(f"{' '.join(args)} took more than {timeout} s") from err
    if done.returncode != 0:
        raise SchemaError(f"{' '.join(args)} exited with {done.returncode}:\n"
                          f"{done.stdout[-3000:]}\n{done.stderr[-3000:]}")


def install_packages(directory: str) -> None:
    """Install the pinned packages into ``directory`` unless they are there already."""
    if os.path.exists(os.path.join(directory, TYPES_FILE)) and \
            os.path.exists(os.path.join(directory, GENERATOR_BIN)):
        return
    npm = shutil.which("npm")
    if npm is None:
        raise SchemaError("npm is not installed (apt-get install -y nodejs npm)")
    os.makedirs(directory, exist_ok=True)
    _run([npm, "install", "--no-save", "--no-audit", "--no-fund", "--loglevel=error",
          "--prefix", directory, GRAFANA_SCHEMA_PACKAGE, GENERATOR_PACKAGE],
         cwd=directory, timeout=NPM_TIMEOUT_SECONDS)
    for path in (TYPES_FILE, GENERATOR_BIN, DEFAULTS_FILE):
        if not os.path.exists(os.path.join(directory, path)):
            raise SchemaError(f"npm install did not provide {path} in {directory}")


def ensure_schema(cache_root: str = DEFAULT_CACHE) -> str:
    """Path of the generated dashboard schema; installs and generates it on the first call."""
    directory = cache_dir(cache_root)
    schema_path = os.path.join(directory, SCHEMA_NAME)
    if os.path.exists(schema_path):
        return schema_path
    install_packages(directory)
    partial = schema_path + f".{os.getpid()}.tmp"
    # --no-type-check: the .d.ts is checked by Grafana's build; we only need its shapes.
    _run([os.path.join(directory, GENERATOR_BIN), "--path", os.path.join(directory, TYPES_FILE),
          "--type", "Dashboard", "--no-type-check", "--out", partial],
         cwd=directory, timeout=GENERATOR_TIMEOUT_SECONDS)
    os.replace(partial, schema_path)  # atomic: a reader never sees half a schema
    return schema_path


def schema_version(cache_root: str = DEFAULT_CACHE) -> int:
    """``schemaVersion`` of ``defaultDashboard`` in the pinned package: what this Grafana writes."""
    ensure_schema(cache_root)
    with open(os.path.join(cache_dir(cache_root), DEFAULTS_FILE), encoding="utf-8") as handle:
        found = re.search(r"\bschemaVersion:\s*(\d+)", handle.read())
    if not found:
        raise SchemaError(f"no schemaVersion in {DEFAULTS_FILE}")
    return int(found.group(1))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cache-dir", default=DEFAULT_CACHE,
                        help="where to install the npm packages and keep the schema")
    parser.add_argument("--schema-version", action="store_true",
                        help="print the dashboard schemaVersion of the pinned Grafana instead")
    args = parser.parse_args(argv)
    try:
        print(schema_version(args.cache_dir) if args.schema_version
              else ensure_schema(args.cache_dir))
    except SchemaError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
