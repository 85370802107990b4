"""REST bodies <-> tensors, with TF Serving's rules and error texts (``util/json_tensor.cc``).

Requests: predict bodies in row (``instances``) or columnar (``inputs``) format become numpy
arrays typed by the signature; classify/regress bodies become tf.Example feature dicts typed by
the JSON token. Responses: numpy outputs and classify/regress results become the exact bytes
TF Serving writes (see :mod:`tfserving_simulator.rapidjson` for the layout).
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from typing import Callable

import numpy as np

from tfserving_simulator import rapidjson
from tfserving_simulator.errors import ServingError
from tfserving_simulator.models import Feature, TensorInfo
from tfserving_simulator.rapidjson import JsonObject, debug_string
from tfserving_wire.json_values import decode_b64, dense_shape
from tfserving_wire.tensor_proto import NUMPY_MAX_DIMS

ROW = "row"
COLUMNAR = "columnar"

_INT32 = (-(1 << 31), (1 << 31) - 1)
_INT64 = (-(1 << 63), (1 << 63) - 1)
_UINT32 = (0, (1 << 32) - 1)
_UINT64 = (0, (1 << 64) - 1)

# TF dtype name -> (numpy dtype, DataTypeString, accepts(JSON value) or None = unsupported)
_NUMPY = {
    "DT_FLOAT": np.float32, "DT_DOUBLE": np.float64, "DT_INT8": np.int8,
    "DT_INT16": np.int16, "DT_INT32": np.int32, "DT_UINT8": np.uint8, "DT_INT64": np.int64,
    "DT_UINT32": np.uint32, "DT_UINT64": np.uint64, "DT_BOOL": np.bool_, "DT_STRING": object,
}


def dtype_string(dtype: str) -> str:
    """TF's ``DataTypeString``: ``DT_FLOAT`` -> ``float``."""
    return dtype[3:].lower() if dtype.startswith("DT_") else dtype


def _invalid(*parts) -> ServingError:
    return ServingError("INVALID_ARGUMENT", "".join(str(part) for part in parts))


def _status_text(error: ServingError) -> str:
    """``Status::ToString()``: ``CODE: message``."""
    return f"{error.code}: {error.message}"


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _in_range(value, bounds: tuple[int, int]) -> bool:
    return _is_int(value) and bounds[0] <= value <= bounds[1]


def _is_number(value) -> bool:
    return _is_int(value) or isinstance(value, float)


def _as_float32(value: float) -> float:
    """rapidjson's ``GetFloat``, which casts its double: out of range is +-inf, tiny is 0
    (json_tensor_test.cc FloatTensorThatExceedsMaxReturnsInf, ...ExceedsMinReturnsZero)."""
    with np.errstate(over="ignore"):
        return float(np.float32(value))


def _type_error(value, dtype: str) -> ServingError:
    return _invalid("JSON Value: ", debug_string(value), " Type: ", rapidjson.type_name(value),
                    " is not of expected type: ", dtype_string(dtype))


def _scalar(value, dtype: str):
    """One JSON leaf as a value of ``dtype`` (``AddValueToTensor``)."""
    if dtype in ("DT_FLOAT", "DT_DOUBLE"):
        # Any number, integers included, through GetDouble/GetFloat: no precision check since
        # 2.5 (json_tensor_test.cc FloatTensorWithPrecisionLoss: [1435774380] is accepted).
        if not _is_number(value):
            raise _type_error(value, dtype)
        return float(value)  # GetDouble; _to_numpy makes DT_FLOAT's cast
    integer_ranges = {"DT_INT32": _INT32, "DT_INT16": _INT32, "DT_INT8": _INT32,
                      "DT_UINT8": _INT32, "DT_INT64": _INT64, "DT_UINT32": _UINT32,
                      "DT_UINT64": _UINT64}
    if dtype in integer_ranges:
        if not _in_range(value, integer_ranges[dtype]):
            raise _type_error(value, dtype)
        return value
    if dtype == "DT_STRING":
        if not isinstance(value, str):
            raise _type_error(value, dtype)
        return value.encode("utf-8", "surrogateescape")
    if dtype == "DT_BOOL":
        if not isinstance(value, bool):
            raise _type_error(value, dtype)
        return value
    raise ServingError("UNIMPLEMENTED", f"Conversion of JSON Value: {debug_string(value)} "
                                        f"to type: {dtype_string(dtype)}")


