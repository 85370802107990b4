"""Simulated model programs (numpy), their signatures, and the servable the front ends call.

The servable runs any ``ModelProgram``: the numpy stand-ins here, or a real SavedModel in
TensorFlow's runtime (``tf_session.SessionProgram``). What TF Serving does around the graph
(serialized tf.Examples for Classify/Regress, the checks on their outputs, runtime latency,
output faults) is the servable's, so it is the same for both.
"""

from __future__ import annotations

import inspect
import json
import math
import os
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from tfserving_simulator.errors import TF_CODES, ServingError, check_json_object
from tfserving_wire import protos
from tfserving_wire.tensor_proto import NUMPY_TYPES

# A tf.Example feature: (kind, values) with kind "float" | "int64" | "bytes".
Feature = tuple[str, list]


@dataclass(frozen=True)
class TensorInfo:
    """One signature input or output: graph tensor name, TF dtype name, shape (None = unknown rank)."""

    name: str
    dtype: str
    shape: tuple[int, ...] | None


@dataclass(frozen=True, eq=True)
class SignatureDef:
    """A SignatureDef: method name and input/output aliases mapped to tensors.

    ``proto`` is the ``tensorflow.SignatureDef`` read from a real SavedModel (None for the
    numpy stand-ins): metadata and error texts then show it exactly as the file has it, with
    what the fields above leave out (dimension names, sparse encodings, defaults).
    """

    method_name: str
    inputs: dict[str, TensorInfo]
    outputs: dict[str, TensorInfo]
    proto: Any = field(default=None, compare=False, repr=False)


# --- TF dtypes -----------------------------------------------------------------------------

def _tf_short_name(dtype: str) -> str:
    """TF's short name of a dtype, as runtime messages use it: DT_FLOAT -> float."""
    return dtype[len("DT_"):].lower()


def _dtype_of_array(array: np.ndarray) -> str:
    """The TF dtype name (``DT_FLOAT``) of an array as the runtime would hold it."""
    if array.dtype.kind in "OSU":
        return "DT_STRING"
    for dtype, numpy_type in NUMPY_TYPES.items():
        if numpy_type is not object and array.dtype == numpy_type:
            return dtype
    return "DT_" + str(array.dtype).upper()


def _tf_short_name_of_array(array: np.ndarray) -> str:
    return _tf_short_name(_dtype_of_array(array))


def _check_feed_dtype(index: int, info: TensorInfo, array: np.ndarray) -> None:
    numpy_type, short = NUMPY_TYPES[info.dtype], _tf_short_name(info.dtype)
    matches = array.dtype.kind in "OSU" if numpy_type is object else array.dtype == numpy_type
    if not matches:
        # The DirectSession's own wording for a feed of the wrong dtype.
        raise ServingError(
            "INVALID_ARGUMENT",
            f"Expects arg[{index}] to be {short} but {_tf_short_name_of_array(array)} is provided",
        )


def _shape_text(shape) -> str:
    return "[" + ",".join("?" if d is None or d < 0 else str(d) for d in shape) + "]"


# --- tf.Example parsing (what the graph's ParseExample op does) ------------------------------

_KIND_TO_TF = {"float": "float", "int64": "int64", "bytes": "string"}


@dataclass(frozen=True)
class _DenseFeature:
    key: str
    default: float | None  # None = required


def _parse_float_features(examples: list[dict[str, Feature]],
                          spec: tuple[_DenseFeature, ...]) -> dict[str, np.ndarray]:
    """Dense float features of shape [1] per example, with TF's ParseExample error texts."""
    columns = {feature.key: np.zeros((len(examples), 1), dtype=np.float32) for feature in spec}
    for index, example in enumerate(examples):
        for feature in spec:
            found = example.get(feature.key)
            if found is None:
                if feature.default is None:
                    raise ServingError(
                        "INVALID_ARGUMENT",
                        f"Name: <unknown>, Feature: {feature.key} (data type: float) is required "
                        "but could not be found.")
                columns[feature.key][index, 0] = feature.default
                continue
            kind, values = found
            if kind != "float":
                raise ServingError(
                    "INVALID_ARGUMENT",
                    f"Name: <unknown>, Key: {feature.key}, Index: {index}.  Data types don't "
                    f"match. Data type: {_KIND_TO_TF.get(kind, kind)} but expected type: float")
            if len(values) != 1:
                raise ServingError(
                    "INVALID_ARGUMENT",
                    f"Name: <unknown>, Key: {feature.key}, Index: {index}.  Number of float "
                    f"values != expected.  Values size: {len(values)} but output shape: [1]")
            columns[feature.key][index, 0] = values[0]
    return columns


