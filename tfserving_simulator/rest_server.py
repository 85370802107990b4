"""HTTP/1.1 transport of the simulator's REST port, shaped like TF Serving's libevent server.

Routing: the Prometheus path (exact, query excluded) → the metrics page; anything whose path
plus query fully matches ``/v1/.*`` (case-insensitive) → :class:`RestApi`; everything else →
libevent's HTML 404 with ``Connection: close``. No ``Server`` header, libevent's reason
phrases, ``Date`` and ``Content-Length`` on every reply, gzip request bodies decoded.
"""

from __future__ import annotations

import logging
import socket
import threading
import zlib
from email.utils import formatdate
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Callable
from urllib.parse import unquote

from tfserving_simulator.errors import ServingError
from tfserving_simulator.rest_api import REST_PATH, RestApi

log = logging.getLogger(__name__)

DEFAULT_PROMETHEUS_PATH = "/monitoring/prometheus/metrics"
MAX_BODY_BYTES = 64 * 1024 * 1024
_IDLE_CONNECTION_SECONDS = 60.0

# libevent 2.1's evhttp_response_phrase_internal; codes outside its tables get the class name.
_PHRASES = {
    200: "OK", 201: "Created", 202: "Accepted", 204: "No Content",
    400: "Bad Request", 401: "Unauthorized", 402: "Payment Required", 403: "Forbidden",
    404: "Not Found", 405: "Method Not Allowed", 406: "Not Acceptable",
    407: "Proxy Authentication Required", 408: "Request Time-out", 409: "Conflict",
    410: "Gone", 411: "Length Required", 412: "Precondition Failed",
    413: "Request Entity Too Large", 414: "Request-URI Too Large",
    415: "Unsupported Media Type", 416: "Requested range not satisfiable",
    417: "Expectation Failed",
    500: "Internal Server Error", 501: "Not Implemented", 502: "Bad Gateway",
    503: "Service Unavailable", 504: "Gateway Time-out", 505: "HTTP Version not supported",
}
_CLASS_PHRASES = {1: "Informational", 2: "Success", 3: "Redirection", 4: "Client Error",
                  5: "Server Error"}

NOT_FOUND_HTML = (b"<HTML><HEAD>\n<TITLE>404 Not Found</TITLE>\n</HEAD><BODY>\n"
                  b"<H1>Not Found</H1>\n</BODY></HTML>\n")