def _is_base64_object(value) -> bool:
    return (isinstance(value, JsonObject) and len(value) == 1 and value[0][0] == "b64"
            and isinstance(value[0][1], str))


def _decode_base64_object(value) -> bytes:
    if not _is_base64_object(value):
        raise _invalid("JSON Value: ", debug_string(value),
                       " not formatted correctly for base64 data")
    try:
        return decode_b64(value[0][1])
    except ValueError:
        raise _invalid("Unable to base64 decode") from None


def _fill(value, shape: list[int], dtype: str, out: list) -> None:
    """``FillTensorProto``: walk the JSON DOM depth first, checking it is a dense tensor of
    ``shape``. Iterative, since a request may nest as deep as it likes."""
    rank = len(shape)
    pending = [(value, 0)]
    while pending:
        value, level = pending.pop()
        if not isinstance(value, list):
            if level != rank:
                raise _invalid("JSON Value: ", debug_string(value), " found at incorrect level: ",
                               level + 1, " in the JSON DOM. Expected at level: ", rank)
            if isinstance(value, JsonObject):
                if dtype != "DT_STRING":
                    raise _type_error(value, dtype)
                out.append(_decode_base64_object(value))
            else:
                out.append(_scalar(value, dtype))
            continue
        if level >= rank:
            raise _invalid("Encountered list at unexpected level: ", level, " expected < ", rank)
        if len(value) != shape[level]:
            raise _invalid("Encountered list at unexpected size: ", len(value), " at level: ",
                           level, " expected size: ", shape[level])
        pending.extend((item, level + 1) for item in reversed(value))


@dataclass
class _Tensor:
    shape: list[int]
    values: list


def _to_tensor(value, dtype: str) -> _Tensor:
    shape = dense_shape(value)
    values: list = []
    _fill(value, shape, dtype, values)
    return _Tensor(shape, values)


# TensorShape::MaxDimensions (TensorFlow's tensor_shape.h): a deeper tensor fails
# Tensor::FromProto, which GetInputValues reports after the whole body was read.
_TF_MAX_DIMENSIONS = 254


def _to_numpy(tensor: _Tensor, dtype: str, alias: str) -> np.ndarray:
    if len(tensor.shape) > _TF_MAX_DIMENSIONS:
        raise _invalid("tensor parsing error: ", alias)
    if len(tensor.shape) > NUMPY_MAX_DIMS:
        raise ServingError("UNIMPLEMENTED", f"the simulator holds tensors of at most "
                                            f"{NUMPY_MAX_DIMS} dimensions (numpy's "
                                            f"limit); {alias} has {len(tensor.shape)}")
    numpy_type = _NUMPY[dtype]
    if numpy_type is object:
        array = np.empty(len(tensor.values), dtype=object)
        array[:] = tensor.values
        return array.reshape(tensor.shape)
    if numpy_type in (np.int8, np.int16, np.uint8):
        # The proto's int_val holds int32s; narrowing wraps like TF's tensor conversion.
        return np.array(tensor.values, dtype=np.int64).astype(numpy_type).reshape(tensor.shape)
    with np.errstate(over="ignore"):  # DT_FLOAT: GetFloat's cast, out of range is +-inf
        return np.array(tensor.values, dtype=numpy_type).reshape(tensor.shape)


def _shape_text(shape: list[int]) -> str:
    return "[" + ",".join(str(dim) for dim in shape) + "]"


@dataclass
class PredictJsonRequest:
    signature_name: str  # as sent; "" when absent
    format: str  # ROW or COLUMNAR
    inputs: dict[str, np.ndarray]


def parse_body(body: bytes):
    """``ParseJson``: the document must parse and be an object."""
    if not body:
        raise _invalid("JSON Parse error: The document is empty")
    try:
        doc = rapidjson.parse(body)
    except rapidjson.JsonParseError as err:
        raise _invalid("JSON Parse error: ", err.message, " at offset: ", err.offset) from None
    if not isinstance(doc, JsonObject):
        raise _invalid("JSON Value: ", debug_string(doc), " Is not object")
    return doc


def _signature_name(doc: JsonObject) -> str:
    if not doc.has("signature_name"):
        return ""
    name = doc.find("signature_name")
    if not isinstance(name, str):
        raise _invalid("JSON Value: ", debug_string(doc),
                       " not formatted correctly. 'signature_name' key must be a string value.")
    return name


