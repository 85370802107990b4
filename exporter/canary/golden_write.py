"""Writing golden files: the document for a recording, and an atomic, validated write."""

from __future__ import annotations

import dataclasses
import json
import os
import tempfile

import numpy as np

from exporter.canary.errors import GoldenError
from exporter.canary.golden_npz import from_stored, read_npz, save_npz, to_stored
from exporter.canary.golden_types import Provenance, Tolerance
from exporter.canary.golden_validate import FORMAT_VERSION, TOP_KEYS, ValidGolden, validate_document
from exporter.canary.json_arrays import json_default, array_to_json, is_b64_object
from exporter.canary.request_json import BARE, INPUTS


def golden_document(*, model: str, signature_name: str, request: dict,
                    outputs: dict[str, np.ndarray], provenance: Provenance,
                    tolerances: dict[str, Tolerance] | None = None, labels=None,
                    label_output: str | None = None, min_accuracy: float | None = None) -> dict:
    """The JSON document (plain Python values) for a recording; ``outputs`` become
    ``expected``. Strings that are UTF-8 are written as text, other bytes as b64."""
    body = {key: _plain(value) for key, value in request.items()}
    if body.get("signature_name") == signature_name:
        del body["signature_name"]  # stated once, at the top level
    document: dict = {"format": FORMAT_VERSION, "model": model, "signature_name": signature_name,
                      "request": body,
                      "expected": {alias: array_to_json(np.asarray(array), readable_strings=True)
                                   for alias, array in outputs.items()}}
    if labels is not None:
        document["labels"] = [int(label) for label in np.asarray(labels).reshape(-1)]
    if label_output is not None:
        document["label_output"] = label_output
    if min_accuracy is not None:
        document["min_accuracy"] = float(min_accuracy)
    if tolerances:
        document["tolerances"] = {alias: _tolerance_json(tolerance)
                                  for alias, tolerance in tolerances.items()}
    document["provenance"] = {key: value for key, value in dataclasses.asdict(provenance).items()
                              if not (key == "calibration" and value is None)}
    return document


def _tolerance_json(tolerance: Tolerance) -> dict:
    settings: dict = {"atol": tolerance.atol, "rtol": tolerance.rtol}
    if tolerance.top1 is not None:
        settings["top1"] = tolerance.top1
    return settings


def _plain(value):
    """Request values as JSON-ready Python (numpy arrays and scalars converted)."""
    if isinstance(value, np.ndarray):
        return array_to_json(value)
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(item) for item in value]
    return value


def write_golden(path: str, document: dict, *, force: bool = False, npz: bool = False) -> list[str]:
    """Validate ``document`` and write it to ``path`` atomically; returns the paths written.

    With ``npz``, request inputs, expected outputs and labels go to ``<stem>.npz`` beside the
    JSON (``data``). An existing file is only replaced with ``force``. The written file loads
    back with ``load_golden`` to the same examples and expectations (an npz request is
    columnar, whatever format it was recorded in)."""
    if os.path.isdir(path):
        raise GoldenError([f"{path}: is a directory; give the golden file's name"])
    npz_path = os.path.splitext(path)[0] + ".npz" if npz else None
    for target in (path, npz_path):
        if target and os.path.exists(target) and not force:
            raise FileExistsError(f"{target} already exists; refusing to overwrite it "
                                  "without force (--force)")
    base_dir = os.path.dirname(path)
    parsed = json_round_trip(document, path)
    valid = _validated(parsed, path, lambda name: read_npz(os.path.join(base_dir, name)))
    written = []
    if npz_path:
        arrays = _arrays_for_npz(valid)
        try:
            stored = {key: to_stored(key, array) for key, array in arrays.items()}
        except ValueError as error:
            raise GoldenError([f"{path}: {error}"]) from None
        parsed = _document_with_data(parsed, valid, os.path.basename(npz_path))
        # Check the final pair before touching the disk: what loads is what was validated.
        _validated(parsed, path, lambda name: (
            {key: from_stored(array) for key, array in stored.items()}, []))
        _make_directory_for(path)
        _atomic_write(npz_path, lambda target: save_npz(target, stored))
        written.append(npz_path)
    text = pretty_json(parsed) + "\n"
    _make_directory_for(path)  # only once all is validated: a refusal leaves nothing behind
    _atomic_write(path, lambda target: _write_text(target, text))
    return [path] + written


