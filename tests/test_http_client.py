"""The REST transport: one deadline for the whole exchange, capped replies, keep-alive, TLS."""

from __future__ import annotations

import socket
import ssl
import threading
import time

import pytest

from exporter.tfserving.deadline import Deadline
from exporter.tfserving.http_client import (MAX_HEAD_BYTES, HttpBadReply, HttpClient,
                                            HttpTimeout, HttpTooLarge, HttpUnavailable)
from exporter.tfserving.rest_client import RestClient
from exporter.tfserving.types import TFServingError
from tests.hostile_fakes import Drip, Hang, RawHttpServer, Raw, Reply, Reset, Stream
from tests.test_web_security import pki  # noqa: F401 - the certificates fixture


@pytest.fixture
def server():
    fake = RawHttpServer()
    yield fake
    fake.close()


@pytest.fixture
def client(server):
    http = HttpClient(server.url)
    yield http
    http.close()


@pytest.mark.parametrize("reply, body", [
    (Raw(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello"), b"hello"),
    (Raw(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
         b"3;ext=1\r\nhel\r\n2\r\nlo\r\n0\r\nTrailer: x\r\n\r\n"), b"hello"),
    (Raw(b"HTTP/1.0 200 OK\r\n\r\nhello"), b"hello"),  # to the end of the connection
    (Raw(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"), b"ok"),
])
def test_bodies_of_every_framing_are_read(server, client, reply, body):
    server.route("/", reply)
    assert client.request("GET", "/x", Deadline.after(5)).body == body


def test_a_reply_of_tiny_chunks_costs_its_size_not_forty_times_it(server, client):
    import tracemalloc

    body = b"x" * (512 * 1024)
    chunks = b"".join(b"1\r\n" + body[i:i + 1] + b"\r\n" for i in range(len(body)))
    server.route("/", Raw(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                          + chunks + b"0\r\n\r\n"))
    tracemalloc.start()
    try:
        reply = client.request("GET", "/", Deadline.after(30), max_bytes=1 << 20)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert reply.body == body
    assert peak < 6 * len(body), f"{peak} bytes at peak for a {len(body)}-byte reply"


def test_headers_are_case_insensitive_and_joined(server, client):
    server.route("/", Raw(b"HTTP/1.1 204 No Content\r\nX-A: 1\r\nx-a: 2\r\n"
                          b"Content-Type: text/plain\r\n\r\n"))
    reply = client.request("GET", "/", Deadline.after(5))
    assert (reply.status, reply.headers["x-a"], reply.body) == (204, "1, 2", b"")


def test_a_dripping_reply_ends_at_the_deadline_not_per_read(server, client):
    server.route("/", Drip(b"x" * 10_000, every=0.02))
    started = time.monotonic()
    with pytest.raises(HttpTimeout):
        client.request("GET", "/", Deadline.after(0.5))
    assert time.monotonic() - started < 0.8


@pytest.mark.parametrize("behaviour", [Hang(), Drip(b"", every=1.0)])
def test_a_silent_server_ends_at_the_deadline(server, client, behaviour):
    server.route("/", behaviour)
    started = time.monotonic()
    with pytest.raises(HttpTimeout):
        client.request("GET", "/", Deadline.after(0.3))
    assert time.monotonic() - started < 0.6


@pytest.mark.parametrize("reply, error, message", [
    (Stream(b"x" * 65536, length=100 << 20), HttpTooLarge, "larger than the limit"),
    (Stream(b"x" * 65536), HttpTooLarge, "larger than the limit"),
    (Raw(b"HTTP/1.1 200 OK\r\n" + b"X: y\r\n" * 101 + b"\r\n"), HttpBadReply, "headers"),
    (Raw(b"HTTP/1.1 200 OK\r\nX: " + b"y" * MAX_HEAD_BYTES + b"\r\n\r\n"), HttpBadReply,
     "head larger"),
    (Raw(b"SSH-2.0-OpenSSH\r\n\r\n"), HttpBadReply, "not an HTTP reply"),
    (Raw(b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n"), HttpBadReply, "Content-Length"),
    (Raw(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n"), HttpBadReply,
     "chunk size"),
    (Raw(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc"), HttpBadReply, "middle"),
    (Raw(b"HTTP/1.1 200 OK\r\nBroken header\r\n\r\n"), HttpBadReply, "malformed"),
])
def test_bad_or_oversized_replies_name_the_problem(server, client, reply, error, message):
    server.route("/", reply)
    with pytest.raises(error, match=message):
        client.request("GET", "/", Deadline.after(5), max_bytes=1 << 20)


def test_an_oversized_error_body_is_cut_not_refused(server, client):
    server.route("/", Stream(b"e" * 65536, length=10 << 20, status=500))
    reply = client.request("GET", "/", Deadline.after(5), max_error_bytes=1000)
    assert (reply.status, len(reply.body), reply.truncated) == (500, 1000, True)


def test_connections_are_kept_alive_and_a_stale_one_is_replaced(server, client):
    server.route("/", Reply(b"ok"))
    for _ in range(3):
        assert client.request("GET", "/", Deadline.after(5)).body == b"ok"
    assert server.accepted == 1
    server.route("/", Raw(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok"))
    assert client.request("GET", "/", Deadline.after(5)).body == b"ok"
    server.route("/", Reply(b"again"))
    assert client.request("GET", "/", Deadline.after(5)).body == b"again"
    assert server.accepted == 2  # the closed connection was not reused


def test_a_connection_reset_is_unavailable(server, client):
    server.route("/", Reset())
    with pytest.raises(HttpUnavailable):
        client.request("GET", "/", Deadline.after(5))


def test_nothing_listening_is_unavailable_at_once():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    client = HttpClient(f"http://127.0.0.1:{port}")
    started = time.monotonic()
    with pytest.raises(HttpUnavailable):
        client.request("GET", "/", Deadline.after(5))
    assert time.monotonic() - started < 1


def test_rest_client_maps_transport_failures_to_tf_serving_errors(server):
    client = RestClient(server.url)
    server.route("/v1/models/m", Hang())
    with pytest.raises(TFServingError) as hung:
        client.model_status("m", Deadline.after(0.2))
    assert (hung.value.code, hung.value.reached_server) == ("DEADLINE_EXCEEDED", False)
    server.route("/v1/models/m", Stream(b" " * 65536, length=50 << 20))
    with pytest.raises(TFServingError) as big:
        client.model_status("m", Deadline.after(5))
    assert (big.value.code, big.value.reached_server) == ("BAD_REPLY", True)
    server.route("/v1/models/m", Stream(b"x" * 65536, length=10 << 20, status=500))
    with pytest.raises(TFServingError) as failed:
        client.model_status("m", Deadline.after(5))
    assert failed.value.code == "INTERNAL" and len(str(failed.value)) < 1200
    client.close()


def test_https_verifies_the_server_certificate(pki):  # noqa: F811
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(pki / "server.crt", pki / "server.key")
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]

    def serve_one() -> None:
        connection, _ = listener.accept()
        try:
            with context.wrap_socket(connection, server_side=True) as tls:
                tls.recv(65536)
                tls.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 6\r\nConnection: close"
                            b"\r\n\r\nsecure")
        except ssl.SSLError:
            connection.close()  # the client refused our certificate: what the test wants

    for trusted in (True, False):
        thread = threading.Thread(target=serve_one, daemon=True)
        thread.start()
        client_context = ssl.create_default_context(
            cafile=str(pki / "ca.crt") if trusted else None)
        client = HttpClient(f"https://127.0.0.1:{port}", tls_context=client_context)
        if trusted:
            assert client.request("GET", "/", Deadline.after(5)).body == b"secure"
        else:
            with pytest.raises(HttpUnavailable, match="TLS handshake"):
                client.request("GET", "/", Deadline.after(5))
        client.close()
        thread.join(timeout=5)
    listener.close()


def test_body_buffers_lend_kept_memory_and_bound_what_they_keep():
    from exporter.tfserving.http_client import BodyBuffers

    buffers = BodyBuffers(max_bytes=1000, count=1)
    first = buffers.take(600)
    assert isinstance(first, bytearray) and len(first) == 600
    buffers.give(first)
    again = buffers.take(590)  # the same memory, cut to the new length
    assert again is first and len(again) == 590
    other = buffers.take(590)  # lent out already: memory of its own
    assert other is not first
    buffers.give(again)
    buffers.give(other)  # one kept at most
    assert buffers.take(10) is again and buffers.take(10) is not other
    big = buffers.take(5000)  # over max_bytes: never kept
    buffers.give(big)
    assert buffers.take(5000) is not big
    held = buffers.take(100)
    buffers.give(held)
    view = memoryview(held)  # a view still alive: the buffer cannot be resized, so not used
    assert buffers.take(50) is not held
    view.release()