def _example_from_serialized(serialized) -> dict[str, Feature]:
    """A serialized tf.Example (a DT_STRING feed) as a feature dict."""
    if isinstance(serialized, str):
        serialized = serialized.encode("latin-1")
    example = protos.example_pb2.Example()
    try:
        example.ParseFromString(bytes(serialized))
    except Exception as err:  # protobuf's DecodeError and friends
        raise ServingError(
            "INVALID_ARGUMENT", f"Could not parse example input, value: '{serialized!r}'"
        ) from err
    return example_features(example)


def example_features(example) -> dict[str, Feature]:
    """A tf.Example proto as the graph's ParseExample sees it: a Feature with no kind set is
    no value at all. gRPC's Classify/Regress examples take the same path as serialized ones."""
    features: dict[str, Feature] = {}
    for key, feature in example.features.feature.items():
        kind = feature.WhichOneof("kind")
        if kind is not None:
            features[key] = (kind[:-len("_list")], list(getattr(feature, kind).value))
    return features


def serialized_example(features: dict[str, Feature]) -> bytes:
    """A feature dict as a serialized tf.Example (the inverse of ``example_features``)."""
    example = protos.example_pb2.Example()
    for key, (kind, values) in features.items():
        value_list = getattr(example.features.feature[key], f"{kind}_list")
        value_list.SetInParent()  # an empty list still says its kind
        value_list.value.extend(values)
    return example.SerializeToString()


def _examples_from_feed(value) -> list[dict[str, Feature]]:
    if isinstance(value, np.ndarray):
        return [_example_from_serialized(item) for item in value.reshape(-1)]
    return list(value)


# --- Programs ------------------------------------------------------------------------------

def _float_info(name: str, shape: tuple[int, ...] | None = (-1, 1)) -> TensorInfo:
    return TensorInfo(name, "DT_FLOAT", shape)


_EXAMPLES = TensorInfo("tf_example:0", "DT_STRING", None)
PREDICT = "tensorflow/serving/predict"
CLASSIFY = "tensorflow/serving/classify"
REGRESS = "tensorflow/serving/regress"


class ModelProgram:
    """A loaded "graph": signatures plus a function from fed tensors to fetched tensors.

    ``emulated``: a numpy stand-in, for which the servable imitates the checks TensorFlow's
    runtime makes on feeds (dtypes); a real graph (False) makes them itself.
    """

    kind = ""
    emulated = True
    signatures: dict[str, SignatureDef]

    def run(self, feeds: dict[str, object], fetches: list[str]) -> dict[str, np.ndarray]:
        """Compute the tensors named in ``fetches`` from ``feeds`` (both keyed by tensor name)."""
        raise NotImplementedError


