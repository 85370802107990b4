"""Parsing and checking an HTTP/1.1 request head, and the WSGI environ built from it.

No I/O here: exporter.http_server's loop finds where a head ends and passes its bytes to
parse_head; a handler thread builds the environ with wsgi_environ before it runs the app.
"""

from __future__ import annotations

import io
import re
import sys
from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_TARGET = re.compile(r"[\x21-\x7e\x80-\xff]+")
_VERSION = re.compile(r"HTTP/(\d)\.(\d)")
_BAD_VALUE_CHARS = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")


class _BadRequest(Exception):
    def __init__(self, status: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass(slots=True)
class _Request:
    method: str
    target: str
    version: str
    headers: list
    content_length: int | None
    expect_continue: bool
    keep_alive: bool
    head_end: int = 0  # where the head ends in the connection's buffer
    body: bytes = b""
    body_unread: bool = False
    received: float = 0.0  # monotonic time it was handed to the handler threads


def parse_head(head: bytes) -> _Request:
    """Parse a request head (without its blank line); raise _BadRequest."""
    text = head.decode("latin-1")
    lines = re.split(r"\r?\n", text)
    parts = lines[0].split(" ")
    if len(parts) != 3:
        raise _BadRequest("400 Bad Request", "malformed request line")
    method, target, version = parts
    if not _TOKEN.fullmatch(method) or not _TARGET.fullmatch(target):
        raise _BadRequest("400 Bad Request", "malformed request line")
    match = _VERSION.fullmatch(version)
    if match is None:
        raise _BadRequest("400 Bad Request", "malformed request line")
    if match.group(1) != "1":
        raise _BadRequest("505 HTTP Version Not Supported", "only HTTP/1.x is supported")
    headers = []
    for line in lines[1:]:
        if line[:1] in (" ", "\t"):
            raise _BadRequest("400 Bad Request", "folded header lines are not allowed")
        name, colon, value = line.partition(":")
        value = value.strip(" \t")
        if not colon or not _TOKEN.fullmatch(name) or _BAD_VALUE_CHARS.search(value):
            raise _BadRequest("400 Bad Request", "malformed header line")
        headers.append((name, value))
    lengths = set()
    connection: set[str] = set()
    expect_continue = False
    for name, value in headers:
        lower = name.lower()
        if lower == "content-length":
            lengths.update(part.strip(" \t") for part in value.split(","))
        elif lower == "transfer-encoding":
            raise _BadRequest("411 Length Required",
                              "chunked request bodies are not supported; send Content-Length")
        elif lower == "connection":
            connection.update(token.strip(" \t").lower() for token in value.split(","))
        elif lower == "expect" and value.lower() == "100-continue":
            expect_continue = True
    content_length = None
    if lengths:
        length = next(iter(lengths))
        # At most 18 digits: int() of a longer digit string can fail (Python caps it at
        # 4,300 digits) and no body we take is near 10^18 bytes anyway.
        if len(lengths) != 1 or not length.isdigit() or not length.isascii() \
                or len(length) > 18:
            raise _BadRequest("400 Bad Request", "invalid Content-Length")
        content_length = int(length)
    if match.group(2) == "0":
        keep_alive = "keep-alive" in connection
    else:
        keep_alive = "close" not in connection
    return _Request(method, target, version, headers, content_length, expect_continue,
                    keep_alive)


RECEIVED = "tfserving_exporter.received"  # environ key: monotonic time of the whole request


def wsgi_environ(request: _Request, addr, tls: bool, server_name: str, server_port: str) -> dict:
    target = request.target
    if target.startswith(("http://", "https://")):  # absolute-form (RFC 9112 3.2.2)
        parts = urlsplit(target)
        path, query = parts.path or "/", parts.query
    else:
        path, _, query = target.partition("?")
        path = path.partition("#")[0]
        query = query.partition("#")[0]
    environ = {
        "REQUEST_METHOD": request.method,
        "SCRIPT_NAME": "",
        "PATH_INFO": unquote(path, "latin-1"),
        "QUERY_STRING": query,
        "SERVER_NAME": server_name,
        "SERVER_PORT": server_port,
        "SERVER_PROTOCOL": request.version,
        "REMOTE_ADDR": str(addr[0]) if isinstance(addr, tuple) else "",
        "REMOTE_PORT": str(addr[1]) if isinstance(addr, tuple) else "",
        "CONTENT_TYPE": "text/plain",
        "wsgi.version": (1, 0),
        "wsgi.url_scheme": "https" if tls else "http",
        "wsgi.input": io.BytesIO(request.body),
        "wsgi.errors": sys.stderr,
        "wsgi.multithread": True,
        "wsgi.multiprocess": False,
        "wsgi.run_once": False,
        # When the request was complete: a deadline counts from here, not from when a
        # handler thread got to it.
        RECEIVED: request.received,
    }
    if request.content_length is not None:
        environ["CONTENT_LENGTH"] = str(request.content_length)
    for name, value in request.headers:
        lower = name.lower()
        if lower == "content-type":
            environ["CONTENT_TYPE"] = value
            continue
        if lower == "content-length" or "_" in name:
            continue  # "_" would let X_Forwarded_For pass for X-Forwarded-For
        key = "HTTP_" + name.upper().replace("-", "_")
        environ[key] = environ[key] + "," + value if key in environ else value
    return environ
