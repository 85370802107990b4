"""TF Serving's gRPC services on the official servicer base classes.

``PredictionService`` (Predict, Classify, Regress, GetModelMetadata; MultiInference answers
UNIMPLEMENTED) and ``ModelService`` (GetModelStatus, HandleReloadConfigRequest), with the codes
and messages of docs/tfserving-behaviour.md §3.3, messages cut at 1024 characters, request metrics only for the
three inference calls (§5.5), faults, and the client's deadline as the session timeout.
"""

from __future__ import annotations

import logging
import time
from concurrent import futures
from dataclasses import dataclass

import grpc
from google.protobuf import text_format

from tfserving_simulator import inference
from tfserving_simulator.errors import ServingError, grpc_code, truncate_grpc_message
from tfserving_simulator.models import example_features
from tfserving_simulator.server_config import model_configs_from_proto
from tfserving_wire import protos, tensor_proto

log = logging.getLogger(__name__)

_INT32_MAX = 2**31 - 1  # TF Serving sets gRPC's message limits to INT32_MAX both ways
_SIGNATURE_DEF_FIELD = "signature_def"


def _decode_tensor(proto, alias: str):
    try:
        return tensor_proto.to_numpy(proto, alias)
    except tensor_proto.TensorDecodeError as err:
        raise ServingError("INVALID_ARGUMENT", str(err)) from None


def _encode_tensor(array, as_content: bool):
    try:
        return tensor_proto.from_numpy(array, as_content)
    except ValueError as err:
        raise ServingError("INTERNAL", str(err)) from None


@dataclass(frozen=True)
class GrpcApiOptions:
    serialize_as_tensor_content: bool = False  # --enable_serialization_as_tensor_content
    reload_timeout_seconds: float = 600.0


def _abort(context, error: ServingError):
    context.abort(grpc_code(error.code), truncate_grpc_message(error.message))


def _require_model_spec(request) -> None:
    if not request.HasField("model_spec"):
        raise ServingError("INVALID_ARGUMENT", "Missing ModelSpec")


def _deadline_seconds(context) -> float | None:
    remaining = context.time_remaining()
    return remaining if remaining is not None and remaining < 1e8 else None


class _Backend:
    """What every servicer needs: the core, metrics, faults and options."""

    def __init__(self, core, metrics, faults, options: GrpcApiOptions) -> None:
        self.core = core
        self.metrics = metrics
        self.faults = faults
        self.options = options

    def servable(self, model_spec):
        """``ServerCore::GetServableHandle`` for a ModelSpec (name, version or label)."""
        if not model_spec.name:
            raise ServingError("INVALID_ARGUMENT", "ModelSpec has no name specified.")
        choice = model_spec.WhichOneof("version_choice")
        if choice == "version":
            return self.core.get_servable(model_spec.name, version=model_spec.version.value)
        if choice == "version_label":
            return self.core.get_servable(model_spec.name, label=model_spec.version_label)
        return self.core.get_servable(model_spec.name)


def _response_model_spec(target, servable, signature_name: str) -> None:
    target.name = servable.name
    target.version.value = servable.version
    target.signature_name = signature_name


def _examples(request_input) -> tuple[list[dict], dict | None]:
    """``tensorflow.serving.Input`` as feature dicts (examples, context)."""
    kind = request_input.WhichOneof("kind")
    if kind == "example_list":
        examples, context = request_input.example_list.examples, None
    elif kind == "example_list_with_context":
        examples = request_input.example_list_with_context.examples
        context = example_features(request_input.example_list_with_context.context)
    else:
        examples, context = [], None
    if not examples:
        raise ServingError("INVALID_ARGUMENT", "Input is empty.")
    return [example_features(example) for example in examples], context


def _set_diff_text(values) -> str:
    return "{" + ",".join(sorted(values)) + "}"


def _predict_inputs(signature, request) -> dict:
    """``PreProcessPrediction``: the request's inputs checked against the signature and
    decoded, then its ``output_filter`` checked."""
    sent, expected = set(request.inputs), set(signature.inputs)
    if len(sent) != len(expected):
        raise ServingError(
            "INVALID_ARGUMENT",
            f"input size does not match signature: {len(sent)}!={len(expected)} "
            f"len({_set_diff_text(sent)}) != len({_set_diff_text(expected)}). "
            f"Sent extra: {_set_diff_text(sent - expected)}. "
            f"Missing but required: {_set_diff_text(expected - sent)}.")
    # TensorFlow's saved_model::GetInputValues (cc/saved_model/util.cc): alias by alias, a
    # missing one is reported with the keys the *request* has, else the tensor is decoded.
    inputs = {}
    for alias in sorted(expected):
        if alias not in sent:
            raise ServingError(
                "INVALID_ARGUMENT",
                f"Signature input alias: {alias}(feed name: {signature.inputs[alias].name}) not "
                f"found in request and no default value provided. Inputs expected to be in the "
                f"request {_set_diff_text(sent)}, or default input alias set: ")
        inputs[alias] = _decode_tensor(request.inputs[alias], alias)
    seen = set()
    for alias in request.output_filter:
        if alias not in signature.outputs:
            raise ServingError(
                "INVALID_ARGUMENT",
                f"output tensor alias not found in signature: {alias} Outputs expected to be in "
                f"the set {_set_diff_text(signature.outputs)}.")
        if alias in seen:
            raise ServingError("INVALID_ARGUMENT", f"duplicate output tensor alias: {alias}")
        seen.add(alias)
    return inputs