class HalfPlusTwo(ModelProgram):
    """TF Serving's half_plus_two test model (version 123 signature set, docs/tfserving-behaviour.md §6.2)."""

    kind = "half_plus_two"

    def __init__(self, a: float = 0.5, b: float = 2.0, c: float = 3.0,
                 a2: float | None = None, c2: float | None = None) -> None:
        self.a, self.b, self.c = np.float32(a), np.float32(b), np.float32(c)
        # The TF1 export holds y3's parameters in separate variables with the same values.
        self.a2 = np.float32(a if a2 is None else a2)
        self.c2 = np.float32(c if c2 is None else c2)
        self.signatures = {
            "serving_default": SignatureDef(
                PREDICT, {"x": _float_info("x:0")}, {"y": _float_info("y:0")}),
            "classify_x_to_y": SignatureDef(
                CLASSIFY, {"inputs": _EXAMPLES}, {"scores": _float_info("y:0")}),
            "regress_x_to_y": SignatureDef(
                REGRESS, {"inputs": _EXAMPLES}, {"outputs": _float_info("y:0")}),
            "regress_x_to_y2": SignatureDef(
                REGRESS, {"inputs": _EXAMPLES}, {"outputs": _float_info("y2:0")}),
            "regress_x2_to_y3": SignatureDef(
                REGRESS, {"inputs": _float_info("x2:0")}, {"outputs": _float_info("y3:0")}),
        }

    _FEATURES = (_DenseFeature("x", None), _DenseFeature("x2", 0.0))

    def run(self, feeds, fetches):
        tensors: dict[str, np.ndarray] = {}
        if "tf_example:0" in feeds:
            parsed = _parse_float_features(_examples_from_feed(feeds["tf_example:0"]),
                                           self._FEATURES)
            tensors["x:0"], tensors["x2:0"] = parsed["x"], parsed["x2"]
        for name in ("x:0", "x2:0"):
            if name in feeds:
                tensors[name] = np.asarray(feeds[name], dtype=np.float32)
        formulas = {
            "y:0": ("x:0", self.a, self.b),
            "y2:0": ("x:0", self.a, self.c),
            "y3:0": ("x2:0", self.a2, self.c2),
        }
        results = {}
        for fetch in fetches:
            source, slope, offset = formulas[fetch]
            if source not in tensors:
                raise ServingError(
                    "INVALID_ARGUMENT",
                    f"You must feed a value for placeholder tensor '{source[:-2]}' with dtype "
                    "float and shape [?,1]")
            results[fetch] = (slope * tensors[source] + offset).astype(np.float32)
        return results


IMAGE_SHAPE = (32, 32, 3)
NUM_CLASSES = 10


class ImageClassifier(ModelProgram):
    """A deterministic linear softmax classifier over 32×32×3 images."""

    kind = "image_classifier"

    def __init__(self, seed: int = 0, weight_noise: float = 0.0, noise_seed: int = 1) -> None:
        pixels = int(np.prod(IMAGE_SHAPE))
        rng = np.random.default_rng(seed)
        # 1/sqrt(pixels) keeps logits O(1) for pixel values in [0, 1].
        scale = 1.0 / np.sqrt(pixels)
        weights = rng.standard_normal((pixels, NUM_CLASSES)) * scale
        self.bias = rng.standard_normal(NUM_CLASSES) * 0.1
        if weight_noise:
            # weight_noise is relative to the weights' own stddev: 0.5 flips a fair share
            # of arg-maxes, 0.01 almost none.
            noise = np.random.default_rng(noise_seed).standard_normal(weights.shape)
            weights = weights + noise * scale * float(weight_noise)
        self.weights = weights
        self.signatures = {
            "serving_default": SignatureDef(
                PREDICT,
                {"image": TensorInfo("image:0", "DT_FLOAT", (-1, *IMAGE_SHAPE))},
                {"probabilities": TensorInfo("probabilities:0", "DT_FLOAT", (-1, NUM_CLASSES)),
                 "classes": TensorInfo("classes:0", "DT_INT64", (-1,))},
            ),
        }

    def run(self, feeds, fetches):
        image = np.asarray(feeds["image:0"], dtype=np.float32)
        if image.ndim != 4 or image.shape[1:] != IMAGE_SHAPE:
            raise ServingError(
                "INVALID_ARGUMENT",
                f"Shape of tensor image {_shape_text(image.shape)} is not compatible with "
                f"expected shape {_shape_text((-1, *IMAGE_SHAPE))}.\n"
                "\t [[{{node image_shape_check}}]]")
        logits = image.reshape(image.shape[0], -1).astype(np.float64) @ self.weights + self.bias
        shifted = np.exp(logits - logits.max(axis=1, keepdims=True))
        probabilities = shifted / shifted.sum(axis=1, keepdims=True)
        computed = {
            "probabilities:0": probabilities.astype(np.float32),
            "classes:0": np.argmax(logits, axis=1).astype(np.int64),
        }
        return {fetch: computed[fetch] for fetch in fetches}


_PROGRAMS = {HalfPlusTwo.kind: HalfPlusTwo, ImageClassifier.kind: ImageClassifier}


# --- Version directories -------------------------------------------------------------------

SAVED_MODEL_FILE = "saved_model.pb"
SPEC_FILE = "simulator_model.json"
# How a stand-in's saved_model.pb begins (demo_models writes it; never parsed). An empty file
# is a stand-in's too; anything else there is taken for a real graph (saved_model.detect).
PLACEHOLDER_PREFIX = b"simulated SavedModel"
SPEC_FORMAT = 1
_SPEC_KEYS = {"format", "kind", "params", "load_seconds", "fail_load"}