def parse_predict_request(
    body: bytes, input_infos: Callable[[str], dict[str, TensorInfo]]
) -> PredictJsonRequest:
    """``FillPredictRequestFromJson``. ``input_infos(signature_name)`` looks up the model and
    signature (raising their errors) so the checks happen in TF Serving's order."""
    doc = parse_body(body)
    signature_name = _signature_name(doc)
    infos = input_infos(signature_name)
    if not infos:
        raise _invalid("Failed to get input map for signature: ",
                       signature_name or "DEFAULT")
    doc_text = lambda: debug_string(doc)  # noqa: E731 - built only on error paths
    if doc.has("instances"):
        if doc.has("inputs"):
            raise _invalid("JSON Value: ", doc_text(), " Not formatted correctly expecting only"
                           " one of 'inputs' or 'instances' keys to exist ")
        instances = doc.find("instances")
        if not isinstance(instances, list):
            # "Expecting" since 2.5 (json_tensor.cc; a0a9d143 fixed the older "Excepting").
            raise _invalid("JSON Value: ", doc_text(),
                           " Expecting 'instances' to be an list/array")
        if not instances:
            raise _invalid("JSON Value: ", doc_text(), " No values in 'instances' array")
        return PredictJsonRequest(signature_name, ROW,
                                  _arrays(_from_instances(instances, infos), infos))
    if doc.has("inputs"):
        return PredictJsonRequest(signature_name, COLUMNAR,
                                  _arrays(_from_inputs(doc.find("inputs"), infos), infos))
    raise _invalid("Missing 'inputs' or 'instances' key")


def _is_element_object(value) -> bool:
    return isinstance(value, JsonObject) and not _is_base64_object(value)


class _Batch:
    """Per-input tensors of one ``instances`` list, checked for equal size and shape."""

    def __init__(self, infos: dict[str, TensorInfo]) -> None:
        self.infos = infos
        self.first: dict[str, _Tensor] = {}
        self.values: dict[str, list] = {}

    def add(self, value, name: str) -> None:
        if name not in self.infos:
            raise _invalid("JSON object: does not have named input: ", name)
        tensor = _to_tensor(value, self.infos[name].dtype)
        first = self.first.get(name)
        if first is None:
            self.first[name] = tensor
            self.values[name] = list(tensor.values)
            return
        if len(first.values) != len(tensor.values):
            raise _invalid("Expecting tensor size: ", len(first.values), " but got: ",
                           len(tensor.values))
        if first.shape != tensor.shape:
            raise _invalid("Expecting shape ", _shape_text(first.shape), " but got: ",
                           _shape_text(tensor.shape))
        self.values[name].extend(tensor.values)

    def tensors(self, count: int) -> dict[str, _Tensor]:
        return {name: _Tensor([count, *first.shape], self.values[name])
                for name, first in self.first.items()}


def _from_instances(instances: list, infos: dict[str, TensorInfo]) -> dict[str, _Tensor]:
    if not isinstance(instances[0], JsonObject) and len(infos) > 1:
        raise _invalid("instances is a plain list, but expecting list of objects as multiple "
                       "input tensors required as per tensorinfo_map")
    objects = _is_element_object(instances[0])
    input_names = sorted(infos)
    batch = _Batch(infos)
    for index, element in enumerate(instances):
        if objects:
            if not _is_element_object(element):
                raise _invalid("Expecting object but got list at item ", index, " of input list")
            for name, value in element:
                try:
                    batch.add(value, name)
                except ServingError as err:
                    raise _invalid("Failed to process element: ", index, " key: ", name,
                                   " of 'instances' list. Error: ", _status_text(err)) from None
            if sorted(set(element.keys())) != input_names:
                # FillTensorMapFromInstancesList's wording since 2.3 (83863b8f).
                raise _invalid("Failed to process element: ", index, " of 'instances' list. "
                               "JSON object: ", debug_string(element),
                               " keys must be equal to: ", ",".join(input_names))
        else:
            if _is_element_object(element):
                raise _invalid("Expecting value/list but got object at item ", index,
                               " of input list")
            try:
                batch.add(element, next(iter(sorted(infos))))
            except ServingError as err:
                raise _invalid("Failed to process element: ", index,
                               " of 'instances' list. Error: ", _status_text(err)) from None
    return batch.tensors(len(instances))


