#!/usr/bin/env python3
"""The TensorFlow generated protobuf modules that TF Serving's API modules need, and nothing else.

``tensorflow_serving.apis`` and ``tensorflow_serving.config`` import TensorFlow's generated
``*_pb2`` modules (``tensorflow.core.framework.tensor_pb2`` and friends), which in turn import
more of them. The container image and ``scripts/build_slim_venv.py`` copy exactly that set
out of the ``tensorflow`` package (an installed one or its wheel) so that the slim environment
holds the protos but none of TensorFlow's runtime (see tfserving_wire/protos.py).

The set is computed, not listed by hand: start from ``tensorflow_serving/apis/*_pb2*.py`` and
``tensorflow_serving/config/*_pb2.py``, read each module's import statements with ``ast`` and
follow every import of a ``tensorflow.…`` module transitively, including the ``__init__.py``
of each subpackage on the way (importing ``a.b.c`` runs ``a/b/__init__.py``). The top-level
``tensorflow/__init__.py`` is never taken: it is what loads TensorFlow's runtime.

This file is the one implementation used by both the Dockerfile (builder stage) and
build_slim_venv.py. Standard library only.

Command line:
    tf_proto_files.py --serving SRC --tensorflow SRC [--dest SITE_PACKAGES] [--list] [--json]
where each SRC is a site-packages directory holding the package or a ``.whl`` file.
"""

from __future__ import annotations

import argparse
import ast
import fnmatch
import json
import os
import shutil
import sys
import zipfile
from dataclasses import dataclass

# Where the walk starts (paths inside the tensorflow-serving-api distribution).
ROOT_PATTERNS = ("tensorflow_serving/apis/*_pb2*.py", "tensorflow_serving/config/*_pb2.py")
# Only modules of this package are followed and copied.
TF_PACKAGE = "tensorflow"
# Never copied: running it is what the slim environment exists to avoid.
FORBIDDEN = f"{TF_PACKAGE}/__init__.py"


class ProtoSetError(RuntimeError):
    """The module set cannot be computed (missing module, unreadable source)."""


class Source:
    """Files of one distribution: a site-packages directory or a wheel (zip) file."""

    def __init__(self, location: str) -> None:
        self.location = location
        self._zip: zipfile.ZipFile | None = None
        if os.path.isfile(location) and location.endswith(".whl"):
            self._zip = zipfile.ZipFile(location)
            self._names = {name for name in self._zip.namelist() if not name.endswith("/")}
        elif os.path.isdir(location):
            self._names = None
        else:
            raise ProtoSetError(f"{location}: neither a directory nor a .whl file")

    def exists(self, relpath: str) -> bool:
        """Whether the file exists; a path ending in "/" asks for a directory."""
        if relpath.endswith("/"):
            if self._zip is not None:
                return any(name.startswith(relpath) for name in self._names)
            return os.path.isdir(os.path.join(self.location, relpath))
        if self._zip is not None:
            return relpath in self._names
        return os.path.isfile(os.path.join(self.location, relpath))

    def read(self, relpath: str) -> bytes:
        if self._zip is not None:
            return self._zip.read(relpath)
        with open(os.path.join(self.location, relpath), "rb") as file:
            return file.read()

    def glob(self, pattern: str) -> list[str]:
        if self._zip is not None:
            candidates = self._names
        else:
            directory = os.path.dirname(pattern)
            full = os.path.join(self.location, directory)
            candidates = ([f"{directory}/{name}" for name in os.listdir(full)]
                          if os.path.isdir(full) else [])
        return sorted(name for name in candidates
                      if fnmatch.fnmatchcase(name, pattern) and "/" not in
                      name[len(os.path.dirname(pattern)) + 1:])

    def close(self) -> None:
        if self._zip is not None:
            self._zip.close()


def _imported_modules(code: bytes, relpath: str) -> tuple[set[str], set[str]]:
    """Modules the import statements in ``code`` load: (certainly, if they are modules).

    ``import a.b`` and ``from a.b import c`` certainly load ``a.b``; the latter also loads
    ``a.b.c`` when ``c`` is a submodule rather than a name defined in ``a.b``.
    """
    try:
        tree = ast.parse(code, filename=relpath)
    except SyntaxError as err:
        raise ProtoSetError(f"{relpath}: cannot parse: {err}") from None
    required: set[str] = set()
    maybe: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            required.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            required.add(node.module)
            maybe.update(f"{node.module}.{alias.name}" for alias in node.names
                         if alias.name != "*")
    return required, maybe


