"""Protocol-neutral views of what TF Serving reports, shared by the gRPC and REST clients."""

from __future__ import annotations

from dataclasses import dataclass

# The signature TF Serving uses when a request names none.
DEFAULT_SIGNATURE = "serving_default"

# ModelVersionStatus.State names, in lifecycle order (UNKNOWN is never produced by the server).
VERSION_STATES = ("START", "LOADING", "AVAILABLE", "UNLOADING", "END")

# Error codes that mean "TF Serving answered": anything else is a transport-level failure.
_UNREACHABLE_CODES = frozenset({"UNAVAILABLE", "DEADLINE_EXCEEDED", "CONNECTION", "TIMEOUT"})


@dataclass(frozen=True)
class VersionStatus:
    version: int
    state: str
    error_code: str = "OK"
    error_message: str = ""


@dataclass(frozen=True)
class TensorSpec:
    alias: str
    dtype: str  # TF enum name, e.g. "DT_FLOAT"
    shape: tuple[int, ...] | None  # None = unknown rank


@dataclass(frozen=True)
class Signature:
    name: str
    method_name: str
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]


class TFServingError(Exception):
    """A call to TF Serving failed. ``code`` is a TF/gRPC code name (``NOT_FOUND``), or
    ``BAD_REPLY`` when TF Serving answered with something we cannot parse."""

    def __init__(self, protocol: str, operation: str, code: str, message: str,
                 reached: bool | None = None) -> None:
        super().__init__(f"{protocol} {operation}: {code}: {message}")
        self.protocol = protocol
        self.operation = operation
        self.code = code
        self.message = message
        self._reached = reached

    @property
    def reached_server(self) -> bool:
        """True when the failure is an answer from TF Serving rather than silence."""
        if self._reached is not None:
            return self._reached
        return self.code not in _UNREACHABLE_CODES