@dataclass(frozen=True)
class ModelSpec:
    """The parsed ``simulator_model.json`` of one version directory."""

    kind: str
    params: dict[str, Any] = field(default_factory=dict)
    load_seconds: float = 0.0
    fail_load: ServingError | None = None


def missing_saved_model_error(version_dir: str) -> ServingError:
    """TF's error for a version directory without ``saved_model.pb`` (docs/tfserving-behaviour.md §2.4)."""
    return ServingError(
        "NOT_FOUND",
        "Specified file path does not appear to contain a SavedModel bundle (should have a file "
        f"called `saved_model.pb`)\nSpecified file path: {version_dir}")


def read_model_spec(version_dir: str) -> ModelSpec:
    """Check the directory holds a "SavedModel" and parse its ``simulator_model.json``."""
    if not os.path.isfile(os.path.join(version_dir, SAVED_MODEL_FILE)):
        raise missing_saved_model_error(version_dir)
    spec_path = os.path.join(version_dir, SPEC_FILE)
    try:
        with open(spec_path, encoding="utf-8") as file:
            raw = json.load(file)
    except FileNotFoundError as err:
        raise ServingError("NOT_FOUND", f"simulated model file {spec_path} is missing") from err
    except (OSError, ValueError) as err:
        raise ServingError("INVALID_ARGUMENT", f"cannot read {spec_path}: {err}") from err
    try:
        return _validated_spec(raw)
    except ValueError as err:
        raise ServingError("INVALID_ARGUMENT", f"invalid {spec_path}: {err}") from err


def _validated_spec(raw: object) -> ModelSpec:
    check_json_object(raw, _SPEC_KEYS, "top level")
    if raw.get("format") != SPEC_FORMAT:
        raise ValueError(f"'format' must be {SPEC_FORMAT}, got {raw.get('format')!r}")
    kind = raw.get("kind")
    if kind not in _PROGRAMS:
        raise ValueError(f"'kind' must be one of {sorted(_PROGRAMS)}, got {kind!r}")
    params = raw.get("params") or {}
    if not isinstance(params, dict):
        raise ValueError("'params' must be an object")
    accepted = set(inspect.signature(_PROGRAMS[kind].__init__).parameters) - {"self"}
    if set(params) - accepted:
        raise ValueError(f"unknown params {sorted(set(params) - accepted)} for kind {kind!r}; "
                         f"accepted: {sorted(accepted)}")
    for name, value in params.items():
        if isinstance(value, bool) or not isinstance(value, (int, float)) \
                or not math.isfinite(value):
            raise ValueError(f"param {name!r} must be a finite number, got {value!r}")
    load_seconds = raw.get("load_seconds", 0.0) or 0.0
    if isinstance(load_seconds, bool) or not isinstance(load_seconds, (int, float)) \
            or not 0 <= load_seconds <= 3600:
        raise ValueError(f"'load_seconds' must be a number in [0, 3600], got {load_seconds!r}")
    return ModelSpec(kind, dict(params), float(load_seconds), _fail_load(raw.get("fail_load")))


def _fail_load(raw: object) -> ServingError | None:
    if raw is None:
        return None
    if not isinstance(raw, dict) or set(raw) - {"code", "message"}:
        raise ValueError("'fail_load' must be null or {\"code\": ..., \"message\": ...}")
    code = raw.get("code", "INTERNAL")
    if code not in TF_CODES or code == "OK":
        raise ValueError(f"'fail_load.code' must be a TF error code name, got {code!r}")
    message = raw.get("message", "simulated load failure")
    if not isinstance(message, str):
        raise ValueError("'fail_load.message' must be a string")
    return ServingError(code, message)


def build_program(spec: ModelSpec) -> ModelProgram:
    """Instantiate the program a spec describes (its params were validated when read)."""
    return _PROGRAMS[spec.kind](**spec.params)


def load_program(version_dir: str) -> ModelProgram:
    """Load a version directory at once (``load_seconds`` is the caller's business)."""
    spec = read_model_spec(version_dir)
    if spec.fail_load is not None:
        raise spec.fail_load
    return build_program(spec)


# --- The servable the front ends call -------------------------------------------------------

