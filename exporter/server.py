"""The exporter's HTTP side: /metrics, /-/healthy, /-/ready and a landing page.

``create_app`` returns a plain WSGI application so tests can drive it directly;
``serve`` runs it on a threading server.
"""

from __future__ import annotations

import gzip
import html
import logging
import socket
import ssl
import threading
from dataclasses import dataclass, field
from socketserver import ThreadingMixIn
from typing import Callable, Iterable
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from exporter import __version__
from exporter.collection import Collection
from exporter.exposition import encode
from exporter.selfmetrics import SelfMetrics
from exporter.tfserving.deadline import Deadline, scrape_budget
from exporter.webconfig import BasicAuth

log = logging.getLogger(__name__)

# More scrapes at once than this are refused rather than queued: each holds TF Serving calls.
MAX_CONCURRENT_SCRAPES = 4


@dataclass
class Pipeline:
    """Everything that follows from one configuration; a reload swaps in a new one whole."""

    collection: Collection
    telemetry_path: str
    timeout: float
    timeout_offset: float
    summary: dict = field(default_factory=dict)  # shown on the landing page, no secrets


@dataclass
class ExporterState:
    pipeline: Pipeline
    selfmetrics: SelfMetrics
    ready: threading.Event = field(default_factory=threading.Event)
    # Applies the configuration anew; returns (applied, message). None: reload not possible.
    reload: Callable[[], tuple[bool, str]] | None = None


def _response(start_response, status: str, body: bytes, content_type: str = "text/plain; charset=utf-8",
              extra: Iterable[tuple[str, str]] = ()) -> list[bytes]:
    headers = [("Content-Type", content_type), ("Content-Length", str(len(body)))]
    headers.extend(extra)
    start_response(status, headers)
    return [body]


def _landing_page(pipeline: Pipeline) -> bytes:
    rows = "".join(
        f"<tr><th>{html.escape(str(k))}</th><td>{html.escape(str(v))}</td></tr>"
        for k, v in pipeline.summary.items())
    path = html.escape(pipeline.telemetry_path)
    return f"""<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>TF Serving Exporter</title></head>
<body>
<h1>TF Serving Exporter</h1>
<p>Version {html.escape(__version__)}</p>
<ul>
<li><a href="{path}">Metrics</a> ({path})</li>
<li><a href="/-/healthy">Health</a> (/-/healthy)</li>
<li><a href="/-/ready">Readiness</a> (/-/ready)</li>
</ul>
<p>POST /-/reload (or SIGHUP) re-reads the configuration and golden files.</p>
<table>{rows}</table>
</body></html>
""".encode()


# No endpoint takes a request body; anything announcing more than this is refused unread.
MAX_REQUEST_BODY_BYTES = 64 * 1024
# Health and readiness stay open so kubelet probes work without credentials; they tell
# nothing but "up".
_UNAUTHENTICATED_PATHS = frozenset({"/-/healthy", "/-/ready"})


