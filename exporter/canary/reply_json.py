"""TF Serving REST predict replies as arrays per output alias (§2.6 of the behaviour notes).

Row requests get ``{"predictions": [...]}``: bare values per example when the signature has
one output, objects ``{alias: value}`` per example when it has several. Columnar requests get
``{"outputs": value}`` or ``{"outputs": {alias: value}}``. Strings come back as ``bytes``.

Three shapes TF Serving writes (``util/json_tensor.cc``, read at tensorflow/serving 9d981c5):

- Zero rows, ``{"predictions": []}``, whatever the number of outputs:
  ``MakeRowFormatJsonFromTensors`` writes one element per item of the batch dimension, and the
  ``{alias: ...}`` objects only inside elements (tests ``FromJsonSingleZeroBatchTensor``,
  ``FromJsonMultipleZeroBatchTensors``); columnar replies hold ``[]`` per output. Every
  asked-for output then maps to an array of shape [0]; the comparison reports the rows.
- A scalar in columnar replies, ``{"outputs": 2.5}``: ``AddTensorValues`` writes a rank-0 tensor
  as its one value, no brackets. (Row replies never hold one: ``MakeRowFormatJsonFromTensors``
  refuses a rank-0 output with "has no shape information".) It maps to a 0-d array.
- Raw bytes: a DT_STRING output whose alias does not end in ``_bytes`` (``IsNamedTensorBytes``)
  is written by ``AddSingleValueAndAdvance`` with rapidjson's ``Writer::String``, which (1.1.0,
  default flags) escapes only control characters, ``"`` and ``\\`` and copies every other
  byte unchecked; a value that is not UTF-8 makes the reply not UTF-8. Such a reply is read
  with ``surrogateescape`` and its strings become the exact bytes again (``raw_bytes``).
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
    """The outputs named in ``output_aliases`` (others are ignored), zero rows and columnar
    scalars included; SchemaError when the reply is not JSON, lacks an asked-for output, or
    holds no tensor for it."""
    if request_format not in (INSTANCES, INPUTS):
        raise ValueError(f'request_format must be "instances" or "inputs", got {request_format!r}')
    aliases = list(output_aliases)
    if not aliases:
        raise ValueError("output_aliases must name at least one output")
    document, raw_strings = _parse(body)
    if not isinstance(document, dict):
        raise SchemaError(f"reply is a JSON {json_type_name(document)}, expected an object")
    key = "predictions" if request_format == INSTANCES else "outputs"
    if key not in document:
        raise SchemaError(f'reply has no "{key}" (keys: {quoted(document) or "none"})')
    if request_format == INSTANCES:
        columns = _row_columns(document[key], aliases)
    else:
        columns = _columnar_columns(document[key], aliases)
    columnar = request_format == INPUTS
    return {alias: _to_array(*column, scalar=columnar, raw_strings=raw_strings)
            for alias, column in columns.items()}


def _parse(body: bytes):
    """The JSON document, and whether it was read with surrogateescape (not UTF-8). The body
    is at most ``rest_client.PREDICT_MAX_BYTES`` (the transport refuses more), and a second
    decoding is one more linear pass over it."""
    try:
        text, raw_strings = body.decode("utf-8-sig"), False
    except UnicodeDecodeError:
        text, raw_strings = body.decode("utf-8-sig", "surrogateescape"), True
    try:
        return json.loads(text), raw_strings
    except json.JSONDecodeError as error:
        # some of json's messages end in "at" ("Invalid control character at")
        raise SchemaError(f"reply is not valid JSON: {error.msg.removesuffix(' at')} at line "
                          f"{error.lineno} column {error.colno}") from None
    except (ValueError, RecursionError) as error:  # 4300+ digit integers, nesting
        raise SchemaError(f"reply is not valid JSON: {error or 'nested too deeply'}") from None


def _is_named(value) -> bool:
    return isinstance(value, dict) and not is_b64_object(value)


def _one_unnamed(key: str, aliases: list[str]) -> None:
    if len(aliases) != 1:
        raise SchemaError(f'reply holds one unnamed output in "{key}" but {len(aliases)} outputs '
                          f"are expected ({quoted(aliases)})")


def _row_columns(predictions, aliases: list[str]) -> dict:
    if not isinstance(predictions, list):
        raise SchemaError(f'"predictions" is a {json_type_name(predictions)}, expected a list')
    if not predictions:  # zero rows: the reply names no outputs (see the module notes)
        return {alias: (predictions, "predictions", None) for alias in aliases}
    if not _is_named(predictions[0]):
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


def _to_array(value, field: str, example_path, *, scalar: bool,
              raw_strings: bool) -> np.ndarray:
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
    array = json_to_array(value, field, problems, raw_strings=raw_strings, scalar=scalar,
                          empty=True, example_path=example_path)
    if array is None:
        shown = "; ".join(problems[:_SHOWN_PROBLEMS])
        more = len(problems) - _SHOWN_PROBLEMS
        raise SchemaError(shown + (f"; and {more} more" if more > 0 else ""))
    return array
