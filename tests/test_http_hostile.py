"""The HTTP side against hostile or broken clients: idle and half-sent connections, oversized
and malformed heads, slow TLS handshakes, file descriptor exhaustion and password floods.

Real sockets on 127.0.0.1; every wait polls with a deadline or blocks on a socket with a
timeout, never sleeps.
"""

from __future__ import annotations

import base64
import contextlib
import errno
import logging
import os
import resource
import selectors
import socket
import ssl
import statistics
import subprocess
import sys
import threading
import time

import bcrypt
import pytest
import requests

from exporter import http_server
from exporter.http_server import ConnectionLimits, HTTPServer
from exporter.webconfig import BasicAuth
from tests.helpers import free_port, wait_until
from tests.test_web_security import pki  # noqa: F401 - the fixture: a CA and certificates

HOST = "127.0.0.1"


# --- a tiny app and a raw client ------------------------------------------------------------

def tiny_app(environ, start_response):
    path = environ["PATH_INFO"]
    if path.startswith("/echo"):
        body = (f"{environ['REQUEST_METHOD']} {path} {environ['QUERY_STRING']} "
                f"body={environ['wsgi.input'].read()!r} "
                f"x={environ.get('HTTP_X_TWICE')} scheme={environ['wsgi.url_scheme']}").encode()
    elif path == "/fail":
        raise RuntimeError("the app broke")
    elif path == "/big-body":
        if int(environ.get("CONTENT_LENGTH") or 0) > 64 * 1024:
            assert environ["wsgi.input"].read() == b""  # the server did not read it
            body = b"too large\n"
            start_response("413 Content Too Large", [("Content-Length", str(len(body)))])
            return [body]
        body = b"small\n"
    else:
        body = b"hello\n"
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]


@contextlib.contextmanager
def running(app=tiny_app, tls_context=None, **options):
    server = HTTPServer(app, HOST, 0, tls_context, **options)
    thread = threading.Thread(target=server.serve_forever, name="test-http", daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)
        assert not thread.is_alive()


class Client:
    """One raw connection: send bytes, read responses (Content-Length framed), see EOF."""

    def __init__(self, port: int, timeout: float = 5.0, sock=None) -> None:
        self.sock = sock or socket.create_connection((HOST, port), timeout=timeout)
        self.sock.settimeout(timeout)
        self.buf = b""

    def send(self, data: bytes) -> "Client":
        self.sock.sendall(data)
        return self

    def _fill(self) -> bool:
        try:
            data = self.sock.recv(65536)
        except ConnectionResetError:
            data = b""
        self.buf += data
        return bool(data)

    def response(self, head_only: bool = False) -> tuple[int, dict[str, str], bytes]:
        while b"\r\n\r\n" not in self.buf:
            assert self._fill(), f"connection closed before a response head: {self.buf!r}"
        head, self.buf = self.buf.split(b"\r\n\r\n", 1)
        lines = head.decode("latin-1").split("\r\n")
        version, status, _ = lines[0].split(" ", 2)
        assert version == "HTTP/1.1"
        headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        length = 0 if head_only else int(headers.get("content-length", 0))
        while len(self.buf) < length:
            assert self._fill(), "connection closed inside a response body"
        body, self.buf = self.buf[:length], self.buf[length:]
        return int(status), headers, body

    def closed_by_server(self) -> bool:
        """Wait (up to the socket timeout) for the server to close; True if it did."""
        try:
            while self._fill():
                pass
        except (socket.timeout, TimeoutError):
            return False
        return True

    def close(self) -> None:
        self.sock.close()


def get(path: str = "/") -> bytes:
    return f"GET {path} HTTP/1.1\r\nHost: test\r\n\r\n".encode()


def eof_count(clients) -> int:
    """How many of these connections the server has closed (they expect nothing else)."""
    with selectors.DefaultSelector() as selector:
        for client in clients:
            selector.register(client.sock, selectors.EVENT_READ)
        return len(selector.select(timeout=0))


def thread_count() -> int:
    return len(os.listdir("/proc/self/task"))


# --- connection floods ------------------------------------------------------------------------