def _from_inputs(value, infos: dict[str, TensorInfo]) -> dict[str, _Tensor]:
    if not isinstance(value, JsonObject) or _is_base64_object(value):
        if len(infos) > 1:
            raise _invalid("inputs is a plain value/list, but expecting an object as multiple "
                           "input tensors required as per tensorinfo_map")
        name, info = next(iter(infos.items()))
        return {name: _to_tensor(value, info.dtype)}
    tensors = {}
    for name in sorted(infos):
        if not value.has(name):
            raise _invalid("Missing named input: ", name, " in 'inputs' object.")
        tensors[name] = _to_tensor(value.find(name), infos[name].dtype)
    return tensors


def _arrays(tensors: dict[str, _Tensor], infos: dict[str, TensorInfo]) -> dict[str, np.ndarray]:
    """The request's tensors as the graph receives them (after the whole body was read)."""
    return {name: _to_numpy(tensor, infos[name].dtype, name) for name, tensor in tensors.items()}


# --- classify / regress requests -------------------------------------------------------------

@dataclass
class ExamplesJsonRequest:
    signature_name: str  # as sent; "" when absent
    examples: list[dict[str, Feature]]
    context: dict[str, Feature] | None


def _feature_kind_error(name: str, kind: str | None) -> ServingError:
    return _invalid("Unexpected element type in feature: ", name, " expecting type: ",
                    kind or "UNKNOWN")


def _add_to_feature(value, name: str, feature: list) -> None:
    """``AddValueToFeature``; ``feature`` is ``[kind or None, values]``."""
    def want(kind: str) -> None:
        if feature[0] not in (None, kind):
            raise _feature_kind_error(name, feature[0])
        feature[0] = kind

    if value is None or isinstance(value, list) or (
            isinstance(value, JsonObject) and not _is_base64_object(value)):
        raise _invalid("Feature: ", name, " has element with unexpected JSON type: ",
                       rapidjson.type_name(value))
    if isinstance(value, bool):
        want("int64")
        feature[1].append(1 if value else 0)
    elif isinstance(value, JsonObject):
        want("bytes")
        feature[1].append(_decode_base64_object(value))
    elif isinstance(value, str):
        want("bytes")
        feature[1].append(value.encode("utf-8", "surrogateescape"))
    elif isinstance(value, float):
        want("float")
        feature[1].append(_as_float32(value))  # unchecked, like tensors
    else:
        want("int64")
        if value > _INT64[1]:
            # The wording since 2.8 (21360c76 renamed int64/uint64 to int64_t/uint64_t).
            raise _invalid("Feature: ", name, " has uint64_t element. Only int64_t is supported.")
        feature[1].append(value)


def _example(value) -> dict[str, Feature]:
    if not isinstance(value, JsonObject):
        raise _invalid("Example must be JSON object but got JSON ", rapidjson.type_name(value))
    example: dict[str, Feature] = {}
    for name, content in value:
        feature: list = [None, []]
        for item in content if isinstance(content, list) else [content]:
            _add_to_feature(item, name, feature)
        # A feature given as [] has no kind in TF; it parses like an empty float list.
        example[name] = (feature[0] or "float", feature[1])
    return example


def parse_examples_request(body: bytes) -> ExamplesJsonRequest:
    """``FillClassifyRegressRequestFromJson`` (the same wording for classify and regress)."""
    doc = parse_body(body)
    signature_name = _signature_name(doc)
    context = _example(doc.find("context")) if doc.has("context") else None
    if not doc.has("examples"):
        raise _invalid("JSON Value: ", debug_string(doc), " When method is classify, key "
                       "'examples' is expected and was not found")
    examples = doc.find("examples")
    if not isinstance(examples, list):
        raise _invalid("JSON Value: ", debug_string(doc),
                       " Expecting 'examples' value to be an list/array")
    if not examples:
        raise _invalid("JSON Value: ", debug_string(doc), " 'examples' value is an empty array")
    return ExamplesJsonRequest(signature_name, [_example(item) for item in examples], context)


# --- responses ------------------------------------------------------------------------------

def _write_scalar(writer: rapidjson.PrettyWriter, value, as_bytes: bool) -> None:
    if isinstance(value, (bytes, str)):
        raw = value if isinstance(value, bytes) else value.encode("utf-8", "surrogateescape")
        if as_bytes:
            writer.start_object()
            writer.key("b64")
            writer.string(base64.b64encode(raw).decode("ascii"))
            writer.end_object()
        else:
            writer.string(raw.decode("utf-8", "surrogateescape"))
    elif isinstance(value, (bool, np.bool_)):
        writer.raw("true" if value else "false")
    elif isinstance(value, np.floating):
        writer.raw(rapidjson.float_text(float(value), single_precision=value.dtype.itemsize <= 4))
    elif isinstance(value, float):
        writer.raw(rapidjson.float_text(value, single_precision=False))
    else:
        writer.raw(str(int(value)))


