"""TF Serving REST predict bodies as a golden set holds them: parse, slice, type, merge.

A request is kept as one array per input alias with the example axis first, whichever format
it came in (``instances`` rows or ``inputs`` columns), so batches are slices and gRPC tensors
are casts. A bare request (no input names, for a single-input signature) uses alias ``""``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from exporter.canary.errors import GoldenError, SchemaError
from exporter.canary.json_arrays import (
    STRING, array_to_json, canonical_strings, is_b64_object, json_to_array, json_type_name,
    kind_of_array, shape_text)
from exporter.suggest import suggestion
from exporter.tfserving.types import TensorSpec
from tfserving_wire.tensor_proto import NUMPY_TYPES

INSTANCES, INPUTS = "instances", "inputs"
BARE = ""
REQUEST_KEYS = ("signature_name", INSTANCES, INPUTS)

def unknown_key(field: str, key: str, valid: Sequence[str]) -> str:
    return f"{field}: unknown key{suggestion(key, valid)}"


def quoted(names) -> str:
    return ", ".join(f'"{name}"' for name in names)


@dataclass
class RequestTensors:
    format: str                   # INSTANCES | INPUTS
    named: bool                   # False: one bare input under alias BARE
    arrays: dict[str, np.ndarray]  # example axis first; strings keep str vs bytes (b64)
    signature_name: str | None    # as written in the body; None when absent

    @property
    def n_examples(self) -> int:
        return next(iter(self.arrays.values())).shape[0]

    def body(self, start: int, stop: int, signature_name: str) -> dict:
        """The REST body for examples [start, stop), in the format it was written in."""
        columns = {alias: array_to_json(array[start:stop]) for alias, array in self.arrays.items()}
        document: dict = {"signature_name": signature_name} if signature_name else {}
        if self.format == INSTANCES:
            if self.named:
                aliases = list(columns)
                document[INSTANCES] = [dict(zip(aliases, row)) for row in zip(*columns.values())]
            else:
                document[INSTANCES] = columns[BARE]
        else:
            document[INPUTS] = columns if self.named else columns[BARE]
        return document

    def tensors(self, start: int, stop: int, inputs: Sequence[TensorSpec]) -> dict[str, np.ndarray]:
        """Arrays per signature input alias, typed from the signature (for gRPC)."""
        specs = {spec.alias: spec for spec in inputs}
        if not self.named:
            if len(specs) != 1:
                raise SchemaError(
                    f"the golden request has one unnamed input but the signature has "
                    f"{len(specs)} inputs ({quoted(specs) or 'none'}); name them in the request")
            (alias, spec), = specs.items()
            return {alias: _typed(self.arrays[BARE][start:stop], spec)}
        missing = [alias for alias in specs if alias not in self.arrays]
        extra = [alias for alias in self.arrays if alias not in specs]
        if missing or extra:
            parts = ([f"signature inputs missing from the golden request: {quoted(missing)}"]
                     if missing else [])
            parts += [f"golden request inputs not in the signature: {quoted(extra)}"] if extra else []
            raise SchemaError("; ".join(parts))
        return {alias: _typed(self.arrays[alias][start:stop], specs[alias]) for alias in specs}


def _typed(array: np.ndarray, spec: TensorSpec) -> np.ndarray:
    numpy_type = NUMPY_TYPES.get(spec.dtype)
    if numpy_type is None:
        raise SchemaError(f"input \"{spec.alias}\": dtype {spec.dtype} is not supported by canaries")
    kind = array.dtype.kind
    what = {"b": "booleans", "f": "floating-point numbers", "i": "integers", "u": "integers"}.get(
        kind, "strings")
    mismatch = SchemaError(f"input \"{spec.alias}\" is {spec.dtype} but the golden set holds {what}")
    if numpy_type is object:
        if kind_of_array(array) != STRING:
            raise mismatch
        return canonical_strings(array)
    if numpy_type is np.bool_:
        if kind != "b":
            raise mismatch
        return array.astype(np.bool_)
    if np.issubdtype(numpy_type, np.floating):
        if kind not in "iuf":
            raise mismatch
        return array.astype(numpy_type)
    if kind not in "iu":  # TF Serving accepts only JSON integers for integer inputs
        raise mismatch
    info = np.iinfo(numpy_type)
    if array.size and (int(array.min()) < info.min or int(array.max()) > info.max):
        raise SchemaError(f"input \"{spec.alias}\": values outside the range of {spec.dtype}")
    return array.astype(numpy_type)


def parse_request(request, field: str, problems: list[str]) -> RequestTensors | None:
    """A REST predict body as arrays; None (with problems appended) when it is invalid."""
    if not isinstance(request, dict):
        problems.append(f"{field}: expected an object, got {json_type_name(request)}")
        return None
    before = len(problems)
    for key in request:
        if key not in REQUEST_KEYS:
            problems.append(unknown_key(f"{field}.{key}", key, REQUEST_KEYS))
    signature_name = request.get("signature_name")
    if signature_name is not None and not isinstance(signature_name, str):
        problems.append(f"{field}.signature_name: expected a string, "
                        f"got {json_type_name(signature_name)}")
    has_instances, has_inputs = INSTANCES in request, INPUTS in request
    if has_instances and has_inputs:
        problems.append(f'{field}: has both "instances" and "inputs"; use one')
        return None
    if not (has_instances or has_inputs):
        problems.append(f'{field}: needs "instances" (rows) or "inputs" (columns)')
        return None
    if has_instances:
        parsed = _parse_instances(request[INSTANCES], f"{field}.instances", problems)
    else:
        parsed = _parse_inputs(request[INPUTS], f"{field}.inputs", problems)
    if parsed is None or len(problems) > before:
        return None
    named, arrays = parsed
    return RequestTensors(INSTANCES if has_instances else INPUTS, named, arrays,
                          signature_name if isinstance(signature_name, str) else None)


def _is_named(value) -> bool:
    return isinstance(value, dict) and not is_b64_object(value)


def _parse_instances(instances, field: str, problems: list[str]):
    if not isinstance(instances, list) or not instances or not _is_named(instances[0]):
        array = json_to_array(instances, field, problems, canonical=False)
        return None if array is None else (False, {BARE: array})
    aliases = list(instances[0])
    if not aliases:
        problems.append(f"{field}[0]: has no named inputs")
        return None
    if "" in aliases:
        problems.append(f"{field}[0]: input alias must not be empty")
        return None
    consistent = True
    for index, row in enumerate(instances[1:], start=1):
        if not _is_named(row):
            problems.append(f"{field}[{index}]: expected an object of named inputs like "
                            f"example 0, got {json_type_name(row)}")
            consistent = False
        elif set(row) != set(aliases):
            problems.append(f"{field}[{index}]: inputs {quoted(sorted(row))} differ from "
                            f"example 0's {quoted(sorted(aliases))}")
            consistent = False
    if not consistent:
        return None
    arrays = {}
    for alias in aliases:
        column = [row[alias] for row in instances]
        array = json_to_array(column, f"{field}[*].{alias}", problems, canonical=False,
                              example_path=lambda index, a=alias: f"{field}[{index}].{a}")
        if array is not None:
            arrays[alias] = array
    return (True, arrays) if len(arrays) == len(aliases) else None


def _parse_inputs(inputs, field: str, problems: list[str]):
    if not _is_named(inputs):
        array = json_to_array(inputs, field, problems, canonical=False)
        return None if array is None else (False, {BARE: array})
    if not inputs:
        problems.append(f"{field}: has no named inputs")
        return None
    arrays = {}
    for alias, value in inputs.items():
        if alias == "":
            problems.append(f"{field}: input alias must not be empty")
            continue
        array = json_to_array(value, f"{field}.{alias}", problems, canonical=False)
        if array is not None:
            arrays[alias] = array
    if len(arrays) != len(inputs):
        return None
    if not check_example_counts(arrays, field, problems):
        return None
    return True, arrays


def check_example_counts(arrays: dict[str, np.ndarray], field: str, problems: list[str]) -> bool:
    """Columnar inputs share their first axis: that is what makes them examples."""
    first_alias, first = next(iter(arrays.items()))
    ok = True
    for alias, array in arrays.items():
        if array.shape[0] != first.shape[0]:
            problems.append(f"{field}.{alias}: {array.shape[0]} examples, but "
                            f"{field}.{first_alias} has {first.shape[0]}")
            ok = False
    return ok


def merge_requests(requests: Sequence[dict]) -> dict:
    """Several REST bodies (same signature and format) as one: instances concatenated, or each
    columnar input concatenated on axis 0. Raw JSON values are joined, so numbers keep the
    tokens they were written with."""
    if not requests:
        raise GoldenError(["requests: need at least one request"])
    problems: list[str] = []
    parsed = [parse_request(request, f"requests[{index}]", problems)
              for index, request in enumerate(requests)]
    if problems:
        raise GoldenError(problems)
    first = parsed[0]
    for index, other in enumerate(parsed[1:], start=1):
        problems += _incompatibilities(first, other, f"requests[{index}]")
    if problems:
        raise GoldenError(problems)
    merged: dict = {}
    if first.signature_name is not None:
        merged["signature_name"] = first.signature_name
    if first.format == INSTANCES:
        merged[INSTANCES] = [row for request in requests for row in request[INSTANCES]]
    elif first.named:
        merged[INPUTS] = {alias: [example for request in requests
                                  for example in request[INPUTS][alias]]
                          for alias in requests[0][INPUTS]}
    else:
        merged[INPUTS] = [example for request in requests for example in request[INPUTS]]
    return merged


def _incompatibilities(first: RequestTensors, other: RequestTensors, field: str) -> list[str]:
    if (other.signature_name or "") != (first.signature_name or ""):
        return [f'{field}: signature_name "{other.signature_name or ""}" differs from '
                f'request 0\'s "{first.signature_name or ""}"']
    if other.format != first.format:
        return [f'{field}: uses "{other.format}" but request 0 uses "{first.format}"']
    if other.named != first.named:
        describe = {True: "named inputs", False: "one unnamed input"}
        return [f"{field}: has {describe[other.named]} but request 0 has {describe[first.named]}"]
    if set(other.arrays) != set(first.arrays):
        return [f"{field}: inputs {quoted(sorted(other.arrays))} differ from request 0's "
                f"{quoted(sorted(first.arrays))}"]
    problems = []
    for alias, array in first.arrays.items():
        name = f'input "{alias}"' if alias else "the input"
        theirs = other.arrays[alias]
        if theirs.shape[1:] != array.shape[1:]:
            problems.append(f"{field}: {name} has example shape {shape_text(theirs.shape[1:])} "
                            f"but request 0 has {shape_text(array.shape[1:])}")
        elif kind_of_array(theirs) != kind_of_array(array) and theirs.size and array.size:
            problems.append(f"{field}: {name} holds {kind_of_array(theirs)}s but request 0 "
                            f"holds {kind_of_array(array)}s")
    return problems
