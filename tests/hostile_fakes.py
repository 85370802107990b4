"""Hostile stand-ins for TF Serving, written for the hostile-input tests.

``RawHttpServer`` speaks HTTP on raw sockets so a test can make it misbehave in ways no HTTP
library would: drip a reply a byte at a time, stream a body forever, announce 100 MB, reset
the connection, or never answer. ``RawGrpcServer`` is a real gRPC server whose handlers
return bytes the test wrote, so replies can hold what a protobuf-typed server would not
build for us (duplicate versions, 1e5 signatures).

Everything listens on 127.0.0.1 and stops when closed; each behaviour's loops end when the
client goes away or the server closes.
"""

from __future__ import annotations

import socket
import struct
import threading
from concurrent import futures
from dataclasses import dataclass, field
from typing import Callable, Iterable

import grpc

from tfserving_wire import protos


# ---- HTTP behaviours: each writes one reply to a connected socket ----------------------------

@dataclass
class Reply:
    """A well-formed reply."""

    body: bytes = b""
    status: int = 200
    content_type: str = "application/json"

    def write(self, sock: socket.socket, stop: threading.Event, head_only: bool) -> None:
        head = (f"HTTP/1.1 {self.status} X\r\nContent-Type: {self.content_type}\r\n"
                f"Content-Length: {len(self.body)}\r\n\r\n").encode()
        sock.sendall(head + (b"" if head_only else self.body))


@dataclass
class Drip:
    """The reply a few bytes at a time with a pause between, headers included: each read the
    client makes returns quickly, so only a deadline on the whole exchange ends it."""

    body: bytes
    every: float = 0.05
    step: int = 1
    status: int = 200

    def write(self, sock: socket.socket, stop: threading.Event, head_only: bool) -> None:
        data = (f"HTTP/1.1 {self.status} X\r\nContent-Length: {len(self.body)}\r\n\r\n"
                .encode() + (b"" if head_only else self.body))
        for start in range(0, len(data), self.step):
            if stop.wait(self.every):
                return
            sock.sendall(data[start:start + self.step])


@dataclass
class Stream:
    """Headers, then ``chunk`` again and again: a body announced as ``length`` bytes (or
    with no length at all) that is still coming when the client gives up."""

    chunk: bytes
    length: int | None = None
    status: int = 200
    limit_bytes: int = 1 << 30  # stops by itself even if the client never does

    def write(self, sock: socket.socket, stop: threading.Event, head_only: bool) -> None:
        length = f"Content-Length: {self.length}\r\n" if self.length is not None else ""
        sock.sendall(f"HTTP/1.1 {self.status} X\r\n{length}Connection: close\r\n\r\n".encode())
        if head_only:
            return
        sent = 0
        while sent < self.limit_bytes and not stop.is_set():
            sock.sendall(self.chunk)
            sent += len(self.chunk)


@dataclass
class Raw:
    """Exactly these bytes as the reply (status line and all), then the connection closes
    unless ``keep_open``."""

    data: bytes
    keep_open: bool = False

    def write(self, sock: socket.socket, stop: threading.Event, head_only: bool) -> None:
        sock.sendall(self.data)


class Hang:
    """Reads the request and never answers."""

    def write(self, sock: socket.socket, stop: threading.Event, head_only: bool) -> None:
        stop.wait(120)


class Reset:
    """Closes the connection with a TCP reset instead of a reply."""

    def write(self, sock: socket.socket, stop: threading.Event, head_only: bool) -> None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))


Behaviour = Reply | Drip | Stream | Raw | Hang | Reset


@dataclass
class _Route:
    behaviour: Behaviour
    hits: int = 0


class RawHttpServer:
    """Routes by path prefix (longest wins); ``route()`` may change behaviour at any time.
    Unrouted paths get 404. One thread per connection, at most ``max_connections``."""

    def __init__(self, max_connections: int = 64) -> None:
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.2)
        self.port = self._listener.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self._routes: dict[str, _Route] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._slots = threading.BoundedSemaphore(max_connections)
        self._connections: set[socket.socket] = set()
        self.requests: list[tuple[str, str]] = []  # (method, path) in arrival order
        self.accepted = 0  # connections, to tell reuse from reconnects
        self._thread = threading.Thread(target=self._accept, name="raw-http", daemon=True)
        self._thread.start()

    def route(self, prefix: str, behaviour: Behaviour) -> None:
        with self._lock:
            self._routes[prefix] = _Route(behaviour)

    def hits(self, prefix: str) -> int:
        with self._lock:
            return self._routes[prefix].hits

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self._listener.close()
        with self._lock:
            for sock in list(self._connections):
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                sock, _ = self._listener.accept()
            except (TimeoutError, socket.timeout):
                continue
            except OSError:
                return
            if not self._slots.acquire(blocking=False):
                sock.close()
                continue
            with self._lock:
                self._connections.add(sock)
                self.accepted += 1
            threading.Thread(target=self._serve, args=(sock,), daemon=True).start()

    def _serve(self, sock: socket.socket) -> None:
        try:
            sock.settimeout(10)
            buffer = b""
            while not self._stop.is_set():
                while b"\r\n\r\n" not in buffer:
                    data = sock.recv(65536)
                    if not data:
                        return
                    buffer += data
                head, _, buffer = buffer.partition(b"\r\n\r\n")
                method, path = head.split(b" ", 2)[:2]
                method, path = method.decode(), path.decode()
                length = 0
                for line in head.split(b"\r\n")[1:]:
                    name, _, value = line.partition(b":")
                    if name.strip().lower() == b"content-length":
                        length = int(value)
                while len(buffer) < length:
                    buffer += sock.recv(65536)
                buffer = buffer[length:]
                with self._lock:
                    self.requests.append((method, path))
                    matches = [p for p in self._routes if path.startswith(p)]
                    route = self._routes[max(matches, key=len)] if matches else None
                    if route is not None:
                        route.hits += 1
                behaviour = route.behaviour if route else Reply(b"not found", 404, "text/plain")
                behaviour.write(sock, self._stop, method == "HEAD")
                if not (isinstance(behaviour, Reply)
                        or (isinstance(behaviour, Raw) and behaviour.keep_open)):
                    return
        except OSError:
            return
        finally:
            with self._lock:
                self._connections.discard(sock)
            sock.close()
            self._slots.release()