def _write_tensor(writer: rapidjson.PrettyWriter, array: np.ndarray, as_bytes: bool) -> None:
    """``AddTensorValues``: nested arrays, scalars unwrapped."""
    if array.ndim == 0:
        _write_scalar(writer, array[()], as_bytes)
        return
    writer.start_array()
    for item in array:
        _write_tensor(writer, item, as_bytes) if array.ndim > 1 else _write_scalar(
            writer, item, as_bytes)
    writer.end_array()


def _is_bytes_output(name: str, array: np.ndarray) -> bool:
    return array.dtype.kind in "OSU" and name.endswith("_bytes")


def _body(writer: rapidjson.PrettyWriter) -> bytes:
    return writer.text().encode("utf-8", "surrogateescape")


def predict_response(outputs: dict[str, np.ndarray], request_format: str) -> bytes:
    """``MakeJsonFromTensors``: ``predictions`` (row) or ``outputs`` (columnar)."""
    if not outputs:
        raise _invalid("Cannot convert empty tensor map to JSON")
    arrays = {name: np.asarray(outputs[name]) for name in sorted(outputs)}
    if request_format == ROW:
        return _row_response(arrays)
    writer = rapidjson.PrettyWriter()
    writer.start_object()
    writer.key("outputs")
    several = len(arrays) > 1
    if several:
        writer.start_object()
    for name, array in arrays.items():
        if several:
            writer.key(name)
        _write_tensor(writer, array, _is_bytes_output(name, array))
    if several:
        writer.end_object()
    writer.end_object()
    return _body(writer)


def _row_response(arrays: dict[str, np.ndarray]) -> bytes:
    batch_size = 0
    for name, array in arrays.items():
        if array.ndim == 0:
            raise _invalid("Tensor name: ", name, " has no shape information ")
        if array.shape[0] < 1:
            raise _invalid("Tensor name: ", name, " has invalid batch size: ", array.shape[0])
        if batch_size and batch_size != array.shape[0]:
            raise _invalid("Tensor name: ", name, " has inconsistent batch size: ",
                           array.shape[0], " expecting: ", batch_size)
        batch_size = array.shape[0]
    writer = rapidjson.PrettyWriter()
    writer.start_object()
    writer.key("predictions")
    writer.start_array()
    several = len(arrays) > 1
    for item in range(batch_size):
        if several:
            writer.start_object()
        # TF Serving switches to single-line arrays for the items only; the outer array's
        # closing bracket is written in the default mode, hence "[2.5, 3.0\n    ]".
        writer.single_line_arrays = True
        for name, array in arrays.items():
            if several:
                writer.key(name)
            _write_tensor(writer, array[item], _is_bytes_output(name, array))
        writer.single_line_arrays = False
        if several:
            writer.end_object()
    writer.end_array()
    writer.end_object()
    return _body(writer)


def classify_response(results: list[list[tuple[str, float]]]) -> bytes:
    """``MakeJsonFromClassificationResult``: per example a list of ``[label, score]``."""
    if not results:
        raise _invalid("Cannot convert empty ClassificationResults to JSON")
    writer = rapidjson.PrettyWriter()
    writer.start_object()
    writer.key("results")
    writer.start_array()
    for classes in results:
        writer.single_line_arrays = True
        writer.start_array()
        for label, score in classes:
            writer.start_array()
            writer.string(label if isinstance(label, str)
                          else bytes(label).decode("utf-8", "surrogateescape"))
            writer.raw(rapidjson.float_text(float(score), single_precision=True))
            writer.end_array()
        writer.end_array()
        writer.single_line_arrays = False
    writer.end_array()
    writer.end_object()
    return _body(writer)


def regress_response(values: list[float]) -> bytes:
    """``MakeJsonFromRegressionResult``: one float per example on a single line."""
    if not values:
        raise _invalid("Cannot convert empty RegressionResults to JSON")
    writer = rapidjson.PrettyWriter()
    writer.start_object()
    writer.key("results")
    writer.single_line_arrays = True
    writer.start_array()
    for value in values:
        writer.raw(rapidjson.float_text(float(value), single_precision=True))
    writer.end_array()
    writer.end_object()
    return _body(writer)
