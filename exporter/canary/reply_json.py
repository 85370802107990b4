"""TF Serving REST predict replies as arrays per output alias (§2.6 of the behaviour notes).

Row requests get ``{"predictions": [...]}``: bare values per example when the signature has
one output, objects ``{alias: value}`` per example when it has several. Columnar requests get
``{"outputs": value}`` or ``{"outputs": {alias: value}}``. Strings come back as ``bytes``.
"""

from __future__ import annotations

import json
from typing import Sequence

import numpy as np

from exporter.canary.errors import SchemaError
from exporter.canary.json_arrays import is_b64_object, json_to_array, json_type_name
from exporter.canary.request_json import INPUTS, INSTANCES, quoted

_SHOWN_PROBLEMS = 3


def parse_rest_predict_reply(body: bytes, request_format: str,
                             output_aliases: Sequence[str]) -> dict[str, np.ndarray]:
    """The outputs named in ``output_aliases`` (others are ignored); SchemaError when the
    reply is not JSON, lacks an asked-for output, or holds no tensor for it."""
    if request_format not in (INSTANCES, INPUTS):
        raise ValueError(f'request_format must be "instances" or "inputs", got {request_format!r}')
    aliases = list(output_aliases)
    if not aliases:
        raise ValueError("output_aliases must name at least one output")
    try:
        document = json.loads(body)
    except json.JSONDecodeError as error:
        raise SchemaError(f"reply is not valid JSON: {error.msg} at line {error.lineno} "
                          f"column {error.colno}") from None
    except (ValueError, RecursionError) as error:  # bad UTF-8, 4300+ digit integers, nesting
        raise SchemaError(f"reply is not valid JSON: {error or 'nested too deeply'}") from None
    if not isinstance(document, dict):
        raise SchemaError(f"reply is a JSON {json_type_name(document)}, expected an object")
    key = "predictions" if request_format == INSTANCES else "outputs"
    if key not in document:
        raise SchemaError(f'reply has no "{key}" (keys: {quoted(document) or "none"})')
    if request_format == INSTANCES:
        columns = _row_columns(document[key], aliases)
    else:
        columns = _columnar_columns(document[key], aliases)
    return {alias: _to_array(*column) for alias, column in columns.items()}


def _is_named(value) -> bool:
    return isinstance(value, dict) and not is_b64_object(value)


def _one_unnamed(key: str, aliases: list[str]) -> None:
    if len(aliases) != 1:
        raise SchemaError(f'reply holds one unnamed output in "{key}" but {len(aliases)} outputs '
                          f"are expected ({quoted(aliases)})")


def _row_columns(predictions, aliases: list[str]) -> dict:
    if not isinstance(predictions, list):
        raise SchemaError(f'"predictions" is a {json_type_name(predictions)}, expected a list')
    if not predictions or not _is_named(predictions[0]):
        _one_unnamed("predictions", aliases)
        return {aliases[0]: (predictions, "predictions", None)}
    for index, row in enumerate(predictions):
        if not _is_named(row):
            raise SchemaError(f"predictions[{index}] is a {json_type_name(row)}, expected an "
                              "object of outputs like predictions[0]")
        missing = [alias for alias in aliases if alias not in row]
        if missing:
            raise SchemaError(f"predictions[{index}] has no output {quoted(missing)} "
                              f"(it has {quoted(row) or 'none'})")
    return {alias: ([row[alias] for row in predictions], f"predictions[*].{alias}",
                    lambda index, a=alias: f"predictions[{index}].{a}")
            for alias in aliases}


def _columnar_columns(outputs, aliases: list[str]) -> dict:
    if not _is_named(outputs):
        _one_unnamed("outputs", aliases)
        return {aliases[0]: (outputs, "outputs", None)}
    missing = [alias for alias in aliases if alias not in outputs]
    if missing:
        raise SchemaError(f"reply has no output {quoted(missing)} (it has {quoted(outputs) or 'none'})")
    return {alias: (outputs[alias], f"outputs.{alias}", None) for alias in aliases}


def _to_array(value, field: str, example_path) -> np.ndarray:
    # Fast path: TF Serving writes one dtype per tensor, so numpy's own conversion of a
    # numeric or boolean nested list is exact; everything else takes the checked walk.
    if isinstance(value, list) and value:
        try:
            array = np.array(value)
        except (ValueError, TypeError, OverflowError):
            array = None
        if array is not None and array.dtype.kind in "biuf":
            return array
    problems: list[str] = []
    array = json_to_array(value, field, problems, example_path=example_path)
    if array is None:
        shown = "; ".join(problems[:_SHOWN_PROBLEMS])
        more = len(problems) - _SHOWN_PROBLEMS
        raise SchemaError(shown + (f"; and {more} more" if more > 0 else ""))
    return array