def _signature_text(signature: SignatureDef) -> str:
    def tensors(kind: str, infos: dict[str, TensorInfo]) -> str:
        return "".join(
            f"{kind} {{ key: \"{alias}\" value {{ name: \"{info.name}\" dtype: {info.dtype} }} }} "
            for alias, info in sorted(infos.items()))
    return (tensors("inputs", signature.inputs) + tensors("outputs", signature.outputs)
            + f"method_name: \"{signature.method_name}\"")


class Servable:
    """One loaded model version: runs its program, records runtime latency, applies faults."""

    def __init__(self, name: str, version: int, path: str, program: ModelProgram, *,
                 metrics=None, faults=None) -> None:
        self.name = name
        self.version = version
        self.path = path
        self.program = program
        self.signatures: dict[str, SignatureDef] = program.signatures
        self._metrics = metrics
        self._faults = faults

    def __repr__(self) -> str:
        return f"Servable({self.name!r}, {self.version}, {self.path!r}, {self.program.kind})"

    def predict(self, signature_name: str, inputs: dict[str, np.ndarray],
                output_filter=()) -> dict[str, np.ndarray]:
        """Run a signature on tensors keyed by input alias; outputs keyed by output alias."""
        name = signature_name or "serving_default"
        signature = self.signatures.get(name)
        if signature is None:
            raise ServingError("FAILED_PRECONDITION", f'Serving signature key "{name}" not found.')
        missing = sorted(set(signature.inputs) - set(inputs))
        extra = sorted(set(inputs) - set(signature.inputs))
        if missing or extra:
            raise ServingError(
                "INVALID_ARGUMENT",
                f"input size does not match signature: {len(inputs)}!={len(signature.inputs)} "
                f"Sent extra: {extra}. Missing but required: {missing}.")
        aliases = list(output_filter) or list(signature.outputs)
        for alias in aliases:
            if alias not in signature.outputs:
                raise ServingError(
                    "INVALID_ARGUMENT",
                    f"output tensor alias not found in signature: {alias} Outputs expected to "
                    f"be in the set {{{','.join(sorted(signature.outputs))}}}.")
        feeds = {}
        for index, alias in enumerate(sorted(signature.inputs)):
            info = signature.inputs[alias]
            array = np.asarray(inputs[alias])
            if self.program.emulated:
                _check_feed_dtype(index, info, array)
            feeds[info.name] = array
        return self._run("Predict", signature, feeds, aliases)

    def classify(self, signature_name: str, examples: list[dict[str, Feature]],
                 context: dict[str, Feature] | None = None) -> list[list[tuple[str, float]]]:
        """Per example, the (label, score) pairs; label ``""`` when there is no classes output."""
        signature = self._example_signature(signature_name, "classification")
        aliases = [alias for alias in ("classes", "scores") if alias in signature.outputs]
        if not aliases:
            raise ServingError(
                "INVALID_ARGUMENT",
                "Expected classification signature outputs to contain classes or scores: "
                + _signature_text(signature))
        outputs = self._run("Classify", signature, self._example_feeds(signature, examples,
                                                                       context), aliases)
        return _classifications(outputs, len(examples))

    def regress(self, signature_name: str, examples: list[dict[str, Feature]],
                context: dict[str, Feature] | None = None) -> list[float]:
        """One regression value per example."""
        signature = self._example_signature(signature_name, "regression")
        if "outputs" not in signature.outputs:
            raise ServingError("INVALID_ARGUMENT", "No regression outputs found in SignatureDef: "
                               + _signature_text(signature))
        outputs = self._run("Regress", signature, self._example_feeds(signature, examples,
                                                                      context), ["outputs"])
        return _regressions(np.asarray(outputs["outputs"]), len(examples))

    def _example_signature(self, signature_name: str, what: str) -> SignatureDef:
        name = signature_name or "serving_default"
        signature = self.signatures.get(name)
        if signature is None:
            raise ServingError("INVALID_ARGUMENT", f"No signature was found with the name: {name}")
        if len(signature.inputs) != 1:
            raise ServingError("INVALID_ARGUMENT", "Expected one input Tensor.")
        if "inputs" not in signature.inputs:
            raise ServingError("INVALID_ARGUMENT", f"No {what} inputs found in SignatureDef: "
                               + _signature_text(signature))
        return signature

    def _example_feeds(self, signature: SignatureDef, examples, context) -> dict[str, object]:
        info = signature.inputs["inputs"]
        if self.program.emulated and info.dtype != "DT_STRING":
            # TF Serving feeds serialized tf.Examples whatever the signature says; a real
            # graph rejects them itself with the runtime's words.
            raise ServingError(
                "INVALID_ARGUMENT",
                f"Expects arg[0] to be {_tf_short_name(info.dtype)} but string is provided")
        # util.cc, InputToSerializedExampleTensor: a DT_STRING tensor [N], each element the
        # context's serialized bytes followed by the example's (parsed as one message, an
        # example's feature replaces the context's feature of the same name).
        prefix = serialized_example(context) if context else b""
        batch = np.empty(len(examples), dtype=object)
        batch[:] = [prefix + serialized_example(example) for example in examples]
        return {info.name: batch}

    def _run(self, api: str, signature: SignatureDef, feeds: dict[str, object],
             aliases: list[str]) -> dict[str, np.ndarray]:
        started = time.perf_counter()
        tensors = self.program.run(feeds, sorted({signature.outputs[a].name for a in aliases}))
        elapsed = time.perf_counter() - started
        if self._metrics is not None:
            self._metrics.record_runtime(self.name, api, elapsed)
        outputs = {alias: tensors[signature.outputs[alias].name] for alias in aliases}
        if self._faults is not None:
            outputs = self._faults.transform_outputs(self.name, self.version, outputs)
        return outputs