def test_idle_and_half_sent_connections_cost_no_threads():
    baseline = threading.active_count(), thread_count()
    sockets = []
    with running() as server:
        port = server.server_address[1]
        try:
            for number in range(400):
                sock = socket.create_connection((HOST, port), timeout=5)
                if number % 2:  # a head that never ends
                    sock.sendall(b"GET /metrics HTTP/1.1\r\nHost: test\r\nX-Slow: ")
                sockets.append(sock)
            wait_until(lambda: server.stats["accepted"] >= 400, timeout=10,
                       message="the server to accept all 400 connections")
            started = time.monotonic()
            reply = requests.get(f"http://{HOST}:{port}/", timeout=5)
            elapsed = time.monotonic() - started
            assert (reply.status_code, reply.text) == (200, "hello\n")
            assert elapsed < 1.0
            # One loop thread plus the fixed handler threads, whatever the connections.
            assert threading.active_count() - baseline[0] <= http_server.HANDLER_THREADS + 1
            assert thread_count() - baseline[1] <= http_server.HANDLER_THREADS + 1
            assert len(server._conns) <= http_server.MAX_CONNECTIONS
            # The excess was closed by the server, not held: the client sees EOF.
            selector = selectors.DefaultSelector()
            for sock in sockets:
                selector.register(sock, selectors.EVENT_READ)

            def closed() -> int:
                return len(selector.select(timeout=0))
            wait_until(lambda: closed() >= 400 - http_server.MAX_CONNECTIONS, timeout=5,
                       message="the server to close the excess connections")
            selector.close()
            assert server.stats["evicted"] >= 400 - http_server.MAX_CONNECTIONS
        finally:
            for sock in sockets:
                sock.close()


def test_at_the_cap_with_every_connection_busy_a_new_one_is_closed_at_once():
    entered, release = threading.Semaphore(0), threading.Event()

    def blocking_app(environ, start_response):
        entered.release()
        release.wait(10)
        return tiny_app(environ, start_response)

    with running(blocking_app, handler_threads=2, max_connections=4) as server:
        port = server.server_address[1]
        busy = [Client(port).send(get()) for _ in range(4)]  # 2 in the app, 2 queued
        for _ in range(2):
            assert entered.acquire(timeout=5)
        wait_until(lambda: sum(c.state == "worker" for c in server._conns) == 4,
                   message="four requests handed to workers")
        extra = Client(port, timeout=2)
        started = time.monotonic()
        assert extra.closed_by_server() and time.monotonic() - started < 1.5
        assert server.stats["refused_at_cap"] == 1
        release.set()
        assert all(client.response()[0] == 200 for client in busy)
        # Now all four wait for a next request: a new connection closes the oldest of them.
        wait_until(lambda: sum(c.state == "head" for c in server._conns) == 4,
                   message="four connections waiting for their next request")
        newcomer = Client(port).send(get())
        assert newcomer.response()[0] == 200
        assert server.stats["evicted"] == 1
        wait_until(lambda: eof_count(busy) == 1, timeout=5, message="one connection closed")
        for client in busy + [newcomer, extra]:
            client.close()


# --- timeouts ---------------------------------------------------------------------------------

def test_head_timeout_and_idle_timeout_close_connections():
    with running(limits=ConnectionLimits(head_timeout=0.3, idle_timeout=0.8)) as server:
        port = server.server_address[1]
        silent = Client(port)
        half = Client(port).send(b"GET / HTTP/1.1\r\nHost: te")
        started = time.monotonic()
        assert silent.closed_by_server() and half.closed_by_server()
        assert 0.25 <= time.monotonic() - started < 3

        kept = Client(port).send(get())
        assert kept.response()[0] == 200
        assert kept.send(get()).response()[0] == 200  # well within the idle timeout
        started = time.monotonic()
        assert kept.closed_by_server()
        assert 0.7 <= time.monotonic() - started < 3  # the idle timeout, not the head timeout
        assert server.stats["timed_out"] == 3


# --- malformed and oversized requests ---------------------------------------------------------

