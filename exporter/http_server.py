"""A bounded HTTP/1.1 server for the exporter's WSGI app.

One loop thread (the one that calls :meth:`HTTPServer.serve_forever`) owns a selector. It
accepts connections, does TLS handshakes and reads every request head (and the small body a
request may announce) without blocking. Only a complete request is handed to one of a fixed
pool of handler threads, which runs the app and writes the response with a total send
timeout, then gives a kept-alive connection back to the loop. So a slow, idle or half-sent
client costs a file descriptor, never a thread; connections are capped and the oldest waiting
one makes room for a new one; every wait has a deadline.

Standard library only. The object keeps the interface of ``socketserver`` that
``exporter.runtime`` uses: ``serve_forever()``, ``shutdown()``, ``server_close()`` and
``server_address``.
"""

from __future__ import annotations

import errno
import logging
import queue
import re
import selectors
import socket
import ssl
import threading
import time
from collections import deque
from dataclasses import dataclass
from typing import Callable, TypeVar

from exporter.http_request import _BadRequest, _Request, parse_head, wsgi_environ
from exporter.http_response import (_CLIENT_ERRORS, _ClientGone, _Response, _send_all,
                                    _simple_response)

log = logging.getLogger(__name__)

T = TypeVar("T")

# --- Every limit of the HTTP side, and why it has its value --------------------------------

# Threads that run the app. At most four scrapes run at once (server.MAX_CONCURRENT_SCRAPES);
# twice that leaves threads for probes, the landing page, a reload and the quick refusals
# (401, 429, 503) while four scrapes wait on TF Serving. Fleet mode adds two for each of
# fleet.max_concurrent_probes, and as many connections (server.probe_room).
HANDLER_THREADS = 8
# Open connections at most. Prometheus (an HA pair), kubelet probes and a person with curl
# need a handful; 64 absorbs bursts while file descriptors and buffered requests stay small
# (64 x 80 KiB at worst). At the cap the oldest connection not in a handler thread is closed
# to admit a new one; when all are in handler threads the new one is closed at once.
MAX_CONNECTIONS = 64
# Connections the kernel queues before we accept them (socketserver's default of 5 drops
# bursts); 128 was Linux's somaxconn default for years.
LISTEN_BACKLOG = 128
# A request head (request line and headers) must be complete this long after the connection
# opened (after the TLS handshake with TLS). Real clients send it in one packet.
HEAD_TIMEOUT_SECONDS = 10.0
# A kept-alive connection may wait this long after a response for its next request head.
# Longer than Prometheus' usual 15 s interval; it reconnects when we closed first.
IDLE_TIMEOUT_SECONDS = 30.0
# A TLS handshake must be finished this long after accept().
TLS_HANDSHAKE_TIMEOUT_SECONDS = 10.0
# A handler thread gives one response this long, in total, to leave; a client that does not
# read is dropped rather than holding the thread.
SEND_TIMEOUT_SECONDS = 10.0
# Request line plus headers. Ours are a few hundred bytes; 16 KiB leaves room for large
# tokens. A bigger head gets 431 and the connection is closed.
MAX_HEAD_BYTES = 16 * 1024
# A request body is read (by the loop, so it costs no thread) only up to this size: the same
# as server.MAX_REQUEST_BODY_BYTES, above which the app answers 413 without reading it.
MAX_BODY_BYTES = 64 * 1024
# After a response that ends a connection we stop writing and discard what the client still
# sends, for this long or this many bytes, so it reads our answer instead of a reset.
LINGER_SECONDS = 2.0
LINGER_MAX_BYTES = 1024 * 1024
# One recv() and one send() at most; a TLS record is 16 KiB.
RECV_BYTES = 16 * 1024
SEND_BYTES = 64 * 1024
# Connections accepted per wake-up of the loop, so a connect flood cannot starve reading.
ACCEPT_BATCH = 64
# accept() failing for want of file descriptors (or memory): stop selecting the listener for
# this long, doubling up to the maximum; a successful accept resets it. Never spin.
ACCEPT_BACKOFF_SECONDS = 0.05
ACCEPT_BACKOFF_MAX_SECONDS = 1.0
# ... and warn about it at most this often, with how often it happened meanwhile.
FD_WARNING_INTERVAL_SECONDS = 60.0
# shutdown() waits this long for the handler threads (daemons) to finish; a thread still in
# the app is abandoned, not waited for.
SHUTDOWN_JOIN_SECONDS = 2.0
# The loop wakes at least this often even with nothing to do (a safety net, not a poll).
MAX_SELECT_SECONDS = 5.0

