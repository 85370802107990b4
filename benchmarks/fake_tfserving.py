"""A TF Serving stand-in for benchmarks only: canned replies at memory speed.

    python benchmarks/fake_tfserving.py --models N --grpc-port P --rest-port Q

Serves on 127.0.0.1, in its own process, so the exporter is measured rather than the server:

- gRPC ``ModelService/GetModelStatus`` (3 AVAILABLE versions per model) and
  ``PredictionService/GetModelMetadata`` (half_plus_two's SignatureDefs). Replies are built and
  serialized once; the handlers take and return raw bytes, so a reply is a dict lookup.
- REST ``GET /v1/models/<m>`` and ``/v1/models/<m>/versions/<v>/metadata`` (pre-built JSON),
  and ``/monitoring/prometheus/metrics``: TF Serving's page for the N models, rendered once
  at start by the simulator's ``ServingMetrics`` (3 version loads and one REST Predict per
  model, as the suite's traffic leaves it).

Models are ``model_000`` ... with base paths ``/models/model_000`` ... (``--base-dir``).
``--traffic`` makes the page change as under load: between two reads of the page every model
gets one more request, so every request count and latency series differs from the last read
(the worst case for the exporter's reuse of unchanged lines; load-stage histograms stay).
``--mixed-states`` gives every fifth model (from the second) one version in another state
(END, LOADING, a failed load) and leaves every fifth unknown to the server, for tests that
compare pages; without it every model has 3 AVAILABLE versions.
Prints "ready" once both ports listen. Fixed thread pools bound both servers.
"""

from __future__ import annotations

import argparse
import http.server
import json
import os
import signal
import socket
import socketserver
import sys
import threading
from concurrent import futures

import grpc
from google.protobuf import json_format

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from tfserving_simulator.inference import signature_def_map_proto  # noqa: E402
from tfserving_simulator.models import HalfPlusTwo  # noqa: E402
from tfserving_simulator.tf_metrics import ServingMetrics  # noqa: E402
from tfserving_wire import protos  # noqa: E402

VERSIONS = (1, 2, 3)
WORKERS = 8
METRICS_PATH = "/monitoring/prometheus/metrics"


def model_names(count: int) -> list[str]:
    return [f"model_{index:03d}" for index in range(count)]


def render_page(models: list[str], base_dir: str) -> bytes:
    """TF Serving's page after loading 3 versions of each model and one REST Predict each."""
    metrics = ServingMetrics()
    for index, model in enumerate(models):
        for version in VERSIONS:
            metrics.record_load(f"{base_dir}/{model}/{version}", True, 0.05 + 0.001 * version)
        seconds = 0.0002 + 0.00001 * (index % 50)
        metrics.record_request(model, "OK", "predict", "REST", seconds * 2)
        metrics.record_runtime(model, "Predict", seconds)
    return metrics.render().encode()


# --mixed-states: model index % 5 -> {version: (state, error code, error message)} that differ
# from AVAILABLE; 4 means TF Serving does not know the model (NOT_FOUND).
MIXED_STATES = {
    1: {1: ("END", "OK", "")},
    2: {3: ("LOADING", "OK", "")},
    3: {3: ("END", "NOT_FOUND", "Could not find base path /models/x/3")},
}
UNKNOWN_MODEL_SLOT = 4


def version_states(index: int, mixed: bool) -> dict[int, tuple[str, str, str]] | None:
    """Version -> (state, error code, message) of model ``index``; None when it is unknown."""
    if mixed and index % 5 == UNKNOWN_MODEL_SLOT:
        return None
    special = MIXED_STATES.get(index % 5, {}) if mixed else {}
    return {v: special.get(v, ("AVAILABLE", "OK", "")) for v in VERSIONS}


# The families a request changes (TF Serving's names): under --traffic they are re-rendered
# for every read of the page.
TRAFFIC_FAMILIES = (":tensorflow:serving:request_count", ":tensorflow:serving:request_latency",
                    ":tensorflow:serving:runtime_latency")