class PredictionServicer(protos.prediction_service_pb2_grpc.PredictionServiceServicer):
    def __init__(self, backend: _Backend) -> None:
        self._backend = backend

    def _inference(self, api: str, request, context, work):
        """Run one Predict/Classify/Regress and record ``request_count``/``request_latency``."""
        started = time.monotonic()
        model_name = request.model_spec.name
        try:
            response = work()
        except ServingError as err:
            self._backend.metrics.record_request(model_name, err.code, api, "GRPC", None)
            _abort(context, err)
        self._backend.metrics.record_request(model_name, "OK", api, "GRPC",
                                             time.monotonic() - started)
        return response

    def _run(self, operation: str, servable, context, call):
        faults = self._backend.faults

        def work():
            faults.before_request("grpc", operation, servable.name, servable.version)
            return call()

        return inference.run_with_deadline(work, _deadline_seconds(context))

    def Predict(self, request, context):
        def work():
            _require_model_spec(request)
            servable = self._backend.servable(request.model_spec)
            name = inference.signature_name_or_default(request.model_spec.signature_name)
            signature = servable.signatures.get(name)
            if signature is None:
                raise ServingError("FAILED_PRECONDITION",
                                   f"Serving signature key \"{name}\" not found.")
            inputs = _predict_inputs(signature, request)
            outputs = self._run("predict", servable, context, lambda: servable.predict(
                name, inputs, tuple(request.output_filter)))
            response = protos.predict_pb2.PredictResponse()
            as_content = self._backend.options.serialize_as_tensor_content
            for alias, array in outputs.items():
                response.outputs[alias].CopyFrom(_encode_tensor(array, as_content))
            _response_model_spec(response.model_spec, servable, name)
            return response

        return self._inference("Predict", request, context, work)

    def Classify(self, request, context):
        def respond(results):
            response = protos.classification_pb2.ClassificationResponse()
            for classes in results:
                classification = response.result.classifications.add()
                for label, score in classes:
                    entry = classification.classes.add()
                    entry.label, entry.score = label, score
            return response

        return self._examples_call("Classify", request, context,
                                   inference.classification_signature, respond)

    def Regress(self, request, context):
        def respond(values):
            response = protos.regression_pb2.RegressionResponse()
            for value in values:
                response.result.regressions.add().value = value
            return response

        return self._examples_call("Regress", request, context,
                                   inference.regression_signature, respond)

    def _examples_call(self, method: str, request, context, check_signature, respond):
        """Classify and Regress: same steps on tf.Examples, each with its signature rules
        and reply message."""
        operation = method.lower()

        def work():
            _require_model_spec(request)
            servable = self._backend.servable(request.model_spec)
            check_signature(servable.signatures, request.model_spec.signature_name)
            name = inference.signature_name_or_default(request.model_spec.signature_name)
            examples, example_context = _examples(request.input)
            run = getattr(servable, operation)
            results = self._run(operation, servable, context,
                                lambda: run(name, examples, example_context))
            response = respond(results)
            _response_model_spec(response.model_spec, servable, name)
            return response

        return self._inference(method, request, context, work)

    def GetModelMetadata(self, request, context):
        # No request metrics for metadata calls (docs/tfserving-behaviour.md §5.5).
        try:
            _require_model_spec(request)
            if not request.metadata_field:
                raise ServingError("INVALID_ARGUMENT", "GetModelMetadataRequest must specify at "
                                                       "least one metadata_field")
            # get_model_metadata_impl.cc, ValidateGetModelMetadataRequest: every field is
            # checked before the model is looked up (a bad field on an unknown model is
            # INVALID_ARGUMENT, not NOT_FOUND).
            for field in request.metadata_field:
                if field != _SIGNATURE_DEF_FIELD:
                    raise ServingError("INVALID_ARGUMENT",
                                       f"Metadata field {field} is not supported")
            response = protos.get_model_metadata_pb2.GetModelMetadataResponse()
            for field in request.metadata_field:
                servable = self._backend.servable(request.model_spec)
                self._backend.faults.before_request("grpc", "metadata", servable.name,
                                                    servable.version)
                response.model_spec.name = servable.name
                response.model_spec.version.value = servable.version
                response.metadata[_SIGNATURE_DEF_FIELD].Pack(
                    inference.signature_def_map_proto(servable.signatures))
            return response
        except ServingError as err:
            _abort(context, err)

    def MultiInference(self, request, context):
        _abort(context, ServingError("UNIMPLEMENTED",
                                     "MultiInference is not supported by the simulator"))


