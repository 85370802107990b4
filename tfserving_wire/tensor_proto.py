"""``TensorProto`` <-> numpy, the way TensorFlow's ``Tensor::FromProto`` / ``AsProtoField`` do.

Shared by the exporter's gRPC canaries (client side) and the simulator (server side).
"""

from __future__ import annotations

import numpy as np

from tfserving_wire import protos

# TensorProto's typed value field -> the TF dtypes it carries and their numpy types. The small
# integer types share int_val, as in tensor.proto; strings are object arrays of bytes.
_DTYPES_BY_FIELD = {
    "float_val": {"DT_FLOAT": np.float32},
    "double_val": {"DT_DOUBLE": np.float64},
    "half_val": {"DT_HALF": np.float16},
    "int_val": {"DT_INT32": np.int32, "DT_INT16": np.int16, "DT_INT8": np.int8,
                "DT_UINT8": np.uint8, "DT_UINT16": np.uint16},
    "int64_val": {"DT_INT64": np.int64},
    "uint32_val": {"DT_UINT32": np.uint32},
    "uint64_val": {"DT_UINT64": np.uint64},
    "bool_val": {"DT_BOOL": np.bool_},
    "string_val": {"DT_STRING": object},
}
# TF dtype name -> (numpy type, typed value field)
_FIELDS = {dtype: (numpy_type, field) for field, dtypes in _DTYPES_BY_FIELD.items()
           for dtype, numpy_type in dtypes.items()}
# The numpy type of each TF dtype this project handles.
NUMPY_TYPES = {dtype: numpy_type for dtype, (numpy_type, _) in _FIELDS.items()}
_MAX_ELEMENTS = 1 << 31
# The dimensions an array may have wherever this project runs: numpy 1.x holds 32 (numpy 2,
# 64). TF allows 254 (TensorShape's kMaxDims) but no real tensor comes near either.
NUMPY_MAX_DIMS = 32


class TensorDecodeError(ValueError):
    """The TensorProto cannot be turned into an array (TF's "tensor parsing error")."""


def dtype_name(number: int) -> str:
    return protos.types_pb2.DataType.Name(number)


def to_numpy(proto, alias: str) -> np.ndarray:
    """Decode a tensor; anything TF could not decode raises TensorDecodeError naming ``alias``."""
    error = TensorDecodeError(f"tensor parsing error: {alias}")
    try:
        name = dtype_name(proto.dtype)
    except ValueError:
        raise error from None
    if name not in _FIELDS or proto.tensor_shape.unknown_rank:
        raise error
    shape = [dim.size for dim in proto.tensor_shape.dim]
    if len(shape) > NUMPY_MAX_DIMS or any(size < 0 for size in shape):
        raise error
    count = int(np.prod(shape, dtype=np.int64)) if shape else 1
    if count > _MAX_ELEMENTS:
        raise error
    numpy_type, field = _FIELDS[name]
    if proto.tensor_content and numpy_type is not object:
        item = np.dtype(numpy_type).itemsize
        if len(proto.tensor_content) != count * item:
            raise error
        return np.frombuffer(proto.tensor_content, dtype=np.dtype(numpy_type).newbyteorder("<")
                             ).astype(numpy_type).reshape(shape)
    values = list(getattr(proto, field))
    if len(values) > count:
        raise error
    if values and len(values) < count:
        # TF repeats the last value to fill the tensor (a 1-value proto fills any shape).
        values += [values[-1]] * (count - len(values))
    if numpy_type is object:
        array = np.empty(count, dtype=object)
        array[:] = [bytes(v) for v in values] if values else [b""] * count
        return array.reshape(shape)
    if name == "DT_HALF":
        raw = np.array(values or [0] * count, dtype=np.uint16)
        return raw.view(np.float16).reshape(shape)
    if not values:
        return np.zeros(shape, dtype=numpy_type)
    return np.array(values, dtype=np.int64 if field == "int_val" else numpy_type
                    ).astype(numpy_type).reshape(shape)


def _dtype_of(array: np.ndarray) -> str:
    if array.dtype.kind in "OSU":
        return "DT_STRING"
    for name, (numpy_type, _) in _FIELDS.items():
        if numpy_type is not object and array.dtype == numpy_type:
            return name
    raise ValueError(f"cannot serialize a tensor of dtype {array.dtype}")


def from_numpy(array: np.ndarray, as_tensor_content: bool = False):
    """A TensorProto: typed ``*_val`` fields by default, ``tensor_content`` on request
    (``--enable_serialization_as_tensor_content``; strings always use ``string_val``)."""
    array = np.asarray(array)
    name = _dtype_of(array)
    proto = protos.tensor_pb2.TensorProto()
    proto.dtype = protos.types_pb2.DataType.Value(name)
    for size in array.shape:
        proto.tensor_shape.dim.add().size = int(size)
    numpy_type, field = _FIELDS[name]
    flat = array.reshape(-1)
    if name == "DT_STRING":
        proto.string_val.extend(v if isinstance(v, bytes) else str(v).encode("utf-8")
                                for v in flat)
    elif as_tensor_content:
        proto.tensor_content = flat.astype(np.dtype(numpy_type).newbyteorder("<")).tobytes()
    elif name == "DT_HALF":
        proto.half_val.extend(int(v) for v in flat.view(np.uint16))
    else:
        getattr(proto, field).extend(flat.tolist())
    return proto