# ---- canned TF Serving JSON and pages ---------------------------------------------------------

def status_json(versions: Iterable[tuple[object, str]]) -> bytes:
    """A GET /v1/models/<m> reply; versions are written as given (strings or numbers)."""
    import json

    return json.dumps({"model_version_status": [
        {"version": version, "state": state, "status": {"error_code": "OK", "error_message": ""}}
        for version, state in versions]}).encode()


def metadata_json(model: str, version: int, inputs: dict[str, str], outputs: dict[str, str],
                  signature: str = "serving_default") -> bytes:
    """A GET /v1/models/<m>/versions/<v>/metadata reply with one predict signature; tensors as
    alias -> dtype name, shapes unknown (proto JSON writes sizes as strings)."""
    import json

    def tensors(dtypes: dict[str, str]) -> dict:
        return {alias: {"dtype": dtype, "tensor_shape": {"dim": [], "unknown_rank": True},
                        "name": f"{alias}:0"} for alias, dtype in dtypes.items()}

    return json.dumps({
        "model_spec": {"name": model, "signature_name": "", "version": str(version)},
        "metadata": {"signature_def": {"signature_def": {signature: {
            "inputs": tensors(inputs), "outputs": tensors(outputs),
            "method_name": "tensorflow/serving/predict"}}}}}).encode()


def serve_model(server: RawHttpServer, model: str, version: int, predict: bytes,
                inputs: dict[str, str], outputs: dict[str, str]) -> None:
    """The REST routes of ``model`` with one AVAILABLE ``version``: status, metadata, and
    predict (unpinned and pinned), which answers ``predict`` whatever the request. Call again
    with another ``predict`` to change the answer."""
    base = f"/v1/models/{model}"
    server.route(base, Reply(status_json([(version, "AVAILABLE")])))
    server.route(f"{base}/versions/{version}/metadata",
                 Reply(metadata_json(model, version, inputs, outputs)))
    for path in (f"{base}:predict", f"{base}/versions/{version}:predict"):
        server.route(path, Reply(predict))


def page(lines: Iterable[str], types: dict[str, str] | None = None) -> bytes:
    head = "".join(f"# TYPE {name} {kind}\n" for name, kind in (types or {}).items())
    return (head + "".join(f"{line}\n" for line in lines)).encode()


# ---- gRPC -----------------------------------------------------------------------------------

@dataclass
class RawGrpcReplies:
    """What each method answers: raw serialized bytes, or a (code, details) error. Tests may
    replace entries at any time."""

    status: Callable[[bytes], bytes | tuple[grpc.StatusCode, str]] = field(
        default=lambda request: b"")
    metadata: Callable[[bytes], bytes | tuple[grpc.StatusCode, str]] = field(
        default=lambda request: b"")


class RawGrpcServer:
    def __init__(self, replies: RawGrpcReplies | None = None) -> None:
        self.replies = replies or RawGrpcReplies()
        self.calls = 0
        self._server = grpc.server(futures.ThreadPoolExecutor(max_workers=8),
                                   options=[("grpc.max_send_message_length", 64 << 20)])

        def handler(pick):
            def answer(request: bytes, context):
                self.calls += 1
                reply = pick()(request)
                if isinstance(reply, tuple):
                    context.abort(*reply)
                return reply
            return grpc.unary_unary_rpc_method_handler(answer)

        self._server.add_generic_rpc_handlers([
            grpc.method_handlers_generic_handler("tensorflow.serving.ModelService", {
                "GetModelStatus": handler(lambda: self.replies.status)}),
            grpc.method_handlers_generic_handler("tensorflow.serving.PredictionService", {
                "GetModelMetadata": handler(lambda: self.replies.metadata)}),
        ])
        self.port = self._server.add_insecure_port("127.0.0.1:0")
        self.address = f"127.0.0.1:{self.port}"
        self._server.start()

    def close(self) -> None:
        self._server.stop(grace=0).wait(5)


def grpc_status_reply(versions: Iterable[tuple[int, str]]) -> bytes:
    pb = protos.get_model_status_pb2
    reply = pb.GetModelStatusResponse()
    for version, state in versions:
        item = reply.model_version_status.add()
        item.version = version
        item.state = pb.ModelVersionStatus.State.Value(state)
    return reply.SerializeToString()


def grpc_metadata_reply(model: str, signatures: int, tensors_each: int = 1,
                        method: str = "tensorflow/serving/predict") -> bytes:
    meta = protos.get_model_metadata_pb2
    signature_map = meta.SignatureDefMap()
    for index in range(signatures):
        sig = signature_map.signature_def[f"sig_{index:06d}"]
        sig.method_name = method
        for tensor in range(tensors_each):
            info = sig.inputs[f"in_{tensor}"]
            info.name = f"in_{tensor}:0"
            info.dtype = 1
    reply = meta.GetModelMetadataResponse()
    reply.model_spec.name = model
    reply.metadata["signature_def"].Pack(signature_map)
    return reply.SerializeToString()