# -------------------------------------------------------------------------------------------

_FD_ERRNOS = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})
# Connections a client gave up on between the kernel's accept queue and accept().
_ACCEPT_TRANSIENT_ERRNOS = frozenset({errno.ECONNABORTED, errno.EPROTO, errno.EPERM,
                                      errno.EINTR, errno.EAGAIN})
_HEAD_END = re.compile(rb"\r?\n\r?\n")

# What a non-blocking socket (or TLS) step raises when it must wait for the selector.
_WOULD_BLOCK = (BlockingIOError, ssl.SSLWantReadError, ssl.SSLWantWriteError)

# Connection states. Only WORKER belongs to a handler thread; the loop owns all others.
_HANDSHAKE, _HEAD, _BODY, _WORKER, _LINGER, _CLOSED = (
    "handshake", "head", "body", "worker", "linger", "closed")
_WAITING = (_HANDSHAKE, _HEAD, _BODY, _LINGER)


def _connections_the_fd_limit_allows() -> int:
    """A quarter of the process' file descriptor limit (at least 8): under a low ``ulimit -n``
    idle HTTP connections must not take the descriptors TF Serving calls and files need."""
    try:
        import resource

        soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    except (ImportError, OSError, ValueError):
        return MAX_CONNECTIONS
    if soft == resource.RLIM_INFINITY:
        return MAX_CONNECTIONS
    return max(8, soft // 4)


class _Conn:
    __slots__ = ("sock", "addr", "tls", "state", "buf", "deadline", "idle", "scan", "events",
                 "request", "lingered")

    def __init__(self, sock, addr, tls: bool) -> None:
        self.sock = sock
        self.addr = addr
        self.tls = tls
        self.state = _HEAD
        self.buf = bytearray()
        self.deadline = 0.0
        self.idle = False
        self.scan = 0
        self.events = 0
        self.request: _Request | None = None
        self.lingered = 0

    def __repr__(self) -> str:
        return f"<connection {self.peer} {self.state}>"

    @property
    def peer(self) -> str:
        try:
            return f"{self.addr[0]}:{self.addr[1]}"
        except (TypeError, IndexError):
            return str(self.addr)


@dataclass(frozen=True)
class ConnectionLimits:
    """How long and how big one connection's steps may be (values and reasons above)."""

    head_timeout: float = HEAD_TIMEOUT_SECONDS
    idle_timeout: float = IDLE_TIMEOUT_SECONDS
    handshake_timeout: float = TLS_HANDSHAKE_TIMEOUT_SECONDS
    send_timeout: float = SEND_TIMEOUT_SECONDS
    max_head_bytes: int = MAX_HEAD_BYTES
    linger_seconds: float = LINGER_SECONDS


class HTTPServer:
    """Bind at construction (OSError surfaces at startup); serve with serve_forever()."""

    def __init__(self, app: Callable, host: str, port: int,
                 tls_context: ssl.SSLContext | None = None, *,
                 handler_threads: int = HANDLER_THREADS,
                 max_connections: int = MAX_CONNECTIONS,
                 limits: ConnectionLimits = ConnectionLimits(),
                 quick_answers: Callable[[str], tuple[str, bytes] | None] | None = None) -> None:
        self.app = app
        # path -> (status, body) answered by the loop itself, for GET and HEAD: requests that
        # must not wait for a free request thread (health checks).
        self.quick_answers = quick_answers
        self.tls_context = tls_context
        self.handler_threads = handler_threads
        self.max_connections = min(max_connections, _connections_the_fd_limit_allows())
        self.limits = limits
        # What happened, for tests and diagnostics; written by the loop thread only.
        self.stats = {"accepted": 0, "evicted": 0, "refused_at_cap": 0, "timed_out": 0,
                      "fd_exhausted": 0, "bad_requests": 0}

        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.socket = socket.socket(family, socket.SOCK_STREAM)
        self._selector: selectors.BaseSelector | None = None
        self._wake_r = self._wake_w = None
        try:
            self.socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            self.socket.bind((host, port))
            self.socket.listen(LISTEN_BACKLOG)
            self.socket.setblocking(False)
            self.server_address = self.socket.getsockname()
            self._wake_r, self._wake_w = socket.socketpair()
            self._wake_r.setblocking(False)
            self._wake_w.setblocking(False)
            self._selector = selectors.DefaultSelector()
            self._selector.register(self.socket, selectors.EVENT_READ, self.socket)
            self._selector.register(self._wake_r, selectors.EVENT_READ, self._wake_r)
        except BaseException:
            self._close_resources()
            raise
        self._server_name = str(self.server_address[0])
        self._server_port = str(self.server_address[1])

        self._conns: dict[_Conn, None] = {}  # insertion order: oldest waiting first
        # Bounded by the connection cap (a connection has at most one request queued), plus
        # room for the workers' stop markers.
        self._work: queue.Queue = queue.Queue(maxsize=max_connections + handler_threads)
        self._returned: deque = deque()  # (conn, keep_alive) from workers to the loop
        self._lock = threading.Lock()
        self._workers: list[threading.Thread] = []
        self._stopping = False
        self._started = False
        self._closed = False
        self._loop_done = threading.Event()
        self._listening = True
        self._resume_at = 0.0
        self._backoff = ACCEPT_BACKOFF_SECONDS
        self._fd_warned_at: float | None = None
        self._fd_failures_since_warning = 0

    # --- the socketserver-like interface ---------------------------------------------------

    def fileno(self) -> int:
        return self.socket.fileno()

    def serve_forever(self, poll_interval: float | None = None) -> None:  # noqa: ARG002
        """Serve until shutdown(); blocking."""
        with self._lock:
            if self._stopping or self._started:
                return
            self._started = True
        for number in range(self.handler_threads):
            worker = threading.Thread(target=self._work_loop, name=f"http-handler-{number}",
                                      daemon=True)
            worker.start()
            self._workers.append(worker)
        try:
            while not self._stopping:
                self._iterate()
        except Exception:  # noqa: BLE001 - the log says why serving stopped
            log.exception("HTTP server loop failed")
            raise
        finally:
            self._close_everything()
            self._loop_done.set()

    def shutdown(self) -> None:
        """Stop serve_forever(), close every connection and stop the handler threads. Returns
        within a few seconds even when a handler thread is inside the app."""
        with self._lock:
            self._stopping = True
            started = self._started
        self._wake()
        if started:
            self._loop_done.wait(SHUTDOWN_JOIN_SECONDS + 1.0)
        else:
            self._close_everything()
        self._stop_workers()

    def server_close(self) -> None:
        if self._started and not self._loop_done.is_set():
            self.shutdown()
        self._close_everything()

    # --- the loop ----------------------------------------------------------------------------

    def _iterate(self) -> None:
        timeout = self._select_timeout(time.monotonic())
        events = self._selector.select(timeout)
        now = time.monotonic()
        for key, mask in events:
            target = key.data
            if target is self.socket:
                self._accept(now)
            elif target is self._wake_r:
                self._drain_wake()
            elif target.state != _CLOSED:
                try:
                    self._on_ready(target, now)
                except Exception:  # noqa: BLE001 - one connection's bug must not stop serving
                    log.exception("unexpected error on %s", target.peer)
                    self._close(target, None)
        self._take_back(now)
        self._expire(now)
        if not self._listening and now >= self._resume_at and not self._stopping:
            self._listening = True
            self._selector.register(self.socket, selectors.EVENT_READ, self.socket)

    def _select_timeout(self, now: float) -> float:
        soonest = now + MAX_SELECT_SECONDS
        if not self._listening:
            soonest = min(soonest, self._resume_at)
        for conn in self._conns:
            if conn.state in _WAITING:
                soonest = min(soonest, conn.deadline)
        return max(0.0, soonest - now)

    def _accept(self, now: float) -> None:
        just_freed = False
        for _ in range(ACCEPT_BATCH):
            try:
                sock, addr = self.socket.accept()
            except BlockingIOError:
                return
            except OSError as err:
                if err.errno in _ACCEPT_TRANSIENT_ERRNOS:
                    continue
                if err.errno in _FD_ERRNOS:
                    # Free a descriptor by closing the oldest waiting connection and try once
                    # more; if that did not help either, back off.
                    if self._out_of_fds(err, now, may_free=not just_freed):
                        just_freed = True
                        continue
                    return
                log.warning("accept() failed: %s", err)
                self._pause_accepting(now)
                return
            just_freed = False
            self._backoff = ACCEPT_BACKOFF_SECONDS
            self.stats["accepted"] += 1
            try:
                self._admit(sock, addr, now)
            except Exception:  # noqa: BLE001 - one connection must not stop serving
                log.exception("unexpected error accepting a connection from %s", addr)
                admitted = [c for c in self._conns if c.addr == addr and c.state != _CLOSED]
                for conn in admitted:
                    self._close(conn, None)
                if not admitted:
                    _close_quietly(sock)

    def _out_of_fds(self, err: OSError, now: float, may_free: bool) -> bool:
        """accept() failed for want of descriptors or memory: warn (rarely), free one by
        closing the oldest waiting connection, else stop accepting for a while."""
        self.stats["fd_exhausted"] += 1
        self._fd_failures_since_warning += 1
        if self._fd_warned_at is None or now - self._fd_warned_at >= FD_WARNING_INTERVAL_SECONDS:
            log.warning("cannot accept connections: %s; closing idle connections and backing "
                        "off (raise the file descriptor limit, ulimit -n)", err.strerror,
                        extra={"failures": self._fd_failures_since_warning,
                               "open_connections": len(self._conns)})
            self._fd_warned_at = now
            self._fd_failures_since_warning = 0
        victim = self._oldest_waiting() if may_free else None
        if victim is not None:
            self.stats["evicted"] += 1
            self._close(victim, "closed to free a file descriptor")
            return True
        self._pause_accepting(now)
        return False

    def _pause_accepting(self, now: float) -> None:
        if self._listening:
            self._selector.unregister(self.socket)
            self._listening = False
        self._resume_at = now + self._backoff
        self._backoff = min(self._backoff * 2, ACCEPT_BACKOFF_MAX_SECONDS)

    def _oldest_waiting(self) -> _Conn | None:
        first = None
        for conn in self._conns:
            if conn.state == _LINGER:
                return conn  # already answered: the cheapest to drop
            if first is None and conn.state in _WAITING:
                first = conn
        return first

    def _admit(self, sock: socket.socket, addr, now: float) -> None:
        if len(self._conns) >= self.max_connections:
            victim = self._oldest_waiting()
            if victim is None:
                self.stats["refused_at_cap"] += 1
                log.debug("connection from %s closed: %d connections, all being answered",
                          addr, len(self._conns))
                _close_quietly(sock)
                return
            self.stats["evicted"] += 1
            self._close(victim, "closed to admit a new connection")
        try:
            sock.setblocking(False)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if self.tls_context is not None:
                sock = self.tls_context.wrap_socket(sock, server_side=True,
                                                    do_handshake_on_connect=False)
        except (OSError, ValueError) as err:
            log.debug("connection from %s dropped: %r", addr, err)
            _close_quietly(sock)
            return
        conn = _Conn(sock, addr, self.tls_context is not None)
        self._conns[conn] = None
        if conn.tls:
            conn.state = _HANDSHAKE
            conn.deadline = now + self.limits.handshake_timeout
            self._handshake(conn, now)
        else:
            self._start_head(conn, now, idle=False)

    def _on_ready(self, conn: _Conn, now: float) -> None:
        if conn.state == _HANDSHAKE:
            self._handshake(conn, now)
        elif conn.state in (_HEAD, _BODY):
            self._read(conn, now)
        elif conn.state == _LINGER:
            self._linger_read(conn)

    def _handshake(self, conn: _Conn, now: float) -> None:
        done, _ = self._attempt(conn, conn.sock.do_handshake, "TLS handshake failed")
        if done:
            self._start_head(conn, now, idle=False)

    def _attempt(self, conn: _Conn, step: Callable[[], T], failure: str) -> tuple[bool, T | None]:
        """One non-blocking socket step: (True, its result), or (False, None) after waiting for
        the socket when it would block, or after closing the connection when it failed."""
        try:
            return True, step()
        except _WOULD_BLOCK as err:
            self._wait_for(conn, err)
        except _CLIENT_ERRORS as err:
            self._close(conn, f"{failure}: {err!r}")
        return False, None

    def _wait_for(self, conn: _Conn, blocked: Exception) -> None:
        """A non-blocking step could not go on: select the connection for what it needs (TLS
        may need to write in order to read, and the other way round)."""
        self._set_events(conn, selectors.EVENT_WRITE if isinstance(blocked, ssl.SSLWantWriteError)
                         else selectors.EVENT_READ)

    def _start_head(self, conn: _Conn, now: float, idle: bool) -> None:
        conn.state = _HEAD
        conn.request = None
        conn.idle = idle and not conn.buf
        limits = self.limits
        conn.deadline = now + (limits.idle_timeout if conn.idle else limits.head_timeout)
        conn.scan = 0
        # Read at once rather than wait for the selector: bytes may be buffered already
        # (pipelined after the previous request, or decrypted and pending in the TLS layer).
        self._read(conn, now)

    def _read(self, conn: _Conn, now: float) -> None:
        while True:
            if self._parse(conn, now):
                return
            received, data = self._attempt(conn, lambda: conn.sock.recv(RECV_BYTES), "read failed")
            if not received:
                return
            if not data:
                self._close(conn, "closed by the client")
                return
            if conn.idle:
                conn.idle = False
                conn.deadline = min(conn.deadline, now + self.limits.head_timeout)
            conn.buf += data

    def _parse(self, conn: _Conn, now: float) -> bool:
        """Advance on what is buffered; True once the connection has left the loop's reading
        (handed to a worker, refused or closed)."""
        buf = conn.buf
        if conn.state == _HEAD:
            if conn.scan == 0:
                # RFC 9112 2.2: ignore empty lines before a request line.
                start = 0
                while start < len(buf) and buf[start] in b"\r\n":
                    start += 1
                if start:
                    del buf[:start]
            match = _HEAD_END.search(buf, max(0, conn.scan - 3))
            if match is None:
                if len(buf) > self.limits.max_head_bytes:
                    self._refuse(conn, now, "431 Request Header Fields Too Large",
                                 "request head too large")
                    return True
                conn.scan = len(buf)
                return False
            if match.end() > self.limits.max_head_bytes:
                self._refuse(conn, now, "431 Request Header Fields Too Large",
                             "request head too large")
                return True
            try:
                request = parse_head(bytes(buf[:match.start()]))
            except _BadRequest as bad:
                self._refuse(conn, now, bad.status, bad.message)
                return True
            request.head_end = match.end()
            conn.request = request
            length = request.content_length or 0
            if length > MAX_BODY_BYTES:
                # Not read: the app refuses it (413) and the connection is closed after.
                request.body_unread = True
                del buf[:request.head_end]
                self._dispatch(conn)
                return True
            conn.state = _BODY
            if request.expect_continue and len(buf) < request.head_end + length:
                try:
                    conn.sock.send(b"HTTP/1.1 100 Continue\r\n\r\n")
                except _CLIENT_ERRORS:
                    pass  # best effort: the client sends its body after a second anyway
        request = conn.request
        end = request.head_end + (request.content_length or 0)
        if len(buf) < end:
            return False
        request.body = bytes(buf[request.head_end:end])
        del buf[:end]  # what is left is the start of the next, pipelined request
        self._dispatch(conn)
        return True

    def _dispatch(self, conn: _Conn) -> None:
        request = conn.request
        if self.quick_answers is not None and request.method in ("GET", "HEAD"):
            answer = self.quick_answers(request.target.split("?", 1)[0])
            if answer is not None:
                status, body = answer
                reply = _simple_response(status, body)
                if request.method == "HEAD":
                    reply = reply[:len(reply) - len(body)]
                try:  # small, and the send buffer is empty: a non-blocking send suffices
                    conn.sock.send(reply)
                except _CLIENT_ERRORS:
                    pass
                self._linger(conn, time.monotonic())
                return
        self._set_events(conn, 0)
        conn.state = _WORKER
        conn.request.received = time.monotonic()
        self._work.put_nowait((conn, conn.request))

    def _refuse(self, conn: _Conn, now: float, status: str, message: str) -> None:
        """Answer a request we will not hand to the app, then close (the loop never blocks:
        the answer is small and the send buffer empty, so a non-blocking send suffices)."""
        self.stats["bad_requests"] += 1
        log.debug("%s: %s (%s)", conn.peer, status, message)
        try:
            conn.sock.send(_simple_response(status, (message + "\n").encode()))
        except _CLIENT_ERRORS:
            pass
        self._linger(conn, now)

    def _linger(self, conn: _Conn, now: float) -> None:
        try:
            conn.sock.shutdown(socket.SHUT_WR)  # for TLS this also drops the TLS layer
        except _CLIENT_ERRORS:
            self._close(conn, None)
            return
        conn.state = _LINGER
        conn.deadline = now + self.limits.linger_seconds
        conn.lingered = 0
        self._linger_read(conn)

    def _linger_read(self, conn: _Conn) -> None:
        while True:
            try:
                data = conn.sock.recv(RECV_BYTES)
            except (BlockingIOError, ssl.SSLWantReadError, ssl.SSLWantWriteError):
                self._set_events(conn, selectors.EVENT_READ)
                return
            except _CLIENT_ERRORS:
                data = b""
            conn.lingered += len(data)
            if not data or conn.lingered > LINGER_MAX_BYTES:
                self._close(conn, None)
                return

    def _take_back(self, now: float) -> None:
        while self._returned:
            conn, keep_alive = self._returned.popleft()
            if conn.state == _CLOSED:
                continue
            try:
                conn.sock.setblocking(False)
            except _CLIENT_ERRORS:
                self._close(conn, None)
                continue
            if keep_alive and not self._stopping:
                del self._conns[conn]
                self._conns[conn] = None  # now the newest waiting connection
                self._guarded(self._start_head, conn, now, True, conn=conn)
            else:
                self._guarded(self._linger, conn, now, conn=conn)

    def _guarded(self, step, *args, conn: _Conn) -> None:
        """Run one step of a connection's handling on the loop: a bug in it closes that
        connection (with a log line), never the loop and with it the listener."""
        try:
            step(*args)
        except Exception:  # noqa: BLE001 - one connection must not stop serving
            log.exception("unexpected error on %s", conn.addr)
            if conn.state != _CLOSED:
                self._close(conn, None)

    def _expire(self, now: float) -> None:
        expired = [conn for conn in self._conns if conn.state in _WAITING and conn.deadline <= now]
        for conn in expired:
            if conn.state != _LINGER:
                self.stats["timed_out"] += 1
            reason = {_HANDSHAKE: "TLS handshake timed out", _LINGER: None}.get(
                conn.state, "idle timeout" if conn.idle else "request timed out")
            self._close(conn, reason)

    def _set_events(self, conn: _Conn, events: int) -> None:
        if events == conn.events:
            return
        try:
            if conn.events == 0:
                self._selector.register(conn.sock, events, conn)
            elif events == 0:
                self._selector.unregister(conn.sock)
            else:
                self._selector.modify(conn.sock, events, conn)
        except (KeyError, ValueError, OSError):
            pass
        conn.events = events

    def _close(self, conn: _Conn, reason: str | None) -> None:
        if reason:
            log.debug("%s: %s", conn.peer, reason)
        self._set_events(conn, 0)
        self._conns.pop(conn, None)
        conn.state = _CLOSED
        _close_quietly(conn.sock)

    def _wake(self) -> None:
        try:
            self._wake_w.send(b"\0")
        except (BlockingIOError, OSError, AttributeError):
            pass  # already woken (buffer full), or closed

    def _drain_wake(self) -> None:
        try:
            while self._wake_r.recv(4096):
                pass
        except (BlockingIOError, OSError):
            pass

    def _close_everything(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
            for conn in list(self._conns):
                if conn.state == _WORKER:
                    # The worker owns the socket and closes it; this only stops its I/O.
                    try:
                        socket.socket.shutdown(conn.sock, socket.SHUT_RDWR)
                    except OSError:
                        pass
        for conn in list(self._conns):
            if conn.state != _WORKER:
                self._close(conn, None)
        while self._returned:
            conn, _ = self._returned.popleft()
            _close_quietly(conn.sock)
        self._conns.clear()
        self._close_resources()

    def _close_resources(self) -> None:
        if self._selector is not None:
            self._selector.close()
        for sock in (self.socket, self._wake_r, self._wake_w):
            if sock is not None:
                _close_quietly(sock)

    # --- the handler threads ---------------------------------------------------------------

    def _stop_workers(self) -> None:
        # Requests still queued are dropped (their connections are closed already).
        while True:
            try:
                item = self._work.get_nowait()
            except queue.Empty:
                break
            if item is not None:
                _close_quietly(item[0].sock)
        for _ in self._workers:
            try:
                self._work.put_nowait(None)
            except queue.Full:
                break
        deadline = time.monotonic() + SHUTDOWN_JOIN_SECONDS
        for worker in self._workers:
            worker.join(max(0.0, deadline - time.monotonic()))

    def _work_loop(self) -> None:
        while True:
            item = self._work.get()
            if item is None:
                return
            conn, request = item
            keep_alive = False
            try:
                keep_alive = self._respond(conn, request)
            except Exception:  # noqa: BLE001 - a bug here must not kill the thread
                log.exception("unexpected error answering %s", conn.peer)
            self._give_back(conn, keep_alive)

    def _give_back(self, conn: _Conn, keep_alive: bool) -> None:
        with self._lock:
            if not self._closed:
                self._returned.append((conn, keep_alive))
                closed = False
            else:
                closed = True
                _close_quietly(conn.sock)
        if not closed:
            self._wake()

    def _respond(self, conn: _Conn, request: _Request) -> bool:
        """Run the app for one request and send its response; True to keep the connection."""
        may_keep_alive = request.keep_alive and not request.body_unread and not self._stopping
        response = _Response(conn.sock, request, self.limits.send_timeout, SEND_BYTES,
                             may_keep_alive)
        environ = wsgi_environ(request, conn.addr, conn.tls, self._server_name, self._server_port)
        result = None
        ok = False
        try:
            result = self.app(environ, response.start_response)
            # Not for HEAD: the length of an empty body would contradict what GET sends
            # (RFC 9110 8.6); a HEAD reply is framed without one.
            if response.header("Content-Length") is None and isinstance(result, (list, tuple)) \
                    and request.method != "HEAD" and response.status is not None \
                    and all(isinstance(chunk, bytes) for chunk in result):
                response.headers.append(("Content-Length", str(sum(map(len, result)))))
            for chunk in result:  # for HEAD too (write() drops the body): the app may call
                response.write(chunk)  # start_response only when its first chunk is asked for
            response.finish()
            ok = True
        except _ClientGone as gone:
            log.debug("%s: response not delivered: %s", conn.peer, gone)
        except Exception:  # noqa: BLE001 - answer 500 and keep serving
            log.error("error answering %s %s", request.method, environ["PATH_INFO"],
                      exc_info=True)
            if not response.headers_sent:
                try:
                    _send_all(conn.sock, _simple_response("500 Internal Server Error",
                                                          b"internal server error\n"),
                              time.monotonic() + self.limits.send_timeout, SEND_BYTES)
                except _ClientGone:
                    pass
        finally:
            close = getattr(result, "close", None)
            if close is not None:
                try:
                    close()
                except Exception:  # noqa: BLE001
                    log.error("error closing the response to %s %s", request.method,
                              environ["PATH_INFO"], exc_info=True)
                    ok = False
        log.debug('%s "%s %s %s" %s %d', conn.peer, request.method, request.target,
                  request.version, (response.status or "500").split(" ", 1)[0],
                  response.sent_body)
        return ok and response.keep_alive


def _close_quietly(sock) -> None:
    try:
        sock.close()
    except OSError:
        pass
