"""What GetModelStatus says about one version, as both TF Serving's APIs carry it.

``get_model_status.proto``: a ModelVersionStatus holds a version, a State and a StatusProto
(error code name, message). The REST status reply (``/v1/models/<name>``) carries the same
fields as JSON, so the simulator serves and the exporter reads this one shape.
"""

from __future__ import annotations

from dataclasses import dataclass

# ModelVersionStatus.State names, in lifecycle order (UNKNOWN is never produced by the server).
START, LOADING, AVAILABLE, UNLOADING, END = "START", "LOADING", "AVAILABLE", "UNLOADING", "END"
VERSION_STATES = (START, LOADING, AVAILABLE, UNLOADING, END)

# The signature TF Serving uses when a request names none.
DEFAULT_SIGNATURE = "serving_default"


@dataclass(frozen=True)
class VersionStatus:
    """One entry of GetModelStatus: version, state name, TF error code name and message."""

    version: int
    state: str
    error_code: str = "OK"
    error_message: str = ""
