"""TF Serving's gRPC API (ModelService, PredictionService) as the exporter needs it."""

from __future__ import annotations

import time
from typing import Callable, Sequence

import grpc

from exporter.files import SMALL_FILE_MAX_BYTES, read_regular_file
from exporter.tfserving.deadline import Deadline
from exporter.tfserving.types import (SignatureMap, TensorSpec, TFServingError,
                                      convert_signatures, first_names, parse_version)
from tfserving_wire import protos
from tfserving_wire.model_status import VersionStatus

PROTOCOL = "grpc"
# What one reply may bring: gRPC's own default, which TF Serving clients live with. Status and
# metadata replies are KiB; canary Predict replies are a batch of outputs. gRPC refuses a
# larger reply with RESOURCE_EXHAUSTED before parsing it, so this also bounds what a reply is
# parsed into (up to ~8 times its size for a map of 1e5 small signatures).
MAX_RECEIVE_BYTES = 4 * 1024 * 1024
# Status calls of one scrape in flight at once on the channel (gRPC futures, no thread each):
# enough to overlap a thousand models' round trips, few enough not to flood TF Serving.
STATUS_CALLS_IN_FLIGHT = 64
# Status replies kept to tell an unchanged one (a few dozen bytes a version); larger ones are
# parsed each time rather than held.
STATUS_MEMO_MAX_BYTES = 16 << 10

CallObserver = Callable[[str, str, float], None]


def _no_observer(protocol: str, api: str, seconds: float) -> None:
    return None


def _tensor_specs(tensors, budget: int) -> tuple[tuple[TensorSpec, ...], int]:
    dtype_name = protos.types_pb2.DataType.Name
    out = []
    for alias in first_names(tensors, budget):
        info = tensors[alias]
        shape = info.tensor_shape
        dims = None if shape.unknown_rank else tuple(d.size for d in shape.dim)
        try:
            dtype = dtype_name(info.dtype)
        except ValueError:
            dtype = f"DT_{info.dtype}"
        out.append(TensorSpec(alias=alias, dtype=dtype, shape=dims))
    return tuple(out), len(tensors) - len(out)


def _signature_parts(sig, budget: int):
    inputs, left_in = _tensor_specs(sig.inputs, budget)
    outputs, left_out = _tensor_specs(sig.outputs, budget - len(inputs))
    return sig.method_name, inputs, outputs, left_in + left_out


def signatures_from_proto(signature_def_map) -> SignatureMap:
    """SignatureDefMap (from GetModelMetadata) → {name: Signature}, within the reply
    ceilings of ``types``."""
    return convert_signatures(signature_def_map.signature_def, _signature_parts)


def _read(path: str) -> bytes | None:
    if not path:
        return None
    return read_regular_file(path, SMALL_FILE_MAX_BYTES)  # FileReadError names the file


def _channel_credentials(tls) -> grpc.ChannelCredentials:
    return grpc.ssl_channel_credentials(root_certificates=_read(tls.ca_file),
                                        private_key=_read(tls.key_file),
                                        certificate_chain=_read(tls.cert_file))


STATUS_METHOD = "/tensorflow.serving.ModelService/GetModelStatus"


def _parse_status_reply(reply: bytes):
    try:
        return protos.get_model_status_pb2.GetModelStatusResponse.FromString(reply)
    except Exception as err:  # noqa: BLE001 - protobuf's DecodeError, or worse: a bad reply
        raise TFServingError(PROTOCOL, "model_status", "BAD_REPLY",
                             f"cannot parse the GetModelStatus reply: {err}",
                             reached=True) from None


def _status_request(model: str):
    request = protos.get_model_status_pb2.GetModelStatusRequest()
    request.model_spec.name = model
    return request


def _statuses(model: str, reply) -> list[VersionStatus]:
    """A GetModelStatusResponse → the versions, names for the enum values."""
    state_name = protos.get_model_status_pb2.ModelVersionStatus.State.Name
    error_name = protos.error_codes_pb2.Code.Name
    statuses = []
    for item in reply.model_version_status:
        try:
            state = state_name(item.state)
        except ValueError:
            state = "UNKNOWN"
        try:
            code = error_name(item.status.error_code)
        except ValueError:
            code = str(item.status.error_code)
        try:
            version = parse_version(item.version)
        except ValueError as err:
            raise TFServingError(PROTOCOL, "model_status", "BAD_REPLY",
                                 f"model {model!r}: {err}", reached=True) from None
        statuses.append(VersionStatus(version, state, code, item.status.error_message))
    return statuses