def _classifications(outputs: dict[str, np.ndarray], count: int) -> list[list[tuple[str, float]]]:
    """classifier.cc, PostProcessClassificationResult: the checks on ``classes`` (DT_STRING)
    and ``scores`` (DT_FLOAT), both [batch_size, num_classes], then the (label, score) pairs."""
    tensors = {alias: np.asarray(outputs[alias]) for alias in ("classes", "scores")
               if alias in outputs}
    for alias, dtype in (("classes", "DT_STRING"), ("scores", "DT_FLOAT")):
        tensor = tensors.get(alias)
        if tensor is None:
            continue
        if tensor.ndim != 2:
            raise ServingError("INVALID_ARGUMENT", "Expected Tensor shape: [batch_size num_classes]"
                                                   f" but got {_shape_text(tensor.shape)}")
        if _dtype_of_array(tensor) != dtype:
            raise ServingError("INVALID_ARGUMENT", f"Expected {alias} Tensor of {dtype}. Got: "
                                                   f"{_dtype_of_array(tensor)}")
        if tensor.shape[0] != count:
            raise ServingError("INVALID_ARGUMENT", f"Expected {alias} output batch size of "
                                                   f"{count}. Got: {tensor.shape[0]}")
    classes, scores = tensors.get("classes"), tensors.get("scores")
    if classes is not None and scores is not None and classes.shape[1] != scores.shape[1]:
        raise ServingError("INVALID_ARGUMENT", "Tensors class and score should match in "
                                               f"dim_size(1). Got {classes.shape[1]} vs. "
                                               f"{scores.shape[1]}")
    num_classes = (classes if classes is not None else scores).shape[1]
    return [[(_label_text(classes[row, column]) if classes is not None else "",
              float(scores[row, column]) if scores is not None else 0.0)
             for column in range(num_classes)] for row in range(count)]


def _regressions(values: np.ndarray, count: int) -> list[float]:
    """regressor.cc, PostProcessRegressionResult: [batch_size] or [batch_size, 1], DT_FLOAT."""
    if not (values.ndim == 1 or (values.ndim == 2 and values.shape[1] == 1)):
        raise ServingError("INVALID_ARGUMENT", "Expected output Tensor shape to be either "
                                               "[batch_size] or [batch_size, 1] but got "
                                               f"{_shape_text(values.shape)}")
    if values.shape[0] != count:
        raise ServingError("INVALID_ARGUMENT", "Input batch size did not match output batch "
                                               f"size: {count} vs. {values.shape[0]}")
    if _dtype_of_array(values) != "DT_FLOAT":
        raise ServingError("INVALID_ARGUMENT", "Expected output Tensor of DT_FLOAT.  Got: "
                                               f"{_dtype_of_array(values)}")
    return [float(value) for value in values.reshape(-1)]


def _label_text(label) -> str:
    return label.decode("utf-8", "replace") if isinstance(label, bytes) else str(label)