def test_oversized_head_gets_431_and_the_connection_is_closed():
    with running() as server:
        port = server.server_address[1]
        client = Client(port).send(b"GET / HTTP/1.1\r\nHost: test\r\nX-Big: " + b"a" * 20000
                                   + b"\r\n\r\n")
        status, headers, _ = client.response()
        assert (status, headers["connection"]) == (431, "close")
        assert client.closed_by_server()
        endless = Client(port).send(b"GET / HTTP/1.1\r\nX-Big: " + b"a" * 20000)  # never ends
        assert endless.response()[0] == 431 and endless.closed_by_server()
        # Just under the limit is fine.
        fits = Client(port).send(b"GET / HTTP/1.1\r\nX-Big: " + b"a" * 15000 + b"\r\n\r\n")
        assert fits.response()[0] == 200


@pytest.mark.parametrize("request_bytes, status", [
    (b"GARBAGE\r\n\r\n", 400),
    (b"GET /\r\n\r\n", 400),  # HTTP/0.9
    (b"GET / HTTP/1.1 extra\r\n\r\n", 400),
    (b"G(T / HTTP/1.1\r\n\r\n", 400),
    (b"GET / HTTP/1.1\r\nno colon here\r\n\r\n", 400),
    (b"GET / HTTP/1.1\r\nHost : test\r\n\r\n", 400),
    (b"GET / HTTP/1.1\r\nHost: test\r\n folded\r\n\r\n", 400),
    (b"POST / HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n", 400),
    (b"POST / HTTP/1.1\r\nContent-Length: -1\r\n\r\n", 400),
    # 5,000 digits: int() of it would raise (Python caps int parsing at 4,300 digits)
    (b"POST / HTTP/1.1\r\nContent-Length: " + b"9" * 5000 + b"\r\n\r\n", 400),
    (b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n", 411),
    (b"GET / HTTP/2.0\r\n\r\n", 505),
])
def test_malformed_requests_are_refused_and_closed(request_bytes, status):
    with running() as server:
        client = Client(server.server_address[1]).send(request_bytes)
        got, headers, _ = client.response()
        assert (got, headers["connection"]) == (status, "close")
        assert client.closed_by_server()
        assert Client(server.server_address[1]).send(get()).response()[0] == 200


@pytest.mark.parametrize("how", ["at-accept", "pipelined"])
def test_a_request_the_parser_chokes_on_never_stops_the_loop(how, monkeypatch):
    # Whatever a head makes the parser raise, on whichever path the loop reads it (already
    # in the socket when it is accepted, or pipelined behind a kept-alive request), that
    # connection is closed and the server keeps serving.
    import exporter.http_server as http_server

    real = http_server.parse_head

    def parse(data, *args, **kwargs):
        if b"X-Boom" in bytes(data):
            raise RuntimeError("a parser bug")
        return real(data, *args, **kwargs)

    monkeypatch.setattr(http_server, "parse_head", parse)
    boom = b"GET / HTTP/1.1\r\nX-Boom: 1\r\n\r\n"
    with running() as server:
        port = server.server_address[1]
        client = Client(port)
        client.send(get() + boom if how == "pipelined" else boom)
        if how == "pipelined":
            assert client.response()[0] == 200
        assert client.closed_by_server()
        for _ in range(3):
            assert Client(port).send(get()).response()[0] == 200


def test_announced_body_over_64k_is_refused_unread_and_closes():
    with running() as server:
        client = Client(server.server_address[1])
        client.send(b"POST /big-body HTTP/1.1\r\nHost: t\r\nContent-Length: 100000\r\n\r\n"
                    + b"x" * 100000)
        status, headers, body = client.response()
        assert (status, body, headers["connection"]) == (413, b"too large\n", "close")
        assert client.closed_by_server()


def test_app_exceptions_answer_500_and_are_logged_once(caplog):
    with caplog.at_level(logging.DEBUG, logger="exporter.http_server"):
        with running() as server:
            client = Client(server.server_address[1]).send(get("/fail"))
            status, headers, _ = client.response()
            assert (status, headers["connection"]) == (500, "close")
            assert Client(server.server_address[1]).send(get()).response()[0] == 200
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1 and errors[0].exc_info and "GET /fail" in errors[0].getMessage()


# --- keep-alive, HTTP/1.0, HEAD, pipelining, environ ------------------------------------------

def test_keep_alive_serves_two_requests_on_one_connection():
    with running() as server:
        client = Client(server.server_address[1])
        for _ in range(2):
            status, headers, body = client.send(get()).response()
            assert (status, body) == (200, b"hello\n") and "connection" not in headers
        assert server.stats["accepted"] == 1
        assert "date" in headers
        # Connection: close is honoured.
        status, headers, _ = client.send(b"GET / HTTP/1.1\r\nConnection: close\r\n\r\n").response()
        assert headers["connection"] == "close" and client.closed_by_server()


def test_http_1_0_closes_unless_it_asks_for_keep_alive():
    with running() as server:
        port = server.server_address[1]
        client = Client(port).send(b"GET / HTTP/1.0\r\n\r\n")
        status, headers, body = client.response()
        assert (status, headers["connection"], body) == (200, "close", b"hello\n")
        assert client.closed_by_server()
        kept = Client(port)
        for _ in range(2):
            _, headers, _ = kept.send(b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n").response()
            assert headers["connection"] == "keep-alive"


def test_head_has_no_body():
    with running() as server:
        client = Client(server.server_address[1])
        status, headers, _ = client.send(b"HEAD / HTTP/1.1\r\nHost: t\r\n\r\n").response(
            head_only=True)
        assert (status, headers["content-length"]) == (200, "6")
        # Nothing but the next response follows the head.
        status, _, body = client.send(get()).response()
        assert (status, body, client.buf) == (200, b"hello\n", b"")


def test_pipelined_requests_and_small_bodies_are_answered_in_order():
    with running() as server:
        client = Client(server.server_address[1])
        client.send(b"POST /echo?q=1 HTTP/1.1\r\nContent-Length: 3\r\nX-Twice: a\r\nX-Twice: b\r\n"
                    b"\r\nabcGET /echo%20x HTTP/1.1\r\n\r\n")
        first, second = client.response()[2], client.response()[2]
        assert first == b"POST /echo q=1 body=b'abc' x=a,b scheme=http"
        assert second.startswith(b"GET /echo x  body=b''")


def test_expect_100_continue_gets_an_interim_response():
    with running() as server:
        client = Client(server.server_address[1])
        client.send(b"POST /echo HTTP/1.1\r\nContent-Length: 3\r\nExpect: 100-continue\r\n\r\n")
        while b"\r\n\r\n" not in client.buf:
            assert client._fill()
        assert client.buf == b"HTTP/1.1 100 Continue\r\n\r\n"
        client.buf = b""
        status, _, body = client.send(b"xyz").response()
        assert status == 200 and b"body=b'xyz'" in body


def test_a_client_that_does_not_read_loses_its_response_not_a_worker():
    big = b"x" * (32 * 1024 * 1024)

    def big_app(environ, start_response):
        body = big if environ["PATH_INFO"] == "/big" else b"hello\n"
        start_response("200 OK", [("Content-Length", str(len(body)))])
        return [body]

    with running(big_app, handler_threads=1,
                 limits=ConnectionLimits(send_timeout=0.5)) as server:
        port = server.server_address[1]
        reader = socket.socket()
        reader.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        reader.settimeout(5)
        reader.connect((HOST, port))
        reader.sendall(get("/big"))  # and never read
        started = time.monotonic()
        # The only handler thread gives up after the send timeout and answers the next one.
        assert Client(port, timeout=5).send(get()).response()[0] == 200
        assert 0.4 <= time.monotonic() - started < 3
        slow = Client(port, sock=reader)
        assert slow.closed_by_server()
        assert len(slow.buf) < len(big)


def test_shutdown_returns_while_a_worker_is_inside_the_app():
    entered, release = threading.Event(), threading.Event()

    def stuck_app(environ, start_response):
        entered.set()
        release.wait(30)
        return tiny_app(environ, start_response)

    try:
        server = HTTPServer(stuck_app, HOST, 0)
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        client = Client(server.server_address[1]).send(get())
        assert entered.wait(5)
        started = time.monotonic()
        server.shutdown()
        server.server_close()
        thread.join(5)
        assert not thread.is_alive() and time.monotonic() - started < 4
        assert client.closed_by_server()
        with pytest.raises(OSError):
            socket.create_connection((HOST, server.server_address[1]), timeout=1)
    finally:
        release.set()


# --- out of file descriptors --------------------------------------------------------------

class _ExhaustedListener:
    """Stands in for the listening socket: accept() fails with EMFILE while ``failing``."""

    def __init__(self, real: socket.socket) -> None:
        self.real = real
        self.failing = True
        self.calls = 0

    def accept(self):
        self.calls += 1
        if self.failing:
            raise OSError(errno.EMFILE, os.strerror(errno.EMFILE))
        return self.real.accept()

    def __getattr__(self, name):
        return getattr(self.real, name)


def test_accept_out_of_fds_backs_off_instead_of_spinning(caplog):
    server = HTTPServer(tiny_app, HOST, 0)
    fake = _ExhaustedListener(server.socket)
    server._selector.unregister(server.socket)
    server.socket = fake
    server._selector.register(fake, selectors.EVENT_READ, fake)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    with caplog.at_level(logging.WARNING, logger="exporter.http_server"):
        thread.start()
        try:
            port = server.server_address[1]
            waiting = socket.create_connection((HOST, port), timeout=5)  # the listener is readable
            started = time.monotonic()
            wait_until(lambda: time.monotonic() - started >= 1.5, timeout=5,
                       message="a 1.5 s window")
            # Back-off 50 ms doubling to 1 s: a handful of attempts, not a spin.
            assert 2 <= fake.calls <= 10
            warnings = [r for r in caplog.records if "cannot accept" in r.getMessage()]
            assert len(warnings) == 1
            fake.failing = False
            waiting.settimeout(5)
            assert Client(port, sock=waiting).send(get()).response()[0] == 200
            assert server._backoff == http_server.ACCEPT_BACKOFF_SECONDS
        finally:
            server.shutdown()
            server.server_close()
            thread.join(5)


def _cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as handle:
        fields = handle.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@contextlib.contextmanager
def exporter_process(tmp_path, *flags, nofile: int | None = None):
    """The real exporter CLI in a subprocess; TF Serving addresses where nothing listens."""
    port, dead = free_port(), free_port()
    log_path = tmp_path / "exporter.log"

    def limit():
        if nofile is not None:
            resource.setrlimit(resource.RLIMIT_NOFILE, (nofile, nofile))

    with open(log_path, "w") as log_file:
        process = subprocess.Popen(
            [sys.executable, "-m", "exporter", f"--web.listen-address={HOST}:{port}",
             f"--tfserving.grpc-address={HOST}:{dead}",
             f"--tfserving.rest-address=http://{HOST}:{dead}", "--model=m", *flags],
            stdout=subprocess.DEVNULL, stderr=log_file, preexec_fn=limit,
            cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    try:
        url = f"http://{HOST}:{port}"
        wait_until(lambda: requests.get(url + "/-/healthy", timeout=2).status_code == 200,
                   timeout=20, message="the exporter to start")
        yield process, url, log_path
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)


def test_exporter_under_a_low_fd_limit_keeps_answering_without_spinning(tmp_path):
    # With ulimit -n 64 the connection cap shrinks to 16 (a quarter of the limit), so 100
    # idle connections are closed by the cap before descriptors run out; if they still ran
    # out, accept() backs off (test_accept_out_of_fds_backs_off_instead_of_spinning). Either
    # way: no spinning, and a scrape is answered.
    with exporter_process(tmp_path, nofile=64) as (process, url, log_path):
        idle = []
        try:
            for _ in range(100):  # more than the 64 descriptors the process may have
                idle.append(socket.create_connection((HOST, int(url.rsplit(":", 1)[1])),
                                                     timeout=5))

            def closed_by_the_server() -> int:
                return sum(1 for sock in idle if _peer_closed(sock))

            wait_until(lambda: closed_by_the_server() >= 100 - 16, timeout=10,
                       message="the server to close what is over its cap")
            before = _cpu_seconds(process.pid)
            started = time.monotonic()
            wait_until(lambda: time.monotonic() - started >= 2, timeout=5, message="2 s")
            burned = _cpu_seconds(process.pid) - before
            assert burned < 0.5, f"{burned:.2f} CPU-s in 2 s under the fd limit"
            started = time.monotonic()
            reply = requests.get(url + "/metrics", timeout=10,
                                 headers={"X-Prometheus-Scrape-Timeout-Seconds": "3"})
            assert reply.status_code == 200 and "tfserving_up" in reply.text
            assert time.monotonic() - started < 5
            assert log_path.read_text().count("cannot accept connections") <= 2
        finally:
            for sock in idle:
                sock.close()


def _peer_closed(sock: socket.socket) -> bool:
    """True when the server has closed this connection (EOF or reset), without blocking."""
    sock.setblocking(False)
    try:
        return sock.recv(1, socket.MSG_PEEK) == b""
    except BlockingIOError:
        return False
    except OSError:
        return True
    finally:
        sock.setblocking(True)


# --- basic auth that is cheap to refuse -------------------------------------------------------

def _basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


class _FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def counted_bcrypt(monkeypatch):
    calls = []
    real = bcrypt.checkpw

    def checkpw(password, hashed):
        calls.append(password)
        return real(password, hashed)
    monkeypatch.setattr(bcrypt, "checkpw", checkpw)
    return calls


def test_basic_auth_remembers_failures_and_throttles_unknown_credentials(counted_bcrypt):
    hashed = bcrypt.hashpw(b"right", bcrypt.gensalt(4))
    clock = _FakeClock()
    auth = BasicAuth({"prometheus": hashed}, clock=clock)
    good = _basic("prometheus", "right")
    assert auth.check(good) == "ok" and len(counted_bcrypt) == 1
    assert auth.allows(good) and len(counted_bcrypt) == 1  # remembered
    wrong = _basic("prometheus", "wrong")
    assert auth.check(wrong) == "denied" and len(counted_bcrypt) == 2
    for _ in range(100):  # repeats are refused without bcrypt (and take no token)
        assert auth.check(wrong) == "denied"
    assert len(counted_bcrypt) == 2
    # Malformed headers never reach bcrypt.
    for header in (None, "", "Bearer x", "Basic !!!", "Basic " + base64.b64encode(b"nocolon").decode()):
        assert auth.check(header) == "denied"
    assert len(counted_bcrypt) == 2
    # The bucket started with BURST tokens; two were used. Unknown users take a dummy check.
    assert auth.check(_basic("nobody", "x")) == "denied"
    assert auth.check(_basic("prometheus", "guess-1")) == "denied"
    assert len(counted_bcrypt) == 4
    assert auth.check(_basic("prometheus", "guess-2")) == "throttled"
    assert auth.check(_basic("nobody", "y")) == "throttled"
    assert len(counted_bcrypt) == 4 and auth.throttled == 2
    # Known credentials are never throttled, known failures are still "denied".
    assert auth.check(good) == "ok" and auth.check(wrong) == "denied"
    clock.now += 1 / BasicAuth.CHECKS_PER_SECOND  # one token back
    assert auth.check(_basic("prometheus", "guess-2")) == "denied"
    assert auth.check(_basic("prometheus", "guess-3")) == "throttled"
    # Failures never evict the good ones, and the failure cache is bounded.
    small = BasicAuth({"prometheus": hashed}, remember_failures=3, burst=100)
    assert small.check(good) == "ok"
    for number in range(10):
        small.check(_basic("prometheus", f"bad-{number}"))
    assert len(small._failed) == 3 and len(small._verified) == 1
    calls = len(counted_bcrypt)
    assert small.check(good) == "ok" and len(counted_bcrypt) == calls


def test_basic_auth_one_bcrypt_at_a_time_the_rest_throttled(monkeypatch):
    inside, release = threading.Event(), threading.Event()
    hashed = bcrypt.hashpw(b"right", bcrypt.gensalt(4))
    real = bcrypt.checkpw

    def slow_checkpw(password, hashed_):
        inside.set()
        release.wait(10)
        return real(password, hashed_)
    monkeypatch.setattr(bcrypt, "checkpw", slow_checkpw)
    auth = BasicAuth({"prometheus": hashed}, wait=0.2)
    results = []
    first = threading.Thread(target=lambda: results.append(auth.check(_basic("prometheus", "a"))))
    first.start()
    try:
        assert inside.wait(5)
        started = time.monotonic()
        assert auth.check(_basic("prometheus", "b")) == "throttled"
        assert 0.15 <= time.monotonic() - started < 2
    finally:
        release.set()
        first.join(5)
    assert results == ["denied"]


def test_basic_auth_flood_in_process_is_throttled(counted_bcrypt):
    hashed = bcrypt.hashpw(b"right", bcrypt.gensalt(4))
    auth = BasicAuth({"prometheus": hashed})
    good = _basic("prometheus", "right")
    assert auth.check(good) == "ok"
    outcomes: list[str] = []
    stop = time.monotonic() + 1.5

    def flood(number: int) -> None:
        count = 0
        while time.monotonic() < stop:
            count += 1
            # Half the threads repeat one wrong header, half always send new ones.
            password = "same-wrong" if number % 2 else f"wrong-{number}-{count}"
            outcomes.append(auth.check(_basic("prometheus", password)))
    started = time.monotonic()
    threads = [threading.Thread(target=flood, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    elapsed = time.monotonic() - started
    checks = len(counted_bcrypt) - 1
    assert checks <= BasicAuth.BURST + BasicAuth.CHECKS_PER_SECOND * elapsed + 1
    assert outcomes.count("throttled") > 0 and set(outcomes) <= {"denied", "throttled"}
    assert counted_bcrypt.count(b"same-wrong") <= 1  # the repeated header: at most one check
    assert auth.check(good) == "ok" and len(counted_bcrypt) - 1 == checks


def _flood(port: int, seconds: float, password_for, threads: int = 8) -> list[tuple[str, int]]:
    """``threads`` clients sending wrong passwords back to back on kept-alive connections for
    ``seconds``; returns (password, status) of every answer."""
    answers: list[tuple[str, int]] = []
    stop = time.monotonic() + seconds

    def client_loop(number: int) -> None:
        count = 0
        client = Client(port, timeout=10)
        try:
            while time.monotonic() < stop:
                count += 1
                password = password_for(number, count)
                client.send(f"GET /metrics HTTP/1.1\r\nHost: {HOST}\r\nAuthorization: "
                            f"{_basic('prometheus', password)}\r\n\r\n".encode())
                status, headers, _ = client.response()
                assert status != 429 or headers.get("retry-after")
                answers.append((password, status))
        finally:
            client.close()
    workers = [threading.Thread(target=client_loop, args=(n,)) for n in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(seconds + 15)
    return answers


def test_wrong_password_flood_against_the_exporter_stays_cheap(tmp_path):
    started = time.process_time()
    cost12 = bcrypt.hashpw(b"s3cret-scrape", bcrypt.gensalt(12)).decode()
    bcrypt_cpu = time.process_time() - started  # what one check costs (a hash costs the same)
    web = tmp_path / "web.yaml"
    web.write_text(f"basic_auth_users:\n  prometheus: '{cost12}'\n")
    with exporter_process(tmp_path, f"--web.config.file={web}", "--log.level=error") \
            as (process, url, _):
        port = int(url.rsplit(":", 1)[1])
        right = ("prometheus", "s3cret-scrape")
        assert requests.get(url + "/metrics", auth=right, timeout=10).status_code == 200
        # Calibration: one wrong header repeated is refused from memory, without bcrypt; what
        # remains is what serving a refusal costs.
        assert requests.get(url + "/metrics", auth=("prometheus", "same-wrong"),
                            timeout=10).status_code == 401
        before = _cpu_seconds(process.pid)
        cheap = _flood(port, 1.0, lambda number, count: "same-wrong")
        per_refusal = (_cpu_seconds(process.pid) - before) / len(cheap)
        assert {status for _, status in cheap} == {401}
        assert per_refusal < 0.002  # bcrypt at cost 12 is ~0.25 s

        # The flood: every request a new wrong password (the worst case), while Prometheus
        # keeps scraping with the right one.
        durations: list[float] = []

        def scrape_meanwhile() -> None:
            stop = time.monotonic() + 3.0
            with requests.Session() as session:
                while time.monotonic() < stop:
                    begun = time.monotonic()
                    reply = session.get(url + "/metrics", auth=right, timeout=10,
                                        headers={"X-Prometheus-Scrape-Timeout-Seconds": "3"})
                    durations.append(time.monotonic() - begun)
                    assert reply.status_code == 200
        scraper = threading.Thread(target=scrape_meanwhile)
        before, began = _cpu_seconds(process.pid), time.monotonic()
        scraper.start()
        answers = _flood(port, 3.0, lambda number, count: f"wrong-{number}-{count}")
        scraper.join(15)
        burned, elapsed = _cpu_seconds(process.pid) - before, time.monotonic() - began
    statuses = [status for _, status in answers]
    assert set(statuses) <= {401, 429} and statuses.count(429) > 0
    # Every password is new, so each 401 is one bcrypt check and each 429 a refusal unchecked.
    checks = statuses.count(401)
    assert checks <= BasicAuth.BURST + BasicAuth.CHECKS_PER_SECOND * elapsed + 1, checks
    assert durations and statistics.median(durations) < 0.1, durations
    # CPU: those checks plus cheap refusals, with room for noise; never a bcrypt per request.
    budget = 1.5 * (checks * bcrypt_cpu + len(answers) * per_refusal) + 0.5
    print(f"flood: {len(answers)} requests, {checks} bcrypt checks, {burned:.2f} CPU-s "
          f"(budget {budget:.2f}); refusal {per_refusal * 1e3:.2f} ms CPU; scrape median "
          f"{statistics.median(durations) * 1e3:.1f} ms over {len(durations)}")
    assert burned < budget, (f"{burned:.2f} CPU-s for {checks} checks and {len(answers)} "
                             f"requests (budget {budget:.2f})")


# --- TLS ----------------------------------------------------------------------------------------

def test_tls_handshakes_that_never_complete_hold_no_worker(pki):  # noqa: F811
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(str(pki / "server.crt"), str(pki / "server.key"))
    baseline = threading.active_count()
    with running(tls_context=context, limits=ConnectionLimits(handshake_timeout=0.5)) as server:
        port = server.server_address[1]
        silent = [Client(port) for _ in range(3 * http_server.HANDLER_THREADS)]
        garbage = Client(port).send(b"GET / HTTP/1.1\r\n\r\n")  # plain HTTP to a TLS port
        url = f"https://{HOST}:{port}"
        with requests.Session() as session:
            started = time.monotonic()
            for _ in range(3):  # one kept-alive TLS connection
                reply = session.get(url + "/echo", verify=str(pki / "ca.crt"), timeout=5)
                assert reply.status_code == 200 and reply.text.endswith("scheme=https")
            assert time.monotonic() - started < 1.0
        assert server.stats["accepted"] == len(silent) + 2
        assert threading.active_count() - baseline <= http_server.HANDLER_THREADS + 1
        assert garbage.closed_by_server()
        assert all(client.closed_by_server() for client in silent)  # the handshake timeout
        assert server.stats["timed_out"] >= len(silent)


def test_quick_answers_come_from_the_loop_while_every_request_thread_is_busy():
    release = threading.Event()

    def stuck_app(environ, start_response):
        release.wait(10)
        start_response("200 OK", [("Content-Length", "0")])
        return [b""]

    def quick(path):
        return ("200 OK", b"Healthy\n") if path == "/-/healthy" else None

    with running(app=stuck_app, handler_threads=1, quick_answers=quick) as server:
        port = server.server_address[1]
        busy = Client(port).send(get("/slow"))
        try:
            started = time.monotonic()
            status, headers, body = Client(port).send(get("/-/healthy?x=1")).response()
            assert (status, body) == (200, b"Healthy\n") and time.monotonic() - started < 1
            head = Client(port).send(b"HEAD /-/healthy HTTP/1.1\r\n\r\n")
            status, headers, _ = head.response(head_only=True)
            assert status == 200 and head.closed_by_server() and head.buf == b""
        finally:
            release.set()
        assert busy.response()[0] == 200
