"""Writing HTTP/1.1 responses with a total send deadline: the WSGI start_response and write
of one response and its framing, and the short plain-text answers the server gives itself.

The limits (send timeout, largest send) are arguments: exporter.http_server keeps every limit
of the HTTP side in one place.
"""

from __future__ import annotations

import re
import ssl
import time
from email.utils import formatdate

from exporter.http_request import _BAD_VALUE_CHARS, _TOKEN, _Request

_STATUS = re.compile(r"[1-5]\d\d [^\r\n]*")
_CLIENT_ERRORS = (OSError, ssl.SSLError, ValueError)  # ValueError: I/O on a closed socket


class _ClientGone(Exception):
    """Sending to the client failed or timed out: routine, logged at debug."""


def _simple_response(status: str, body: bytes, close: bool = True) -> bytes:
    head = (f"HTTP/1.1 {status}\r\nContent-Type: text/plain; charset=utf-8\r\n"
            f"Content-Length: {len(body)}\r\nDate: {formatdate(usegmt=True)}\r\n")
    if close:
        head += "Connection: close\r\n"
    return head.encode("latin-1") + b"\r\n" + body


def _send_all(sock, data, deadline: float, send_bytes: int) -> None:
    """Send everything by ``deadline`` (monotonic) in total, or raise _ClientGone."""
    view = memoryview(data)
    while view:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise _ClientGone("send timed out")
        try:
            sock.settimeout(remaining)
            sent = sock.send(view[:send_bytes])
        except _CLIENT_ERRORS as err:
            raise _ClientGone(repr(err)) from err
        view = view[sent:]


class _Response:
    """start_response, write() and the framing of one response."""

    def __init__(self, sock, request: _Request, send_timeout: float, send_bytes: int,
                 may_keep_alive: bool) -> None:
        self.sock = sock
        self.request = request
        self.send_timeout = send_timeout
        self.send_bytes = send_bytes
        self.may_keep_alive = may_keep_alive
        self.status: str | None = None
        self.headers: list[tuple[str, str]] = []
        self.headers_sent = False
        self.keep_alive = False
        self.length: int | None = None
        self.sent_body = 0
        self.deadline: float | None = None

    def start_response(self, status, headers, exc_info=None):
        if exc_info is not None:
            try:
                if self.headers_sent:
                    raise exc_info[1].with_traceback(exc_info[2])
            finally:
                exc_info = None
        elif self.status is not None:
            raise AssertionError("start_response() called twice without exc_info")
        if not isinstance(status, str) or not _STATUS.fullmatch(status):
            raise ValueError(f"invalid WSGI status {status!r}")
        checked = []
        for name, value in headers:
            if not isinstance(name, str) or not isinstance(value, str) \
                    or not _TOKEN.fullmatch(name) or _BAD_VALUE_CHARS.search(value):
                raise ValueError(f"invalid response header {name!r}")
            checked.append((name, value))
        self.status, self.headers = status, checked
        return self.write

    def header(self, name: str) -> str | None:
        lower = name.lower()
        for key, value in self.headers:
            if key.lower() == lower:
                return value
        return None

    def _send(self, data) -> None:
        if self.deadline is None:
            self.deadline = time.monotonic() + self.send_timeout
        _send_all(self.sock, data, self.deadline, self.send_bytes)

    def _head(self) -> bytes:
        if self.status is None:
            raise AssertionError("the app returned without calling start_response()")
        length = self.header("Content-Length")
        if length is not None:
            if not length.isdigit() or not length.isascii():
                raise ValueError(f"invalid Content-Length {length!r} from the app")
            self.length = int(length)
        app_connection = (self.header("Connection") or "").lower()
        framed = self.length is not None or self.request.method == "HEAD"
        self.keep_alive = (self.may_keep_alive and framed and "close" not in app_connection)
        lines = [f"HTTP/1.1 {self.status}"]
        lines.extend(f"{name}: {value}" for name, value in self.headers
                     if name.lower() not in ("connection", "keep-alive"))
        if self.header("Date") is None:
            lines.append(f"Date: {formatdate(usegmt=True)}")
        if not self.keep_alive:
            lines.append("Connection: close")
        elif self.request.version == "HTTP/1.0":
            lines.append("Connection: keep-alive")
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")

    def write(self, data) -> None:
        if not isinstance(data, (bytes, bytearray)):
            raise TypeError(f"the app must yield bytes, not {type(data).__name__}")
        if self.request.method == "HEAD":
            data = b""
        # Never send more than the Content-Length said: the rest would be read as the next
        # response. (self.length is known once the head is built.)
        if not self.headers_sent:
            head = self._head()
            if self.length is not None and len(data) > self.length:
                data, self.keep_alive = data[:self.length], False
            self.headers_sent = True
            self.sent_body += len(data)
            if len(data) <= self.send_bytes:
                self._send(head + bytes(data))  # one segment for the usual small reply
            else:
                self._send(head)  # no copy of a large body
                self._send(data)
            return
        if self.length is not None and self.sent_body + len(data) > self.length:
            data, self.keep_alive = data[:max(0, self.length - self.sent_body)], False
        if data:
            self.sent_body += len(data)
            self._send(data)

    def finish(self) -> None:
        if not self.headers_sent:
            self.write(b"")
        if self.request.method != "HEAD" and self.length is not None \
                and self.sent_body < self.length:
            self.keep_alive = False  # the client will see a short body and a closed connection
