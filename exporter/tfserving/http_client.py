"""A small HTTP/1.1 client whose every socket operation answers to one deadline.

``requests`` (and urllib3 below it) bound each socket read, not the exchange: a server that
drips one byte a second, or headers a line a minute, holds a scrape far past its deadline. Here
sockets are non-blocking and every wait is ``poll`` with the time the deadline has left, from
name resolution to the last body byte, so an exchange ends by the deadline whatever the peer
does. What a reply may bring is capped too: the head, the header count, and the body (with a
smaller cap for error replies, which are cut rather than refused).

Only what the exporter needs: GET, HEAD and POST; Content-Length, chunked or read-to-close
bodies; keep-alive with a few idle connections; TLS with the system's trust store. No proxies,
redirects, cookies or compression.
"""

from __future__ import annotations

import concurrent.futures
import errno
import select
import socket
import ssl
import threading
import time
from dataclasses import dataclass
from typing import Callable, TypeVar
from urllib.parse import urlsplit

from exporter import __version__
from exporter.tfserving.deadline import Deadline

T = TypeVar("T")

MAX_HEAD_BYTES = 64 * 1024  # status line and headers; TF Serving sends a few hundred bytes
MAX_HEADERS = 100
MAX_IDLE_CONNECTIONS = 4  # kept for reuse; concurrent calls beyond it open their own
_RESOLVED_SECONDS = 30.0  # how long a resolved address list is reused
_RECV_BYTES = 256 * 1024
_MAX_CHUNK_LINE = 1024


class HttpError(Exception):
    """Base of the transport's failures; ``reached`` says whether the server answered."""

    reached = False


class HttpTimeout(HttpError):
    pass


class HttpUnavailable(HttpError):
    pass


class HttpBadReply(HttpError):
    """The server answered with something that is not a usable HTTP reply."""

    reached = True


class HttpTooLarge(HttpBadReply):
    pass


@dataclass
class HttpReply:
    status: int
    headers: dict[str, str]  # lower-case names
    body: bytes
    truncated: bool = False  # an error body longer than its cap, cut


class _Stale(Exception):
    """A reused connection turned out closed before the server read the request."""


def _poll(sock, write: bool, deadline: Deadline, what: str) -> None:
    remaining = deadline.remaining()
    if remaining <= 0:
        raise HttpTimeout(f"{what}: no reply before the scrape deadline")
    poller = select.poll()
    poller.register(sock, select.POLLOUT if write else select.POLLIN)
    if not poller.poll(remaining * 1000):
        raise HttpTimeout(f"{what}: no reply before the scrape deadline")


class _Connection:
    def __init__(self, sock) -> None:
        self.sock = sock
        self.used = False  # has carried an exchange before (so it may have gone stale)

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass

    def send_all(self, data: bytes, deadline: Deadline) -> None:
        view = memoryview(data)
        while view:
            try:
                sent = self.sock.send(view)
            except (BlockingIOError, ssl.SSLWantWriteError):
                _poll(self.sock, True, deadline, "sending the request")
                continue
            except ssl.SSLWantReadError:
                _poll(self.sock, False, deadline, "sending the request")
                continue
            view = view[sent:]

    def recv_into(self, view: memoryview, deadline: Deadline, what: str) -> int:
        return self._reading(lambda: self.sock.recv_into(view), deadline, what)

    def recv(self, deadline: Deadline, what: str) -> bytes:
        return self._reading(lambda: self.sock.recv(_RECV_BYTES), deadline, what)

    def _reading(self, read: Callable[[], T], deadline: Deadline, what: str) -> T:
        """``read()`` on the non-blocking socket, waiting (by the deadline) until it can."""
        while True:
            try:
                return read()
            except (BlockingIOError, ssl.SSLWantReadError):
                _poll(self.sock, False, deadline, what)
            except ssl.SSLWantWriteError:
                _poll(self.sock, True, deadline, what)

    def looks_closed(self) -> bool:
        """An idle keep-alive connection with something to read has been closed (or sent
        garbage): either way it must not carry a request."""
        poller = select.poll()
        poller.register(self.sock, select.POLLIN)
        return bool(poller.poll(0))


