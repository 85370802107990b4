"""ServingError and its HTTP / gRPC renderings (docs/tfserving-behaviour.md §2.3, §3.3)."""

import grpc
import pytest

from tfserving_simulator.errors import (ServingError, code_number, grpc_code, http_status,
                                       truncate_grpc_message)


@pytest.mark.parametrize("code, status", [
    ("CANCELLED", 499), ("UNKNOWN", 500), ("INVALID_ARGUMENT", 400), ("DEADLINE_EXCEEDED", 504),
    ("NOT_FOUND", 404), ("ALREADY_EXISTS", 409), ("PERMISSION_DENIED", 403),
    ("RESOURCE_EXHAUSTED", 429), ("FAILED_PRECONDITION", 400), ("ABORTED", 409),
    ("OUT_OF_RANGE", 400), ("UNIMPLEMENTED", 501), ("INTERNAL", 500), ("UNAVAILABLE", 503),
    ("DATA_LOSS", 500), ("UNAUTHENTICATED", 401),
])
def test_http_status_and_grpc_code_per_tf_code(code, status):
    err = ServingError(code, "m")
    assert err.http_status == http_status(code) == status
    assert err.grpc_code is grpc_code(code) is getattr(grpc.StatusCode, code)
    assert err.grpc_code.value[0] == code_number(code)  # TF passes the number through


def test_error_keeps_code_and_message_and_rejects_non_codes():
    err = ServingError("NOT_FOUND", "Servable not found for request: Latest(m)")
    assert (err.code, err.message) == ("NOT_FOUND", "Servable not found for request: Latest(m)")
    assert str(err) == "NOT_FOUND: Servable not found for request: Latest(m)"
    for bad in ("OK", "not_found", "E404"):
        with pytest.raises(ValueError):
            ServingError(bad, "x")


def test_grpc_messages_are_truncated_after_1024_characters():
    assert truncate_grpc_message("a" * 1024) == "a" * 1024
    assert truncate_grpc_message("a" * 1025 + "b") == "a" * 1024 + "...TRUNCATED"