def _call_error(api: str, err: Exception) -> TFServingError:
    """What a failed call raised (an RpcError, or ValueError when the channel was closed under
    it, at shutdown or reload) as the exporter's error."""
    if isinstance(err, ValueError):
        return TFServingError(PROTOCOL, api, "CANCELLED", str(err), reached=False)
    code = err.code() if hasattr(err, "code") else grpc.StatusCode.UNKNOWN
    details = err.details() if hasattr(err, "details") else str(err)
    return TFServingError(PROTOCOL, api, code.name, details or code.name)


class GrpcClient:
    """One long-lived channel; every call takes the scrape's deadline.

    gRPC reconnects by itself, so a TF Serving restart needs nothing from us. Calls do not
    wait for the channel to become ready: an unreachable server fails at once with
    UNAVAILABLE instead of eating the scrape's budget.
    """

    def __init__(self, target: str, observe: CallObserver = _no_observer, tls=None) -> None:
        """``tls``: an object with ``ca_file``, ``cert_file``, ``key_file``, ``server_name``
        (config's GrpcTLSConfig), or None for plaintext. Files are read once, here."""
        self.target = target
        self._observe = observe
        options = [("grpc.max_receive_message_length", MAX_RECEIVE_BYTES),
                   ("grpc.enable_http_proxy", 0)]
        if tls is None:
            self._channel = grpc.insecure_channel(target, options=options)
        else:
            if tls.server_name:
                options.append(("grpc.ssl_target_name_override", tls.server_name))
            self._channel = grpc.secure_channel(target, _channel_credentials(tls),
                                                options=options)
        self._model_service = protos.model_service_pb2_grpc.ModelServiceStub(self._channel)
        # GetModelStatus with bytes in and out (model_statuses parses replies itself).
        self._raw_status = self._channel.unary_unary(STATUS_METHOD)
        self._status_requests: dict[str, bytes] = {}
        self._status_replies: dict[bytes, list[VersionStatus]] = {}
        self._prediction_service = protos.prediction_service_pb2_grpc.PredictionServiceStub(
            self._channel)

    def close(self) -> None:
        self._channel.close()

    def _call(self, api: str, method, request, deadline: Deadline):
        if deadline.expired():
            raise TFServingError(PROTOCOL, api, "DEADLINE_EXCEEDED",
                                 "no time left in this scrape", reached=False)
        started = time.monotonic()
        try:
            return method(request, timeout=deadline.remaining())
        except (grpc.RpcError, ValueError) as err:
            raise _call_error(api, err) from None
        finally:
            self._observe(PROTOCOL, api, time.monotonic() - started)

    def model_status(self, model: str, deadline: Deadline) -> list[VersionStatus]:
        reply = self._call("model_status", self._model_service.GetModelStatus,
                           _status_request(model), deadline)
        return _statuses(model, reply)

    def model_statuses(self, models: Sequence[str], deadline: Deadline
                       ) -> list[list[VersionStatus] | TFServingError]:
        """``model_status`` of every model, in order: a model's versions or the error its call
        ended with. The calls are gRPC futures on the one channel, at most
        STATUS_CALLS_IN_FLIGHT at a time, each with the scrape's deadline; none needs a thread
        of its own, and all have ended by the deadline. Requests and replies travel as bytes:
        a model's request is serialized once, and a reply equal to the model's last one is
        not parsed again (most scrapes of a steady server)."""
        results: list = [None] * len(models)
        in_flight: list[tuple[int, object]] = []  # (index, future)
        requests, replies = self._status_requests, self._status_replies
        next_requests: dict[str, bytes] = {}
        next_replies: dict[bytes, list[VersionStatus]] = {}

        def finish(index: int, future) -> None:
            try:
                reply = future.result(timeout=max(deadline.remaining(), 0) + 1.0)
            except grpc.FutureTimeoutError:  # gRPC ends the call at its deadline; this is slack
                future.cancel()
                results[index] = TFServingError(PROTOCOL, "model_status", "DEADLINE_EXCEEDED",
                                                "no answer by the scrape deadline")
                return
            except grpc.FutureCancelledError:  # the channel was closed under the call
                results[index] = TFServingError(PROTOCOL, "model_status", "CANCELLED",
                                                "the call was cancelled", reached=False)
                return
            except (grpc.RpcError, ValueError) as err:
                results[index] = _call_error("model_status", err)
                return
            statuses = replies.get(reply)
            if statuses is None:
                try:
                    statuses = _statuses(models[index], _parse_status_reply(reply))
                except TFServingError as err:
                    results[index] = err
                    return
            if len(reply) <= STATUS_MEMO_MAX_BYTES:
                next_replies[reply] = statuses
            results[index] = list(statuses)

        for index, model in enumerate(models):
            if len(in_flight) >= STATUS_CALLS_IN_FLIGHT:
                finish(*in_flight.pop(0))
            if deadline.expired():
                results[index] = TFServingError(PROTOCOL, "model_status", "DEADLINE_EXCEEDED",
                                                "no time left in this scrape", reached=False)
                continue
            request = requests.get(model)
            if request is None:
                request = _status_request(model).SerializeToString()
            next_requests[model] = request
            started = time.monotonic()
            try:
                future = self._raw_status.future(request, timeout=deadline.remaining())
            except ValueError as err:  # the channel was closed (shutdown, reload)
                results[index] = _call_error("model_status", err)
                continue
            # Timed when it ends (on gRPC's thread), not when this loop gets to it.
            future.add_done_callback(lambda _, started=started: self._observe(
                PROTOCOL, "model_status", time.monotonic() - started))
            in_flight.append((index, future))
        for entry in in_flight:
            finish(*entry)
        # The last call's only: bounded by the models one scrape covers.
        self._status_requests, self._status_replies = next_requests, next_replies
        return results

    def model_metadata(self, model: str, version: int | None,
                       deadline: Deadline) -> SignatureMap:
        request = protos.get_model_metadata_pb2.GetModelMetadataRequest()
        request.model_spec.name = model
        if version is not None:
            request.model_spec.version.value = version
        request.metadata_field.append("signature_def")
        reply = self._call("model_metadata", self._prediction_service.GetModelMetadata,
                           request, deadline)
        packed = reply.metadata.get("signature_def")
        signature_map = protos.get_model_metadata_pb2.SignatureDefMap()
        if packed is None or not packed.Unpack(signature_map):
            raise TFServingError(PROTOCOL, "model_metadata", "BAD_REPLY",
                                 f"reply for model {model!r} holds no SignatureDefMap",
                                 reached=True)
        return signatures_from_proto(signature_map)

    def predict(self, model: str, version: int | None, signature_name: str,
                inputs: dict, output_filter: list[str], deadline: Deadline,
                api: str = "predict") -> tuple[dict, int]:
        """Predict; returns the output arrays and the version TF Serving says answered."""
        from tfserving_wire import tensor_proto  # numpy: only canaries call this

        request = protos.predict_pb2.PredictRequest()
        request.model_spec.name = model
        request.model_spec.signature_name = signature_name
        if version is not None:
            request.model_spec.version.value = version
        for alias, array in inputs.items():
            request.inputs[alias].CopyFrom(tensor_proto.from_numpy(array))
        request.output_filter.extend(output_filter)
        reply = self._call(api, self._prediction_service.Predict, request, deadline)
        try:
            outputs = {alias: tensor_proto.to_numpy(proto, alias)
                       for alias, proto in reply.outputs.items()}
        except tensor_proto.TensorDecodeError as err:
            raise TFServingError(PROTOCOL, api, "BAD_REPLY", str(err), reached=True) from None
        return outputs, reply.model_spec.version.value

    def ping(self, deadline: Deadline) -> None:
        """Prove the server answers, without touching TF Serving's request metrics.

        GetModelStatus is invisible in TF Serving's own metrics; an empty model name is
        answered with NOT_FOUND, which is exactly the proof we want.
        """
        request = protos.get_model_status_pb2.GetModelStatusRequest()
        request.model_spec.name = ""
        try:
            self._call("ping", self._model_service.GetModelStatus, request, deadline)
        except TFServingError as err:
            if not err.reached_server:
                raise
