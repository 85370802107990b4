"""TF-style errors shared by every simulator module, and their HTTP / gRPC renderings."""

from __future__ import annotations

import grpc

# TF / absl status code names in enum order (their numeric values equal gRPC's).
TF_CODES = (
    "OK", "CANCELLED", "UNKNOWN", "INVALID_ARGUMENT", "DEADLINE_EXCEEDED", "NOT_FOUND",
    "ALREADY_EXISTS", "PERMISSION_DENIED", "RESOURCE_EXHAUSTED", "FAILED_PRECONDITION",
    "ABORTED", "OUT_OF_RANGE", "UNIMPLEMENTED", "INTERNAL", "UNAVAILABLE", "DATA_LOSS",
    "UNAUTHENTICATED",
)

# docs/tfserving-behaviour.md §2.3 (http_server.cc); note FAILED_PRECONDITION is 400, not 412.
_HTTP_STATUS = {
    "OK": 200, "CANCELLED": 499, "UNKNOWN": 500, "INVALID_ARGUMENT": 400,
    "DEADLINE_EXCEEDED": 504, "NOT_FOUND": 404, "ALREADY_EXISTS": 409,
    "PERMISSION_DENIED": 403, "RESOURCE_EXHAUSTED": 429, "FAILED_PRECONDITION": 400,
    "ABORTED": 409, "OUT_OF_RANGE": 400, "UNIMPLEMENTED": 501, "INTERNAL": 500,
    "UNAVAILABLE": 503, "DATA_LOSS": 500, "UNAUTHENTICATED": 401,
}

GRPC_MESSAGE_LIMIT = 1024
_TRUNCATION_SUFFIX = "...TRUNCATED"


class ServingError(Exception):
    """A failed TF Serving operation: a TF error code name (``"NOT_FOUND"``) and its message."""

    def __init__(self, code: str, message: str) -> None:
        if code not in _HTTP_STATUS or code == "OK":
            raise ValueError(f"not a TF error code name: {code!r}")
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message

    @property
    def http_status(self) -> int:
        return http_status(self.code)

    @property
    def grpc_code(self) -> grpc.StatusCode:
        return grpc_code(self.code)

    def __repr__(self) -> str:
        return f"ServingError({self.code!r}, {self.message!r})"


def http_status(code: str) -> int:
    """HTTP status TF Serving's REST server answers for a TF code name."""
    return _HTTP_STATUS[code]


def grpc_code(code: str) -> grpc.StatusCode:
    """The gRPC status code with the same name (and number) as a TF code."""
    return grpc.StatusCode[code]


def code_number(code: str) -> int:
    """The numeric value of a TF code name (``tensorflow.error.Code``)."""
    return TF_CODES.index(code)


def truncate_grpc_message(message: str) -> str:
    """Cut messages longer than 1024 characters the way ``grpc_status_util.cc`` does."""
    if len(message) <= GRPC_MESSAGE_LIMIT:
        return message
    return message[:GRPC_MESSAGE_LIMIT] + _TRUNCATION_SUFFIX


def check_json_object(raw: object, known: frozenset[str] | set[str], what: str) -> dict:
    """``raw`` when it is a JSON object whose keys are all ``known``; else ValueError saying
    what is wrong. For the simulator's own files (fault rules, simulator_model.json)."""
    if not isinstance(raw, dict):
        raise ValueError(f"{what} must be a JSON object")
    unknown = set(raw) - set(known)
    if unknown:
        raise ValueError(f"unknown keys {sorted(unknown)}; known: {sorted(known)}")
    return raw