class TrafficPage:
    """The page after one more request on every model at each read. Built from the page of
    one request per model: each value of a request family is 0, the one request, or its
    latency, so after n requests it is that value times n."""

    def __init__(self, page: bytes) -> None:
        self._parts: list[bytes | tuple[bytes, float, bool]] = []
        static: list[bytes] = []
        for line in page.split(b"\n"):
            name = line.split(b"{", 1)[0].split(b" ", 1)[0]
            if not line.startswith(b"#") and any(
                    name.decode().startswith(family) for family in TRAFFIC_FAMILIES):
                if static:
                    self._parts.append(b"\n".join(static) + b"\n")
                    static = []
                head, _, value = line.rpartition(b" ")
                self._parts.append((head + b" ", float(value), name.endswith(b"_sum")))
            else:
                static.append(line)
        self._tail = b"\n".join(static)
        self._requests = 0
        self._lock = threading.Lock()

    def next(self) -> bytes:
        with self._lock:
            self._requests += 1
            n = self._requests
        out = []
        for part in self._parts:
            if part.__class__ is bytes:
                out.append(part)
            else:
                head, value, is_sum = part
                text = b"%g" % (value * n) if is_sum else b"%d" % int(value * n)
                out.append(head + text + b"\n")
        out.append(self._tail)
        return b"".join(out)


def status_request_key(model: str) -> bytes:
    request = protos.get_model_status_pb2.GetModelStatusRequest()
    request.model_spec.name = model
    return request.SerializeToString()


def metadata_request_key(model: str, version: int | None) -> bytes:
    """As ``GrpcClient.model_metadata`` serializes it (deterministic for equal messages)."""
    request = protos.get_model_metadata_pb2.GetModelMetadataRequest()
    request.model_spec.name = model
    if version is not None:
        request.model_spec.version.value = version
    request.metadata_field.append("signature_def")
    return request.SerializeToString()


class Replies:
    """Every reply, serialized once."""

    def __init__(self, count: int, base_dir: str, mixed: bool = False) -> None:
        self.models = model_names(count)
        status_pb2, meta_pb2 = protos.get_model_status_pb2, protos.get_model_metadata_pb2
        signature_map = signature_def_map_proto(HalfPlusTwo().signatures)
        signature_dict = json_format.MessageToDict(signature_map,
                                                   preserving_proto_field_name=True)
        self.grpc_status: dict[str, bytes] = {}
        self.grpc_metadata: dict[tuple[str, int | None], bytes] = {}
        self.rest: dict[str, bytes] = {}
        for index, model in enumerate(self.models):
            states = version_states(index, mixed)
            if states is None:
                continue
            status = status_pb2.GetModelStatusResponse()
            for version, (state, code, message) in states.items():
                item = status.model_version_status.add()
                item.version = version
                item.state = status_pb2.ModelVersionStatus.State.Value(state)
                item.status.error_code = protos.error_codes_pb2.Code.Value(code)
                item.status.error_message = message
            self.grpc_status[model] = status.SerializeToString()
            self.rest[f"/v1/models/{model}"] = json.dumps({"model_version_status": [
                {"version": str(version), "state": state,
                 "status": {"error_code": code, "error_message": message}}
                for version, (state, code, message) in reversed(states.items())]}).encode()
            for version in (None, *VERSIONS):
                reply = meta_pb2.GetModelMetadataResponse()
                reply.model_spec.name = model
                reply.model_spec.version.value = version or VERSIONS[-1]
                reply.metadata["signature_def"].Pack(signature_map)
                self.grpc_metadata[(model, version)] = reply.SerializeToString()
                path = (f"/v1/models/{model}/metadata" if version is None
                        else f"/v1/models/{model}/versions/{version}/metadata")
                self.rest[path] = json.dumps({
                    "model_spec": {"name": model, "signature_name": "",
                                   "version": str(version or VERSIONS[-1])},
                    "metadata": {"signature_def": signature_dict}}).encode()
        self.rest[METRICS_PATH] = render_page(self.models, base_dir)
        # Raw request bytes -> raw reply bytes, for the requests the exporter sends.
        self.by_status_request = {status_request_key(m): r for m, r in self.grpc_status.items()}
        self.by_metadata_request = {metadata_request_key(m, v): r
                                    for (m, v), r in self.grpc_metadata.items()}


