"""The exporter's HTTP side: /metrics, /config, /-/healthy, /-/ready and a landing page.

``create_app`` returns a plain WSGI application so tests can drive it directly;
``serve`` runs it on the bounded server of exporter.http_server.
"""

from __future__ import annotations

import gzip
import html
import logging
import ssl
import threading
import time
from dataclasses import dataclass, field
from typing import Callable, Iterable

from prometheus_client.exposition import choose_encoder

from exporter import __version__
from exporter.collection import Collection
from exporter.exposition import encode
from exporter.fleet.prober import Prober
from exporter.fleet.request import ProbeRefused
from exporter.http_request import RECEIVED
from exporter.http_server import HANDLER_THREADS, MAX_CONNECTIONS, HTTPServer
from exporter.selfmetrics import SelfMetrics
from exporter.tfserving.deadline import Deadline, scrape_budget
from exporter.webconfig import BasicAuth

log = logging.getLogger(__name__)

# More scrapes at once than this wait for a slot until their deadline, then get 503: each
# holds TF Serving calls. (Waiting scrapes hold request threads; health and readiness are
# answered by the HTTP server's loop, not a request thread, so they never wait behind them.)
MAX_CONCURRENT_SCRAPES = 4


@dataclass(eq=False)
class Pipeline:
    """Everything that follows from one configuration; a reload swaps in a new one whole."""

    collection: Collection
    prober: Prober  # /probe: TF Serving servers named by the query (fleet mode)
    telemetry_path: str
    timeout: float
    timeout_offset: float
    # Shown on the landing page, no secrets; a callable value is read when the page is shown.
    summary: dict = field(default_factory=dict)
    config_yaml: str = ""  # the configuration this pipeline follows, served on /config
    # Requests using this pipeline now, and what closes it once it is retired and unused.
    users: int = 0
    closer: Callable[[], None] | None = None


@dataclass
class ExporterState:
    pipeline: Pipeline
    selfmetrics: SelfMetrics
    ready: threading.Event = field(default_factory=threading.Event)
    # Asks for a reload and waits up to the given seconds (None: not at all); returns
    # (applied, message), or None when it has not finished by then. None: reload not possible.
    reload: Callable[[float | None], tuple[bool, str] | None] | None = None
    enable_lifecycle: bool = True
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def enter(self) -> Pipeline:
        """The current pipeline, held until ``leave``: a reload cannot close it under a
        request that is using it."""
        with self._lock:
            self.pipeline.users += 1
            return self.pipeline

    def leave(self, pipeline: Pipeline) -> None:
        with self._lock:
            pipeline.users -= 1
            closer = pipeline.closer if pipeline.users == 0 else None
            if closer is not None:
                pipeline.closer = None
        if closer is not None:
            closer()

    def replace(self, new: Pipeline, close_old: Callable[[], None]) -> None:
        """Serve ``new`` from now on; the old pipeline is closed as soon as no request uses
        it (at once when none does), so reloads never pile up pipelines."""
        with self._lock:
            old, self.pipeline = self.pipeline, new
            if old.users:
                old.closer = close_old
                close_old = None
        if close_old is not None:
            close_old()


def _response(start_response, status: str, body: bytes, content_type: str = "text/plain; charset=utf-8",
              extra: Iterable[tuple[str, str]] = ()) -> list[bytes]:
    headers = [("Content-Type", content_type), ("Content-Length", str(len(body)))]
    headers.extend(extra)
    start_response(status, headers)
    return [body]