class _Resolver:
    """Name resolution with a deadline: ``getaddrinfo`` cannot be interrupted, so it runs in
    one background thread at a time and callers wait for it only as long as they have."""

    def __init__(self, host: str, port: int) -> None:
        self._host, self._port = host, port
        self._lock = threading.Lock()
        self._cached: list | None = None
        self._expires = 0.0
        self._pending: concurrent.futures.Future | None = None
        self._numeric = _numeric_addresses(host, port)

    def resolve(self, deadline: Deadline) -> list:
        if self._numeric is not None:
            return self._numeric
        with self._lock:
            if self._cached is not None and time.monotonic() < self._expires:
                return self._cached
            if self._pending is None:
                self._pending = concurrent.futures.Future()
                threading.Thread(target=self._lookup, args=(self._pending,),
                                 name="resolve", daemon=True).start()
            pending = self._pending
        try:
            return pending.result(timeout=max(deadline.remaining(), 0))
        except concurrent.futures.TimeoutError:
            raise HttpTimeout(f"resolving {self._host}: no answer before the scrape "
                              "deadline") from None

    def _lookup(self, future: concurrent.futures.Future) -> None:
        try:
            found = socket.getaddrinfo(self._host, self._port, type=socket.SOCK_STREAM)
        except (OSError, UnicodeError, ValueError) as err:  # UnicodeError: a label > 63 chars
            future.set_exception(HttpUnavailable(f"cannot resolve {self._host}: {err}"))
            found = None
        with self._lock:
            self._pending = None
            if found is not None:
                self._cached, self._expires = found, time.monotonic() + _RESOLVED_SECONDS
        if found is not None:
            future.set_result(found)


def _numeric_addresses(host: str, port: int) -> list | None:
    try:
        return socket.getaddrinfo(host, port, type=socket.SOCK_STREAM,
                                  flags=socket.AI_NUMERICHOST)
    except (OSError, UnicodeError, ValueError):
        return None