def json_round_trip(document: dict, path: str):
    """The document as load_golden will see it: serialised, then parsed back."""
    try:
        text = json.dumps(_plain(document), allow_nan=True, default=json_default)
    except (TypeError, ValueError, RecursionError) as error:
        raise GoldenError([f"{path}: document cannot be written as JSON: {error}"]) from None
    return json.loads(text)


def _validated(document, path: str, read_data) -> ValidGolden:
    valid, problems = validate_document(document, read_data)
    if problems:
        raise GoldenError([f"{path}: {problem}" for problem in problems])
    return valid


def _arrays_for_npz(valid: ValidGolden) -> dict[str, np.ndarray]:
    arrays = {(INPUTS if alias == BARE else f"{INPUTS}/{alias}"): array
              for alias, array in valid.request.arrays.items()}
    arrays.update({f"expected/{alias}": array for alias, array in valid.expected.items()})
    if valid.labels is not None:
        arrays["labels"] = valid.labels
    return arrays


def _document_with_data(parsed: dict, valid: ValidGolden, data_name: str) -> dict:
    moved = {"request", "expected", "labels"}
    document = {key: parsed[key] for key in TOP_KEYS if key in parsed and key not in moved}
    if valid.signature_name:
        document["signature_name"] = valid.signature_name
    document["data"] = data_name
    return {key: document[key] for key in TOP_KEYS if key in document}


def _make_directory_for(path: str) -> None:
    """Create the file's directory when only it is missing (``-o golden/x.json`` in a fresh
    checkout); a missing parent is named rather than created, as a typo is likelier there."""
    directory = os.path.dirname(os.path.abspath(path))
    if os.path.isdir(directory):
        return
    if os.path.exists(directory):
        raise GoldenError([f"{path}: cannot write: {directory} is not a directory"])
    parent = os.path.dirname(directory)
    if not os.path.isdir(parent):
        missing = parent
        while not os.path.isdir(os.path.dirname(missing)):
            missing = os.path.dirname(missing)
        problem = "is not a directory" if os.path.exists(missing) else "does not exist"
        raise GoldenError([f"{path}: cannot write: {missing} {problem}"])
    try:
        os.mkdir(directory)
    except FileExistsError:
        if not os.path.isdir(directory):
            raise GoldenError([f"{path}: cannot write: {directory} is not a directory"]) from None
    except OSError as error:
        raise GoldenError([f"{path}: cannot create directory {directory}: "
                           f"{error.strerror}"]) from None


def _write_text(target: str, text: str) -> None:
    with open(target, "w", encoding="utf-8") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())


def _atomic_write(path: str, write) -> None:
    """Write beside the target, then rename: a reader never sees half a file."""
    directory = os.path.dirname(path) or "."
    try:
        descriptor, temporary = tempfile.mkstemp(
            dir=directory, prefix=f".{os.path.basename(path)}.", suffix=".tmp")
    except OSError as error:
        # The temporary file's name means nothing to the user; the target's does.
        raise GoldenError([f"{path}: cannot write in {directory}: {error.strerror}"]) from None
    os.close(descriptor)
    try:
        write(temporary)
        # mkstemp makes the file private; golden files are shared data (ConfigMaps, images).
        os.chmod(temporary, 0o644)
        os.replace(temporary, path)
    except BaseException:
        if os.path.exists(temporary):
            os.unlink(temporary)
        raise


def pretty_json(value, indent: str = "") -> str:
    """Readable JSON: objects one key per line, innermost lists (and rows of b64 values) on
    one line, so a tensor reads as a table."""
    inner = indent + "  "
    if isinstance(value, dict) and not is_b64_object(value):
        flat = json.dumps(value, allow_nan=True, default=json_default, separators=(", ", ": "))
        if not any(isinstance(item, (list, dict)) for item in value.values()) and len(flat) <= 80:
            return flat
        items = [f"{inner}{json.dumps(key)}: {pretty_json(item, inner)}" for key, item in value.items()]
        return "{\n" + ",\n".join(items) + "\n" + indent + "}"
    if isinstance(value, list) and any(isinstance(item, list) or
                                       (isinstance(item, dict) and not is_b64_object(item))
                                       for item in value):
        items = [inner + pretty_json(item, inner) for item in value]
        return "[\n" + ",\n".join(items) + "\n" + indent + "]"
    return json.dumps(value, allow_nan=True, default=json_default, separators=(", ", ": "))
