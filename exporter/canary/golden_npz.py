"""The ``data`` side file of a golden set: a ``.npz`` holding its large arrays.

Keys: ``inputs/<alias>`` (or ``inputs`` for the one unnamed input of a single-input
signature), ``expected/<alias>`` and ``labels``. Only plain dtypes are read: pickled object
arrays are refused (``allow_pickle=False``), strings are stored as numpy ``U`` (text) or ``S``
(bytes) arrays and come back as object arrays of ``str``/``bytes``.
"""

from __future__ import annotations

import os
import zipfile

import numpy as np

from exporter.canary.json_arrays import shape_text, utf8_bytes
from exporter.files import is_readable_regular_file

# Uncompressed size, as the archive declares it; a golden set lives in a sidecar with a
# 100 MiB memory budget, so anything near this is a mistake, not a golden set.
MAX_NPZ_BYTES = 256 << 20


def read_npz(path: str) -> tuple[dict[str, np.ndarray], list[str]]:
    """Arrays by key and problems (already prefixed with the field they concern)."""
    problem = is_readable_regular_file(path)  # never blocks: a FIFO is refused, not waited on
    if problem is not None:
        return {}, [f'data: cannot read "{path}": {problem}']
    try:
        with open(path, "rb") as handle:
            magic = handle.read(4)
    except OSError as error:
        return {}, [f'data: cannot read "{path}": {error.strerror or error}']
    if not magic.startswith(b"PK"):
        return {}, [f'data: "{path}" is not an .npz file (not a zip archive)']
    try:
        with zipfile.ZipFile(path) as archive:
            declared = sum(info.file_size for info in archive.infolist())
    except (zipfile.BadZipFile, OSError, ValueError) as error:
        return {}, [f'data: "{path}" is not a valid .npz file: {error}']
    if declared > MAX_NPZ_BYTES:
        return {}, [f'data: "{path}" holds {declared} bytes uncompressed; the limit is '
                    f"{MAX_NPZ_BYTES >> 20} MiB"]
    arrays: dict[str, np.ndarray] = {}
    problems: list[str] = []
    try:
        archive = np.load(path, allow_pickle=False)
    except Exception as error:  # numpy's readers raise many types on corrupt input
        return {}, [f'data: "{path}" is not a valid .npz file: {error}']
    with archive:
        for key in archive.files:
            try:
                array = archive[key]
            except ValueError as error:
                if "allow_pickle" in str(error):
                    problems.append(f"data[{key}]: holds pickled Python objects, which golden "
                                    "files refuse to load; store numbers, booleans or strings")
                else:
                    problems.append(f"data[{key}]: cannot read: {error}")
                continue
            except Exception as error:  # corrupt member: zlib, EOF, header errors
                problems.append(f"data[{key}]: cannot read: {error}")
                continue
            converted = from_stored(array)
            if converted is None:
                problems.append(f"data[{key}]: dtype {array.dtype} is not supported "
                                "(numbers, booleans and strings are)")
            else:
                arrays[key] = converted
    return arrays, problems


def from_stored(array: np.ndarray) -> np.ndarray | None:
    """Stored dtypes as a golden set holds them: U/S become object arrays of str/bytes."""
    kind = array.dtype.kind
    if kind in "biuf":
        return array
    if kind in "US":
        result = np.empty(array.shape, dtype=object)
        if array.size:
            result[...] = array.astype(object)
        return result
    return None


def to_stored(key: str, array: np.ndarray) -> np.ndarray:
    """An array as it can be stored without pickling. Floats that float32 holds exactly are
    stored as float32 (JSON-recorded values are float64 but usually came from DT_FLOAT)."""
    kind = array.dtype.kind
    if kind == "f" and array.dtype == np.float64 and array.size:
        with np.errstate(invalid="ignore", over="ignore"):
            narrow = array.astype(np.float32)
            same = (narrow.astype(np.float64) == array) | (np.isnan(array) & np.isnan(narrow))
        return narrow if same.all() else array
    if kind != "O":
        return array
    items = array.reshape(-1).tolist()
    if any(item.endswith("\0" if isinstance(item, str) else b"\0") for item in items):
        # numpy's fixed-width strings drop trailing NULs; storing would silently change values
        raise ValueError(f"{key}: a value ends with a NUL character, which .npz string arrays "
                         "cannot keep; write this golden set without npz")
    if all(isinstance(item, str) for item in items):
        return np.array(items, dtype=str).reshape(array.shape)
    encoded = [utf8_bytes(item) if isinstance(item, str) else item for item in items]
    return np.array(encoded, dtype=bytes).reshape(array.shape)


def save_npz(path: str, arrays: dict[str, np.ndarray]) -> None:
    with open(path, "wb") as handle:
        np.savez_compressed(handle, **{key: to_stored(key, array) for key, array in arrays.items()})
        handle.flush()
        os.fsync(handle.fileno())


def check_example_axis(key: str, array: np.ndarray, problems: list[str]) -> bool:
    if array.ndim == 0:
        problems.append(f"data[{key}]: expected an array with one entry per example, "
                        f"got shape {shape_text(array.shape)}")
        return False
    if array.shape[0] == 0:
        problems.append(f"data[{key}]: must not be empty")
        return False
    return True