def reason_phrase(status: int) -> str:
    return _PHRASES.get(status) or _CLASS_PHRASES.get(status // 100, "Unknown Status")


class MetricsPage:
    """TF Serving's Prometheus handler (``ProcessPrometheusRequest``)."""

    def __init__(self, path: str, render: Callable[[], str], faults=None) -> None:
        self.path = path or DEFAULT_PROMETHEUS_PATH
        self.render = render
        self.faults = faults

    def handle(self, path_with_query: str) -> tuple[int, list[tuple[str, str]], bytes]:
        headers = [("Content-Type", "text/plain")]
        if path_with_query != self.path:
            text = f"Unexpected path: {path_with_query}. Should be {self.path}"
            return 400, headers, text.encode("utf-8", "surrogateescape")
        try:
            if self.faults is not None:
                self.faults.before_request("rest", "metrics_page", None, None)
            return 200, headers, self.render().encode("utf-8", "surrogateescape")
        except ServingError as err:
            return err.http_status, headers, err.message.encode("utf-8", "surrogateescape")


class _BodyTooLarge(Exception):
    pass


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Buffered, so headers and body leave in one write as libevent sends them; unbuffered,
    # they go out as two segments and Nagle plus delayed ACK add ~40 ms to every reply.
    wbufsize = 1 << 16
    server: "_Server"

    def __getattr__(self, name: str):
        # BaseHTTPRequestHandler looks up do_<METHOD>; every method goes through one place,
        # because TF Serving itself decides what an unsupported method means.
        if name.startswith("do_"):
            return self._serve
        raise AttributeError(name)

    def setup(self) -> None:
        super().setup()
        self.connection.settimeout(_IDLE_CONNECTION_SECONDS)
        self.server.track(self.connection, True)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self.server.track(self.connection, False)

    def log_message(self, format: str, *args) -> None:  # noqa: A002 - stdlib signature
        log.debug("%s %s", self.address_string(), format % args)

    def _serve(self) -> None:
        try:
            body = self._read_body()
        except _BodyTooLarge:
            self._reply(413, [("Connection", "close")], b"")
            self.close_connection = True
            return
        except (ValueError, OSError):
            self._reply(400, [("Connection", "close")], b"")
            self.close_connection = True
            return
        target = self.path  # request-target as sent: path plus ?query (and #fragment)
        path_only = target.split("?", 1)[0].split("#", 1)[0]
        metrics_page = self.server.metrics_page
        if metrics_page is not None and unquote(path_only) == metrics_page.path:
            self._reply(*metrics_page.handle(target))
        elif REST_PATH.fullmatch(target):
            status, headers, payload = self.server.rest_api.handle(
                self.command, target, list(self.headers.items()), body)
            self._reply(status, headers, payload)
        else:
            self._reply(404, [("Connection", "close"), ("Content-Type", "text/html")],
                        NOT_FOUND_HTML)
            self.close_connection = True

    def _read_body(self) -> bytes:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            raw = self._read_chunked()
        else:
            length = int(self.headers.get("Content-Length") or 0)
            if length < 0:
                raise ValueError("negative Content-Length")
            if length > MAX_BODY_BYTES:
                raise _BodyTooLarge()
            raw = self.rfile.read(length) if length else b""
        if self.headers.get("Content-Encoding", "").strip().lower() == "gzip" and raw:
            return _gunzip(raw)
        return raw

    def _read_chunked(self) -> bytes:
        body = bytearray()
        while True:
            size_line = self.rfile.readline(1024)
            size = int(size_line.split(b";", 1)[0].strip() or b"0", 16)
            if size == 0:
                while self.rfile.readline(1024) not in (b"\r\n", b"\n", b""):
                    pass  # trailers
                return bytes(body)
            if len(body) + size > MAX_BODY_BYTES:
                raise _BodyTooLarge()
            body += self.rfile.read(size)
            self.rfile.readline(1024)

    def _reply(self, status: int, headers: list[tuple[str, str]], body: bytes) -> None:
        self.send_response_only(status, reason_phrase(status))
        for name, value in headers:
            self.send_header(name, value)
        self.send_header("Date", formatdate(usegmt=True))
        self.send_header("Content-Length", str(len(body)))
        if self.close_connection and not any(n.lower() == "connection" for n, _ in headers):
            self.send_header("Connection", "close")
        self.end_headers()
        if self.command != "HEAD" and body:
            self.wfile.write(body)


def _gunzip(data: bytes) -> bytes:
    decompressor = zlib.decompressobj(16 + zlib.MAX_WBITS)
    try:
        out = decompressor.decompress(data, MAX_BODY_BYTES)
    except zlib.error:
        # An undecodable gzip body reaches the handler as an empty body (JSON parse error).
        return b""
    if decompressor.unconsumed_tail:
        raise _BodyTooLarge()
    return out


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128

    def __init__(self, address, rest_api: RestApi, metrics_page: MetricsPage | None) -> None:
        self.rest_api = rest_api
        self.metrics_page = metrics_page
        self._connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()
        super().__init__(address, _Handler)

    def track(self, connection: socket.socket, open_: bool) -> None:
        with self._connections_lock:
            if open_:
                self._connections.add(connection)
            else:
                self._connections.discard(connection)

    def close_connections(self) -> None:
        """End keep-alive connections so no request is served after stop()."""
        with self._connections_lock:
            connections = list(self._connections)
        for connection in connections:
            try:
                connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass  # already closed by the peer: nothing left to end


class RestServer:
    """The REST port: ``start()`` binds and serves on a thread, ``stop()`` ends everything."""

    def __init__(self, host: str, port: int, rest_api: RestApi,
                 metrics_page: MetricsPage | None = None) -> None:
        self._server = _Server((host, port), rest_api, metrics_page)
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        return self._server.server_address[1]

    def start(self) -> None:
        self._thread = threading.Thread(target=self._server.serve_forever,
                                        kwargs={"poll_interval": 0.1},
                                        name="rest-server", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 1.0) -> None:
        if self._thread is not None:
            self._server.shutdown()
            self._thread.join(timeout)
            self._thread = None
        self._server.server_close()
        self._server.close_connections()