def _landing_page(pipeline: Pipeline) -> bytes:
    rows = "".join(
        f"<tr><th>{html.escape(str(k))}</th><td>{html.escape(str(v() if callable(v) else v))}"
        "</td></tr>" for k, v in pipeline.summary.items())
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
<li><a href="/config">Configuration</a> (/config)</li>
<li>Probe of one TF Serving server (fleet mode):
/probe?target=HOST:GRPC_PORT[&amp;rest_target=URL][&amp;module=NAME][&amp;model=NAME]</li>
</ul>
<p>POST /-/reload (or SIGHUP) re-reads the configuration and golden files.</p>
<table>{rows}</table>
</body></html>
""".encode()


def accepts_gzip(header: str) -> bool:
    """Whether an ``Accept-Encoding`` header accepts gzip (RFC 9110 12.5.3): codings are
    case-insensitive, ``q=0`` refuses one, and ``*`` stands for any coding not listed."""
    explicit, wildcard = None, None
    for item in header.split(","):
        coding, _, params = item.partition(";")
        coding = coding.strip().lower()
        quality = 1.0
        for param in params.split(";"):
            name, _, value = param.partition("=")
            if name.strip().lower() == "q":
                try:
                    quality = float(value.strip())
                except ValueError:
                    quality = 0.0
                if not 0 <= quality <= 1:  # also NaN
                    quality = 0.0
        if coding in ("gzip", "x-gzip"):
            explicit = quality if explicit is None else max(explicit, quality)
        elif coding == "*":
            wildcard = quality
    if explicit is not None:
        return explicit > 0
    return wildcard is not None and wildcard > 0


# Fleet mode's endpoint: /probe?target=HOST:PORT[&rest_target=URL][&module=NAME][&model=...]
PROBE_PATH = "/probe"
# No endpoint takes a request body; anything announcing more than this is refused unread.
MAX_REQUEST_BODY_BYTES = 64 * 1024
# Health and readiness stay open so kubelet probes work without credentials; they tell
# nothing but "up".
_UNAUTHENTICATED_PATHS = frozenset({"/-/healthy", "/-/ready"})
# How long POST /-/reload waits for its reload to be applied before answering 503.
RELOAD_WAIT_SECONDS = 30.0


def create_app(state: ExporterState, auth: BasicAuth | None = None) -> Callable:
    scrape_slots = threading.BoundedSemaphore(MAX_CONCURRENT_SCRAPES)
    health_answer = health_answers(state)
    reload_waiter = threading.Lock()  # one request thread at most waits on a reload

    def render(families, registry, environ) -> tuple[bytes, str]:
        accept = environ.get("HTTP_ACCEPT", "")
        try:
            return encode(families, [registry], accept)
        except Exception:  # noqa: BLE001 - a value no collector should have let through
            log.exception("rendering the scrape failed; serving the exporter's own metrics")
            state.selfmetrics.scrape_errors.labels("internal").inc()
            return encode([], [registry], accept)

    def page(start_response, environ, families, registry):
        """200 with the families and the registry, gzipped when the client accepts it."""
        headers = [("Vary", "Accept-Encoding")]
        body, content_type = render(families, registry, environ)
        if accepts_gzip(environ.get("HTTP_ACCEPT_ENCODING", "")):
            body = gzip.compress(body, compresslevel=1)
            headers.append(("Content-Encoding", "gzip"))
        return _response(start_response, "200 OK", body, content_type, headers)

    def head(start_response, environ):
        # HEAD is for "is it there": no scrape, so no calls to TF Serving.
        content_type = choose_encoder(environ.get("HTTP_ACCEPT", ""))[1]
        start_response("200 OK", [("Content-Type", content_type),
                                  ("Vary", "Accept-Encoding")])
        return [b""]

    def metrics(environ, start_response, pipeline: Pipeline):
        if environ.get("REQUEST_METHOD") == "HEAD":
            return head(start_response, environ)
        budget = scrape_budget(environ.get("HTTP_X_PROMETHEUS_SCRAPE_TIMEOUT_SECONDS"),
                               pipeline.timeout_offset, pipeline.timeout)
        deadline = Deadline.after(budget - waited(environ))
        if deadline.expired() or not scrape_slots.acquire(timeout=deadline.remaining()):
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
        return page(start_response, environ, families, state.selfmetrics.registry)

    def probe(environ, start_response, pipeline: Pipeline):
        prober = pipeline.prober
        try:
            request = prober.check(environ.get("QUERY_STRING", ""))
            if environ.get("REQUEST_METHOD") == "HEAD":
                return head(start_response, environ)
            families, registry = prober.probe(
                request, environ.get("HTTP_X_PROMETHEUS_SCRAPE_TIMEOUT_SECONDS"),
                waited(environ))
        except ProbeRefused as refusal:
            extra = []
            if refusal.status.startswith("503"):
                state.selfmetrics.scrape_errors.labels("too_many_concurrent_probes").inc()
                extra = [("Retry-After", "1")]
            return _response(start_response, refusal.status, f"{refusal}\n".encode(),
                             extra=extra)
        except Exception as err:  # noqa: BLE001 - keep serving; the log has the traceback
            log.exception("probe failed")
            state.selfmetrics.scrape_errors.labels("internal").inc()
            return _response(start_response, "500 Internal Server Error",
                             f"probe failed: {err}\n".encode())
        return page(start_response, environ, families, registry)

    def reload(start_response):
        if not state.enable_lifecycle:
            return _response(start_response, "403 Forbidden",
                             b"the lifecycle API is not enabled (web.enable_lifecycle); "
                             b"send SIGHUP to reload\n")
        if state.reload is None:
            return _response(start_response, "503 Service Unavailable",
                             b"reloading is not available\n")
        if not reload_waiter.acquire(blocking=False):
            # One request waits on the reload thread at a time; the others would only wait
            # for the same run.
            state.reload(None)
            return _response(start_response, "503 Service Unavailable",
                             b"a reload is already being waited for; this request will be "
                             b"served by the next run, see the log and "
                             b"tfserving_exporter_config_last_reload_successful\n",
                             extra=[("Retry-After", "1")])
        try:
            result = state.reload(RELOAD_WAIT_SECONDS)
        finally:
            reload_waiter.release()
        if result is None:
            return _response(start_response, "503 Service Unavailable",
                             b"the reload has not finished yet; see the log and "
                             b"tfserving_exporter_config_last_reload_successful\n",
                             extra=[("Retry-After", "5")])
        applied, message = result
        status = "200 OK" if applied else "500 Internal Server Error"
        return _response(start_response, status, (message + "\n").encode())

    def refused(start_response, verdict: str):
        if verdict == "throttled":
            return _response(start_response, "429 Too Many Requests",
                             b"too many failed logins; try again later\n",
                             extra=[("Retry-After", "1")])
        return _response(start_response, "401 Unauthorized", b"Unauthorized\n",
                         extra=[("WWW-Authenticate",
                                 'Basic realm="tfserving-exporter", charset="UTF-8"')])

    def app(environ, start_response):
        path = environ.get("PATH_INFO", "/")
        method = environ.get("REQUEST_METHOD", "GET")
        try:
            body_size = int(environ.get("CONTENT_LENGTH") or 0)
        except ValueError:
            body_size = MAX_REQUEST_BODY_BYTES + 1
        if body_size > MAX_REQUEST_BODY_BYTES or len(environ.get("QUERY_STRING", "")) > 4096:
            return _response(start_response, "413 Content Too Large", b"request too large\n",
                             extra=[("Connection", "close")])
        if auth is not None and path not in _UNAUTHENTICATED_PATHS:
            verdict = auth.check(environ.get("HTTP_AUTHORIZATION"))
            if verdict != "ok":
                return refused(start_response, verdict)
        if path == "/-/reload":
            if method not in ("POST", "PUT"):
                return _response(start_response, "405 Method Not Allowed",
                                 b"use POST to reload\n", extra=[("Allow", "POST, PUT")])
            return reload(start_response)
        if method not in ("GET", "HEAD"):
            return _response(start_response, "405 Method Not Allowed",
                             b"only GET and HEAD are supported\n", extra=[("Allow", "GET, HEAD")])
        pipeline = state.enter()  # one consistent configuration for the whole request
        try:
            if path == pipeline.telemetry_path:
                return metrics(environ, start_response, pipeline)
            if path == PROBE_PATH:
                return probe(environ, start_response, pipeline)
            if path == "/":
                return _response(start_response, "200 OK", _landing_page(pipeline),
                                 "text/html; charset=utf-8")
            if path == "/config":
                return _response(start_response, "200 OK", pipeline.config_yaml.encode())
        finally:
            state.leave(pipeline)
        health = health_answer(path)
        if health is not None:
            return _response(start_response, *health)
        return _response(start_response, "404 Not Found", b"404 page not found\n")

    return app


def waited(environ) -> float:
    """Seconds the request has waited since it was complete (for a handler thread): its
    deadline started then."""
    received = environ.get(RECEIVED)
    return max(time.monotonic() - received, 0.0) if received else 0.0


def health_answers(state: ExporterState) -> Callable[[str], tuple[str, bytes] | None]:
    """Health and readiness as the HTTP server's loop answers them, without a request thread:
    kubelet probes must not queue behind scrapes stuck on TF Serving. The app answers them
    with the same function, for callers of the app itself."""
    def answer(path: str) -> tuple[str, bytes] | None:
        if path == "/-/healthy":
            return "200 OK", b"Healthy\n"
        if path == "/-/ready":
            return ("200 OK", b"Ready\n") if state.ready.is_set() else \
                ("503 Service Unavailable", b"Not ready\n")
        return None
    return answer


def probe_room(config) -> int:
    """Request threads and connections a configuration's probes need beyond the sidecar's:
    one for each probe that runs and each that waits for a slot, so probes never queue for a
    thread and miss their deadline there, nor take the connections health checks need. (With
    no allow-list a probe is refused at once, and needs none.)"""
    modules = [config, *config.modules.values()]
    if not any(module.probe.allowed_targets for module in modules):
        return 0
    return 2 * config.fleet.max_concurrent_probes


def serve(app: Callable, host: str, port: int,
          tls_context: ssl.SSLContext | None = None,
          quick_answers: Callable[[str], tuple[str, bytes] | None] | None = None,
          probes: int = 0) -> HTTPServer:
    """Bind now (so errors surface at startup) and return the server; call serve_forever().
    ``probes``: threads and connections added for probes (``probe_room``).

    The server's bounds (threads, connections, timeouts) are in exporter.http_server."""
    return HTTPServer(app, host, port, tls_context, quick_answers=quick_answers,
                      handler_threads=HANDLER_THREADS + probes,
                      max_connections=MAX_CONNECTIONS + probes)