def _tf_files_for(module: str, tensorflow: Source) -> list[str] | None:
    """Files below tensorflow/ that importing ``module`` runs (its packages' __init__.py too,
    never the top-level one); None when ``module`` is neither a module nor a package there."""
    parts = module.split(".")
    path = "/".join(parts)
    if tensorflow.exists(path + ".py"):
        leaf = path + ".py"
    elif tensorflow.exists(path + "/__init__.py"):
        leaf = path + "/__init__.py"
    elif len(parts) > 1 and tensorflow.exists(path + "/"):
        leaf = None  # namespace package without __init__.py
    else:
        return None
    files = []
    for depth in range(2, len(parts)):
        init = "/".join(parts[:depth]) + "/__init__.py"
        if tensorflow.exists(init):
            files.append(init)
    if leaf:
        files.append(leaf)
    return files


@dataclass
class ProtoSet:
    roots: list[str]            # tensorflow_serving modules the walk started from
    files: list[str]            # tensorflow/... files to copy, sorted
    total_bytes: int


def compute(serving: Source, tensorflow: Source) -> ProtoSet:
    roots = [name for pattern in ROOT_PATTERNS for name in serving.glob(pattern)]
    if not roots:
        raise ProtoSetError(f"{serving.location}: no {' or '.join(ROOT_PATTERNS)} found")
    wanted: set[str] = set()
    pending: list[tuple[str, Source]] = [(root, serving) for root in roots]
    visited: set[str] = set()
    while pending:
        relpath, source = pending.pop()
        if relpath in visited:
            continue
        visited.add(relpath)
        required, maybe = _imported_modules(source.read(relpath), relpath)
        for module in sorted(required | maybe):
            if module.split(".")[0] != TF_PACKAGE:
                continue  # tensorflow_serving modules are all roots; others are pip packages
            if module == TF_PACKAGE:
                raise ProtoSetError(f"{relpath} imports the tensorflow package itself, which "
                                    "would run TensorFlow's runtime")
            files = _tf_files_for(module, tensorflow)
            if files is None:
                if module in required:
                    raise ProtoSetError(f"{relpath} imports {module}, which "
                                        f"{tensorflow.location} does not have")
                continue  # ``from tensorflow.x import name``: a name, not a module
            for file in files:
                if file == FORBIDDEN:  # pragma: no cover - _tf_files_for never yields it
                    raise ProtoSetError(f"{file} would be needed; refusing")
                if file not in wanted:
                    wanted.add(file)
                    pending.append((file, tensorflow))
    files = sorted(wanted)
    return ProtoSet(roots, files, sum(len(tensorflow.read(f)) for f in files))


def copy(proto_set: ProtoSet, tensorflow: Source, dest: str) -> None:
    """Write the set below ``dest`` (a site-packages directory), package structure kept."""
    for relpath in proto_set.files:
        target = os.path.join(dest, relpath)
        os.makedirs(os.path.dirname(target), exist_ok=True)
        data = tensorflow.read(relpath)
        if os.path.isfile(target):
            with open(target, "rb") as file:
                if file.read() == data:
                    continue
        with open(target + ".tmp", "wb") as file:
            file.write(data)
        os.replace(target + ".tmp", target)


def remove_stale(proto_set: ProtoSet, dest: str) -> list[str]:
    """Delete files under dest/tensorflow that are not in the set (a rerun after an upgrade)."""
    removed = []
    top = os.path.join(dest, TF_PACKAGE)
    keep = {os.path.normpath(os.path.join(dest, f)) for f in proto_set.files}
    for directory, dirs, names in os.walk(top, topdown=False):
        for name in names:
            path = os.path.normpath(os.path.join(directory, name))
            if path not in keep and "__pycache__" not in path:
                os.remove(path)
                removed.append(os.path.relpath(path, dest))
        if "__pycache__" in dirs:
            shutil.rmtree(os.path.join(directory, "__pycache__"), ignore_errors=True)
        if not os.listdir(directory):
            os.rmdir(directory)
    return removed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--serving", required=True,
                        help="site-packages dir holding tensorflow_serving/, or its wheel")
    parser.add_argument("--tensorflow", required=True,
                        help="site-packages dir holding tensorflow/, or the tensorflow wheel")
    parser.add_argument("--dest", help="site-packages directory to copy the modules into")
    parser.add_argument("--list", action="store_true", help="print the files")
    parser.add_argument("--json", action="store_true", help="print a JSON summary")
    args = parser.parse_args(argv)
    serving, tensorflow = Source(args.serving), Source(args.tensorflow)
    try:
        proto_set = compute(serving, tensorflow)
        if args.dest:
            remove_stale(proto_set, args.dest)
            copy(proto_set, tensorflow, args.dest)
    except ProtoSetError as err:
        print(f"tf_proto_files: {err}", file=sys.stderr)
        return 1
    finally:
        serving.close()
        tensorflow.close()
    if args.list:
        print("\n".join(proto_set.files))
    summary = {"roots": len(proto_set.roots), "files": len(proto_set.files),
               "bytes": proto_set.total_bytes}
    print(json.dumps(summary) if args.json else
          f"TF generated modules: {summary['files']} files, {summary['bytes'] / 1024:.0f} KiB "
          f"(needed by {summary['roots']} tensorflow_serving modules)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