class ModelServicer(protos.model_service_pb2_grpc.ModelServiceServicer):
    def __init__(self, backend: _Backend) -> None:
        self._backend = backend

    def GetModelStatus(self, request, context):
        try:
            _require_model_spec(request)
            spec = request.model_spec
            # Only has_version() counts: a version_label is ignored (docs/tfserving-behaviour.md §3.4).
            version = spec.version.value if spec.HasField("version") else None
            self._backend.faults.before_request("grpc", "status", spec.name, version)
            response = protos.get_model_status_pb2.GetModelStatusResponse()
            state_enum = protos.get_model_status_pb2.ModelVersionStatus.State
            for status in self._backend.core.model_status(spec.name, version):
                entry = response.model_version_status.add()
                entry.version = status.version
                entry.state = state_enum.Value(status.state)
                entry.status.error_code = protos.error_codes_pb2.Code.Value(
                    status.error_code or "OK")
                entry.status.error_message = status.error_message or ""
            return response
        except ServingError as err:
            _abort(context, err)

    def HandleReloadConfigRequest(self, request, context):
        response = protos.model_management_pb2.ReloadConfigResponse()
        before = {name: self._metric_value(name) for name in request.metric_names}
        error = None
        try:
            models = model_configs_from_proto(request.config)
            log.info("reloading model config:\n%s", text_format.MessageToString(request.config))
            self._backend.core.reload_config(
                models, timeout=self._backend.options.reload_timeout_seconds)
        except ServingError as err:
            error = err
        for name, old in before.items():
            new = self._metric_value(name)
            if old is not None and new is not None:
                metric = response.metric.add()
                metric.name = name
                metric.int64_value_increase = new - old
        if error is None:
            response.status.error_code = protos.error_codes_pb2.Code.Value("OK")
            return response
        log.error("ReloadConfig failed: %s", error.message)
        response.status.error_code = protos.error_codes_pb2.Code.Value(error.code)
        response.status.error_message = error.message
        context.set_code(grpc_code(error.code))
        context.set_details(truncate_grpc_message(error.message))
        return response

    def _metric_value(self, name: str) -> int | None:
        """An int64, label-less TF metric by its ``/tensorflow/...`` name (else None)."""
        try:
            value = self._backend.metrics.registry.get(name).value(())
        except (KeyError, ValueError, AttributeError):
            return None
        return value if isinstance(value, int) and not isinstance(value, bool) else (
            0 if value is None else None)


class GrpcServer:
    """The gRPC port: both services (plus the health service when asked and available)."""

    def __init__(self, host: str, port: int, core, metrics, faults,
                 options: GrpcApiOptions | None = None, *, enable_health: bool = False,
                 max_workers: int = 16,
                 credentials: grpc.ServerCredentials | None = None) -> None:
        backend = _Backend(core, metrics, faults, options or GrpcApiOptions())
        self._server = grpc.server(
            futures.ThreadPoolExecutor(max_workers=max_workers,
                                       thread_name_prefix="simulator-grpc"),
            options=[("grpc.max_send_message_length", _INT32_MAX),
                     ("grpc.max_receive_message_length", _INT32_MAX),
                     ("grpc.so_reuseport", 0)])
        protos.prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(
            PredictionServicer(backend), self._server)
        protos.model_service_pb2_grpc.add_ModelServiceServicer_to_server(
            ModelServicer(backend), self._server)
        self.health_enabled = enable_health and _add_health_service(self._server)
        address = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        try:
            self.port = (self._server.add_secure_port(address, credentials) if credentials
                         else self._server.add_insecure_port(address))
        except RuntimeError:  # newer grpcio raises instead of returning 0
            self.port = 0
        if self.port == 0:
            raise OSError(f"cannot bind the gRPC port {address} (is it already in use?)")

    def start(self) -> None:
        self._server.start()

    def stop(self, grace: float = 0.5) -> None:
        self._server.stop(grace).wait(grace + 1.0)


def _add_health_service(server) -> bool:
    """``grpc.health.v1.Health`` with ModelService and PredictionService SERVING."""
    try:
        from grpc_health.v1 import health, health_pb2, health_pb2_grpc
    except ImportError:
        log.warning("--enable_grpc_healthcheck_service ignored: grpcio-health-checking is "
                    "not installed")
        return False
    servicer = health.HealthServicer()
    for service in ("ModelService", "PredictionService"):
        servicer.set(service, health_pb2.HealthCheckResponse.SERVING)
    health_pb2_grpc.add_HealthServicer_to_server(servicer, server)
    return True