def create_app(state: ExporterState, auth: BasicAuth | None = None) -> Callable:
    scrape_slots = threading.BoundedSemaphore(MAX_CONCURRENT_SCRAPES)

    def metrics(environ, start_response, pipeline: Pipeline):
        budget = scrape_budget(environ.get("HTTP_X_PROMETHEUS_SCRAPE_TIMEOUT_SECONDS"),
                               pipeline.timeout_offset, pipeline.timeout)
        deadline = Deadline.after(budget)
        if not scrape_slots.acquire(timeout=budget):
            state.selfmetrics.scrape_errors.labels("too_many_concurrent_scrapes").inc()
            return _response(start_response, "503 Service Unavailable",
                             b"too many concurrent scrapes\n", extra=[("Retry-After", "1")])
        try:
            families = pipeline.collection.collect(deadline, budget)
        except Exception:  # noqa: BLE001 - keep serving; the log has the traceback
            log.exception("scrape failed")
            state.selfmetrics.scrape_errors.labels("internal").inc()
            families = []
        finally:
            scrape_slots.release()
        body, content_type = encode(families, [state.selfmetrics.registry],
                                    environ.get("HTTP_ACCEPT", ""))
        extra = []
        if "gzip" in environ.get("HTTP_ACCEPT_ENCODING", ""):
            body = gzip.compress(body, compresslevel=1)
            extra.append(("Content-Encoding", "gzip"))
        return _response(start_response, "200 OK", body, content_type, extra)

    def reload(start_response):
        if state.reload is None:
            return _response(start_response, "503 Service Unavailable",
                             b"reloading is not available\n")
        applied, message = state.reload()
        status = "200 OK" if applied else "500 Internal Server Error"
        return _response(start_response, status, (message + "\n").encode())

    def app(environ, start_response):
        path = environ.get("PATH_INFO", "/")
        method = environ.get("REQUEST_METHOD", "GET")
        try:
            body_size = int(environ.get("CONTENT_LENGTH") or 0)
        except ValueError:
            body_size = MAX_REQUEST_BODY_BYTES + 1
        if body_size > MAX_REQUEST_BODY_BYTES or len(environ.get("QUERY_STRING", "")) > 4096:
            # wsgiref answers HTTP/1.0 and closes each connection, so an unread body cannot
            # spill into a next request.
            return _response(start_response, "413 Content Too Large", b"request too large\n")
        if auth is not None and path not in _UNAUTHENTICATED_PATHS \
                and not auth.allows(environ.get("HTTP_AUTHORIZATION")):
            return _response(start_response, "401 Unauthorized", b"Unauthorized\n",
                             extra=[("WWW-Authenticate",
                                     'Basic realm="tfserving-exporter", charset="UTF-8"')])
        if path == "/-/reload":
            if method not in ("POST", "PUT"):
                return _response(start_response, "405 Method Not Allowed",
                                 b"use POST to reload\n", extra=[("Allow", "POST, PUT")])
            return reload(start_response)
        if method not in ("GET", "HEAD"):
            return _response(start_response, "405 Method Not Allowed",
                             b"only GET and HEAD are supported\n", extra=[("Allow", "GET, HEAD")])
        pipeline = state.pipeline  # one consistent configuration for the whole request
        if path == pipeline.telemetry_path:
            return metrics(environ, start_response, pipeline)
        if path == "/-/healthy":
            return _response(start_response, "200 OK", b"Healthy\n")
        if path == "/-/ready":
            if state.ready.is_set():
                return _response(start_response, "200 OK", b"Ready\n")
            return _response(start_response, "503 Service Unavailable", b"Not ready\n")
        if path == "/":
            return _response(start_response, "200 OK", _landing_page(pipeline),
                             "text/html; charset=utf-8")
        return _response(start_response, "404 Not Found", b"404 page not found\n")

    return app


# A TLS handshake that has not finished by then is dropped (a slow client must not hold a
# request thread).
_TLS_HANDSHAKE_SECONDS = 10.0


class _QuietHandler(WSGIRequestHandler):
    def setup(self) -> None:
        if isinstance(self.request, ssl.SSLSocket):
            # The handshake runs here, in the request's own thread, not in accept().
            self.request.settimeout(_TLS_HANDSHAKE_SECONDS)
            self.request.do_handshake()
            self.request.settimeout(None)
        super().setup()

    def log_message(self, format: str, *args) -> None:  # noqa: A002 - stdlib signature
        log.debug("%s %s", self.address_string(), format % args)


class _ThreadingServer(ThreadingMixIn, WSGIServer):
    daemon_threads = True
    allow_reuse_address = True
    tls_context: ssl.SSLContext | None = None

    def get_request(self):
        connection, address = super().get_request()
        if self.tls_context is not None:
            connection = self.tls_context.wrap_socket(connection, server_side=True,
                                                      do_handshake_on_connect=False)
        return connection, address

    def handle_error(self, request, client_address) -> None:
        # Failed TLS handshakes and clients hanging up are routine; they are not worth a trace.
        log.debug("request from %s failed", client_address, exc_info=True)


class _ThreadingServerV6(_ThreadingServer):
    address_family = socket.AF_INET6


def serve(app: Callable, host: str, port: int,
          tls_context: ssl.SSLContext | None = None) -> WSGIServer:
    """Bind now (so errors surface at startup) and return the server; call serve_forever()."""
    server_class = _ThreadingServerV6 if ":" in host else _ThreadingServer
    server = make_server(host, port, app, server_class=server_class, handler_class=_QuietHandler)
    server.tls_context = tls_context
    return server