class HttpClient:
    """Requests against one base URL (``http://host:port`` or ``https://...``)."""

    def __init__(self, base_url: str, tls_context: ssl.SSLContext | None = None) -> None:
        url = urlsplit(base_url)
        if url.scheme not in ("http", "https") or not url.hostname:
            raise ValueError(f"not an http(s) URL: {base_url!r}")
        self._tls = url.scheme == "https"
        self._host = url.hostname
        self._port = url.port or (443 if self._tls else 80)
        host = f"[{self._host}]" if ":" in self._host else self._host
        default_port = self._port == (443 if self._tls else 80)
        self._host_header = host if default_port else f"{host}:{self._port}"
        self._context = (tls_context or ssl.create_default_context()) if self._tls else None
        self._resolver = _Resolver(self._host, self._port)
        self._lock = threading.Lock()
        self._idle: list[_Connection] = []
        self._closed = False

    def close(self) -> None:
        with self._lock:
            self._closed = True
            idle, self._idle = self._idle, []
        for connection in idle:
            connection.close()

    def request(self, method: str, path: str, deadline: Deadline, body: bytes | None = None,
                content_type: str = "application/json", max_bytes: int = 1 << 20,
                max_error_bytes: int = 64 * 1024,
                buffers: "BodyBuffers | None" = None) -> HttpReply:
        """One exchange, finished by ``deadline`` or abandoned (HttpTimeout). A 2xx body over
        ``max_bytes`` is refused (HttpTooLarge); any other body over ``max_error_bytes`` is
        cut (``truncated``). A body of known length may be received into one of ``buffers``
        (the caller gives it back when done with it)."""
        head = [f"{method} {path} HTTP/1.1", f"Host: {self._host_header}",
                f"User-Agent: tfserving-exporter/{__version__}", "Accept-Encoding: identity"]
        if body is not None:
            head += [f"Content-Type: {content_type}", f"Content-Length: {len(body)}"]
        request = ("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + (body or b"")
        # A reused connection the server has just closed fails before any reply byte; that is
        # worth one fresh try for a request that is safe to repeat, and no more.
        for attempt in (1, 2):
            connection = self._connection(deadline)
            try:
                reply, reusable = self._exchange(connection, request, method, deadline,
                                                 max_bytes, max_error_bytes, buffers)
            except _Stale:
                connection.close()
                if attempt == 1 and method in ("GET", "HEAD"):
                    continue
                raise HttpUnavailable("the server closed the connection without a reply") \
                    from None
            except BaseException:
                connection.close()
                raise
            self._release(connection, reusable)
            return reply
        raise AssertionError("unreachable")

    # ---- connections -------------------------------------------------------------------

    def _connection(self, deadline: Deadline) -> _Connection:
        with self._lock:
            if self._closed:
                # A client closed under a late caller (a forgotten fleet target's canary)
                # opens no new connection.
                raise HttpUnavailable("the client is closed")
            while self._idle:
                connection = self._idle.pop()
                if not connection.looks_closed():
                    return connection
                connection.close()
        return _Connection(self._connect(deadline))

    def _release(self, connection: _Connection, reusable: bool) -> None:
        connection.used = True
        with self._lock:
            if reusable and not self._closed and len(self._idle) < MAX_IDLE_CONNECTIONS:
                self._idle.append(connection)
                return
        connection.close()

    def _connect(self, deadline: Deadline):
        last_error = "no address"
        for family, kind, proto, _, address in self._resolver.resolve(deadline):
            sock = socket.socket(family, kind, proto)
            try:
                sock.setblocking(False)
                code = sock.connect_ex(address)
                if code in (errno.EINPROGRESS, errno.EWOULDBLOCK, errno.EAGAIN):
                    _poll(sock, True, deadline, f"connecting to {self._host_header}")
                    code = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                if code:
                    last_error = errno.errorcode.get(code, str(code))
                    sock.close()
                    continue
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                if self._context is not None:
                    sock = self._handshake(sock, deadline)
                return sock
            except HttpError:
                sock.close()
                raise
            except OSError as err:
                sock.close()
                last_error = type(err).__name__
        raise HttpUnavailable(f"cannot connect to {self._host_header}: {last_error}")

    def _handshake(self, sock, deadline: Deadline):
        wrapped = self._context.wrap_socket(sock, server_hostname=self._host,
                                            do_handshake_on_connect=False)
        try:
            while True:
                try:
                    wrapped.do_handshake()
                    return wrapped
                except ssl.SSLWantReadError:
                    _poll(wrapped, False, deadline, "TLS handshake")
                except ssl.SSLWantWriteError:
                    _poll(wrapped, True, deadline, "TLS handshake")
        except ssl.SSLError as err:
            wrapped.close()
            raise HttpUnavailable(f"TLS handshake with {self._host_header} failed: "
                                  f"{err.reason or err}") from None
        except BaseException:
            wrapped.close()  # the plain socket is detached from it: close this one
            raise

    # ---- one exchange ------------------------------------------------------------------

    def _exchange(self, connection: _Connection, request: bytes, method: str,
                  deadline: Deadline, max_bytes: int, max_error_bytes: int,
                  buffers: "BodyBuffers | None" = None) -> tuple[HttpReply, bool]:
        try:
            connection.send_all(request, deadline)
        except (BrokenPipeError, ConnectionResetError):
            if connection.used:
                raise _Stale() from None
            raise HttpUnavailable("connection reset while sending the request") from None
        except OSError as err:
            raise HttpUnavailable(f"sending the request failed: {type(err).__name__}") \
                from None
        reader = _Reader(connection, deadline, buffers)
        try:
            while True:
                status, version, headers = reader.head()
                if status != 100:
                    break
        except _Closed as closed:
            if closed.before_any_byte and connection.used:
                raise _Stale() from None
            raise HttpUnavailable("the server closed the connection without a reply") \
                from None
        except (ConnectionResetError, BrokenPipeError):
            if reader.received == 0 and connection.used:
                raise _Stale() from None
            raise HttpUnavailable("connection reset by the server") from None
        except OSError as err:
            raise HttpUnavailable(f"reading the reply failed: {type(err).__name__}") from None
        limit = max_bytes if 200 <= status < 300 else max_error_bytes
        try:
            body, framed, truncated = reader.body(method, status, headers, limit,
                                                  cut=not 200 <= status < 300)
        except _Closed:
            raise HttpBadReply("the server closed the connection in the middle of the reply") \
                from None
        except OSError as err:
            raise HttpUnavailable(f"reading the reply failed: {type(err).__name__}") from None
        keep_alive = headers.get("connection", "").lower()
        # Bytes after the reply's end are not ours to read as the next reply.
        reusable = framed and not truncated and reader.drained() and (
            "close" not in keep_alive if version == "HTTP/1.1" else "keep-alive" in keep_alive)
        return HttpReply(status, headers, body, truncated), reusable


class BodyBuffers:
    """Memory to receive bodies into, kept from one reply to the next: a page of a few MB
    read on every scrape otherwise costs a fresh mapping to fault in each time (about 2 ms for
    4 MB here). Holds at most ``count`` buffers of at most ``max_bytes`` while none is lent
    out; a larger body, or one arriving while all are lent, gets memory of its own."""

    def __init__(self, max_bytes: int, count: int = 1) -> None:
        self.max_bytes = max_bytes
        self.count = count
        self._free: list[bytearray] = []
        self._lock = threading.Lock()

    def take(self, length: int) -> bytearray:
        buffer = None
        if length <= self.max_bytes:
            with self._lock:
                buffer = self._free.pop() if self._free else None
        if buffer is None:
            return bytearray(length)
        try:
            if len(buffer) > length:
                del buffer[length:]  # keeps its memory unless it shrinks by half
            elif len(buffer) < length:
                buffer.extend(bytes(length - len(buffer)))
        except BufferError:  # a view of it is still alive somewhere: leave it be
            return bytearray(length)
        return buffer

    def give(self, buffer) -> None:
        """Take back a body from ``take`` (or any other: only bytearrays that fit are kept)."""
        if isinstance(buffer, bytearray) and len(buffer) <= self.max_bytes:
            with self._lock:
                if len(self._free) < self.count:
                    self._free.append(buffer)


class _Closed(Exception):
    def __init__(self, before_any_byte: bool) -> None:
        super().__init__("connection closed")
        self.before_any_byte = before_any_byte


class _Reader:
    """Reads one reply from a connection, never more than the caps, never past the deadline."""

    def __init__(self, connection: _Connection, deadline: Deadline,
                 buffers: "BodyBuffers | None" = None) -> None:
        self._connection = connection
        self._deadline = deadline
        self._buffers = buffers
        self._buffer = bytearray()
        self.received = 0

    def drained(self) -> bool:
        return not self._buffer

    def _fill(self, what: str) -> None:
        data = self._connection.recv(self._deadline, what)
        if not data:
            raise _Closed(self.received == 0)
        self.received += len(data)
        self._buffer += data

    def head(self) -> tuple[int, str, dict[str, str]]:
        while True:
            end = self._buffer.find(b"\r\n\r\n")
            if end != -1:
                break
            if len(self._buffer) > MAX_HEAD_BYTES:
                raise HttpBadReply(f"reply head larger than {MAX_HEAD_BYTES} bytes")
            self._fill("reading the reply head")
        if end > MAX_HEAD_BYTES:
            raise HttpBadReply(f"reply head larger than {MAX_HEAD_BYTES} bytes")
        lines = bytes(self._buffer[:end]).decode("latin-1").split("\r\n")
        del self._buffer[:end + 4]
        parts = lines[0].split(" ", 2)
        if len(parts) < 2 or parts[0] not in ("HTTP/1.0", "HTTP/1.1") \
                or not (len(parts[1]) == 3 and parts[1].isdigit() and parts[1].isascii()):
            raise HttpBadReply(f"not an HTTP reply: {lines[0][:80]!r}")
        if len(lines) - 1 > MAX_HEADERS:
            raise HttpBadReply(f"reply has more than {MAX_HEADERS} headers")
        headers: dict[str, str] = {}
        for line in lines[1:]:
            name, separator, value = line.partition(":")
            if not separator or not name or name != name.strip():
                raise HttpBadReply(f"malformed reply header: {line[:80]!r}")
            key = name.lower()
            value = value.strip()
            headers[key] = f"{headers[key]}, {value}" if key in headers else value
        return int(parts[1]), parts[0], headers

    def body(self, method: str, status: int, headers: dict[str, str], limit: int,
             cut: bool) -> tuple[bytes, bool, bool]:
        """(body, framed, truncated): ``framed`` when the reply's end was known (so the
        connection can carry another exchange)."""
        if method == "HEAD" or status in (204, 304) or 100 <= status < 200:
            return b"", True, False
        if "chunked" in headers.get("transfer-encoding", "").lower():
            return self._chunked(limit, cut)
        length_text = headers.get("content-length")
        if length_text is not None:
            if not (length_text.isascii() and length_text.isdigit()) or len(length_text) > 18:
                raise HttpBadReply(f"invalid Content-Length {length_text[:40]!r}")
            length = int(length_text)
            if length > limit:
                if not cut:
                    raise HttpTooLarge(f"reply of {length} bytes is larger than the limit "
                                       f"of {limit}")
                return self._exactly(limit), False, True
            return self._exactly(length), True, False
        return self._to_close(limit, cut)

    def _exactly(self, length: int) -> bytes:
        if len(self._buffer) < length:
            return self._received_into(length)
        if len(self._buffer) == length:  # one copy, not a slice and a copy
            body, self._buffer = bytes(self._buffer), bytearray()
            return body
        with memoryview(self._buffer) as view:
            body = bytes(view[:length])
        del self._buffer[:length]
        return body

    def _received_into(self, length: int) -> bytearray:
        """The rest of a body of known length, received straight into its final place and
        returned as it is, a bytearray (every reader of a body takes any bytes-like object):
        a multi-MB page would otherwise be copied once a read and once more at the end, and
        each copy of that size is a fresh mapping to fault in (exporter/allocator.py)."""
        body = self._buffers.take(length) if self._buffers is not None else bytearray(length)
        have = len(self._buffer)
        body[:have] = self._buffer
        self._buffer = bytearray()
        with memoryview(body) as view:
            while have < length:
                got = self._connection.recv_into(view[have:], self._deadline,
                                                 "reading the reply body")
                if not got:
                    raise _Closed(self.received == 0)
                self.received += got
                have += got
        return body

    def _to_close(self, limit: int, cut: bool) -> tuple[bytes, bool, bool]:
        while True:
            if len(self._buffer) > limit:
                if not cut:
                    raise HttpTooLarge(f"reply larger than the limit of {limit} bytes")
                return bytes(self._buffer[:limit]), False, True
            try:
                self._fill("reading the reply body")
            except _Closed:
                return bytes(self._buffer), False, False

    def _line(self) -> bytes:
        while True:
            end = self._buffer.find(b"\r\n")
            if end != -1:
                line = bytes(self._buffer[:end])
                del self._buffer[:end + 2]
                return line
            if len(self._buffer) > _MAX_CHUNK_LINE:
                raise HttpBadReply("malformed chunked reply (chunk line too long)")
            self._fill("reading the reply body")

    def _chunked(self, limit: int, cut: bool) -> tuple[bytes, bool, bool]:
        # One buffer, not a list of chunks: a reply of 1-byte chunks must cost its size, not
        # forty times that in bytes objects.
        body = bytearray()
        size = 0
        while True:
            size_text = self._line().split(b";", 1)[0].strip()
            try:
                chunk = int(size_text, 16) if size_text and len(size_text) <= 16 else -1
            except ValueError:
                chunk = -1
            if chunk < 0:
                raise HttpBadReply("malformed chunked reply (bad chunk size)")
            if chunk == 0:
                while self._line():  # trailers, up to the empty line
                    pass
                return bytes(body), True, False
            if size + chunk > limit:
                if not cut:
                    raise HttpTooLarge(f"reply larger than the limit of {limit} bytes")
                body += self._exactly(limit - size)
                return bytes(body), False, True
            body += self._exactly(chunk)
            size += chunk
            if self._line():
                raise HttpBadReply("malformed chunked reply (no CRLF after a chunk)")