def grpc_server(replies: Replies, port: int) -> grpc.Server:
    status_pb2, meta_pb2 = protos.get_model_status_pb2, protos.get_model_metadata_pb2

    def not_found(context, model: str):
        context.abort(grpc.StatusCode.NOT_FOUND,
                      f"Servable not found for request: Latest({model})")

    def get_status(request: bytes, context) -> bytes:
        reply = replies.by_status_request.get(request)
        if reply is None:  # a request serialized some other way: parse it
            name = status_pb2.GetModelStatusRequest.FromString(request).model_spec.name
            reply = replies.grpc_status.get(name)
            if reply is None:
                not_found(context, name)
        return reply

    def get_metadata(request: bytes, context) -> bytes:
        reply = replies.by_metadata_request.get(request)
        if reply is None:
            parsed = meta_pb2.GetModelMetadataRequest.FromString(request)
            spec = parsed.model_spec
            version = spec.version.value if spec.HasField("version") else None
            reply = replies.grpc_metadata.get((spec.name, version))
            if reply is None:
                not_found(context, spec.name)
        return reply

    server = grpc.server(futures.ThreadPoolExecutor(max_workers=WORKERS),
                         maximum_concurrent_rpcs=256)
    server.add_generic_rpc_handlers([
        grpc.method_handlers_generic_handler("tensorflow.serving.ModelService", {
            "GetModelStatus": grpc.unary_unary_rpc_method_handler(get_status)}),
        grpc.method_handlers_generic_handler("tensorflow.serving.PredictionService", {
            "GetModelMetadata": grpc.unary_unary_rpc_method_handler(get_metadata)}),
    ])
    server.add_insecure_port(f"127.0.0.1:{port}")
    return server


class PooledHTTPServer(socketserver.TCPServer):
    """Connections served by a fixed pool of threads (``ThreadingHTTPServer`` has no bound)."""

    allow_reuse_address = True
    daemon_threads = True

    def __init__(self, address, handler, workers: int) -> None:
        self._pool = futures.ThreadPoolExecutor(max_workers=workers)
        self._open: set[socket.socket] = set()
        self._open_lock = threading.Lock()
        super().__init__(address, handler)

    def process_request(self, request, client_address) -> None:
        self._pool.submit(self._serve_one, request, client_address)

    def _serve_one(self, request, client_address) -> None:
        with self._open_lock:
            self._open.add(request)
        try:
            self.finish_request(request, client_address)
        except Exception:  # noqa: BLE001 - a dropped client is not the stand-in's concern
            pass
        finally:
            with self._open_lock:
                self._open.discard(request)
            self.shutdown_request(request)

    def close_all(self) -> None:
        """Stop serving and end idle keep-alive connections, so the workers (and exit) finish."""
        self.shutdown()
        with self._open_lock:
            for sock in self._open:
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
        self._pool.shutdown(wait=True)
        self.server_close()


def rest_handler(replies: Replies, traffic: TrafficPage | None = None):
    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        disable_nagle_algorithm = True  # headers and body are two writes: no 40 ms stall
        timeout = 60  # an idle keep-alive connection gives its worker back

        def _answer(self, with_body: bool) -> None:
            path = self.path.split("?", 1)[0]
            body = (traffic.next() if traffic is not None and path == METRICS_PATH
                    else replies.rest.get(path))
            status = 200
            kind = "text/plain" if self.path.startswith(METRICS_PATH) else "application/json"
            if body is None:
                status, kind = 404, "application/json"
                body = b'{ "error": "Could not find any versions of model" }'
            self.send_response(status)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if with_body:
                self.wfile.write(body)

        def do_GET(self) -> None:  # noqa: N802 - http.server's name
            self._answer(True)

        def do_HEAD(self) -> None:  # noqa: N802
            self._answer(False)

        def log_message(self, format, *args) -> None:  # noqa: A002 - quiet
            return None

    return Handler


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", type=int, required=True)
    parser.add_argument("--grpc-port", type=int, required=True)
    parser.add_argument("--rest-port", type=int, required=True)
    parser.add_argument("--traffic", action="store_true",
                        help="every model gets a request between two reads of the page")
    parser.add_argument("--mixed-states", action="store_true",
                        help="some versions not AVAILABLE and some models unknown (for tests)")
    parser.add_argument("--base-dir", default="/models",
                        help="base path prefix of the models on the page's model_path labels")
    args = parser.parse_args()

    replies = Replies(args.models, args.base_dir.rstrip("/"), args.mixed_states)
    server = grpc_server(replies, args.grpc_port)
    server.start()
    traffic = TrafficPage(replies.rest[METRICS_PATH]) if args.traffic else None
    http_server = PooledHTTPServer(("127.0.0.1", args.rest_port),
                                   rest_handler(replies, traffic), WORKERS)
    threading.Thread(target=http_server.serve_forever, daemon=True).start()
    stopped = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopped.set())
    signal.signal(signal.SIGINT, lambda *_: stopped.set())
    print("ready", flush=True)
    while not stopped.wait(1.0):  # wakes for the signal handler's flag
        pass
    http_server.close_all()
    server.stop(grace=0).wait(5)
    return 0


if __name__ == "__main__":
    sys.exit(main())
