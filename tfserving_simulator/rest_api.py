"""TF Serving's ``/v1/...`` REST handler, free of any transport.

``RestApi.handle(method, path_with_query, headers, body)`` returns ``(status, headers, body)``
exactly as ``http_rest_api_handler.cc`` would produce them: URL grammar, dispatch, the order of
checks, error bodies, the request metrics of docs/tfserving-behaviour.md §5.5 and the injected faults.
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass
from urllib.parse import unquote_to_bytes

from google.protobuf import json_format

from tfserving_simulator import inference, rest_codec
from tfserving_simulator.errors import ServingError, http_status
from tfserving_simulator.rapidjson import error_body
from tfserving_wire import protos

Headers = list[tuple[str, str]]
Response = tuple[int, Headers, bytes]

# http_rest_api_util.cc; RE2 FullMatch semantics, ASCII \d.
_PREDICTION_URL = re.compile(
    r"/v1/models/([^/:]+)(?:(?:/versions/(\d+))|(?:/labels/([^/:]+)))?"
    r":(classify|regress|predict)", re.IGNORECASE | re.ASCII)
_STATUS_URL = re.compile(
    r"/v1/models(?:/([^/:]+))?(?:(?:/versions/(\d+))|(?:/labels/([^/:]+)))?(?:/(metadata))?",
    re.IGNORECASE | re.ASCII)
# http_server.cc dispatches everything that fully matches this to the REST handler.
REST_PATH = re.compile(r"/v1/.*", re.IGNORECASE | re.ASCII | re.DOTALL)

_INT64_MAX = (1 << 63) - 1
_JSON_HEADERS: Headers = [("Content-Type", "application/json")]
_CORS_HEADERS: Headers = [
    ("Access-Control-Allow-Origin", "*"),
    ("Access-Control-Allow-Methods", "POST, GET"),
    ("Access-Control-Allow-Headers", "Content-Type"),
]
# libevent's default for responses without a Content-Type of their own (the OPTIONS reply).
_LIBEVENT_DEFAULT_CONTENT_TYPE = "text/html; charset=ISO-8859-1"


@dataclass(frozen=True)
class RestApiOptions:
    timeout_in_ms: int = 30000  # --rest_api_timeout_in_ms; <= 0 means no timeout
    enable_cors: bool = False  # --rest_api_enable_cors_support


class _EarlyError(Exception):
    """Errors ``ParseModelInfo`` returns before any JSON body is written (empty body)."""

    def __init__(self, error: ServingError, route: "_Route") -> None:
        super().__init__(error.message)
        self.error = error
        self.route = route  # what was captured so far still labels the request metric


@dataclass
class _Route:
    matched: bool = False
    model_name: str = ""
    version: int | None = None
    label: str | None = None
    verb: str = ""
    subresource: str = ""


def _curl_unescape(text: str) -> str:
    # The path was decoded as latin-1 so every byte survives; %XX decoding works on bytes.
    return unquote_to_bytes(text.encode("latin-1")).decode("utf-8", "surrogateescape")


def parse_route(method: str, path: str) -> _Route:
    """``ParseModelInfo``: match the grammar, then unescape name/label and convert the version."""
    route = _Route()
    if method == "POST":
        match = _PREDICTION_URL.fullmatch(path)
    elif method == "GET":
        match = _STATUS_URL.fullmatch(path)
    else:
        match = None
    if match is None:
        return route
    route.matched = True
    name, version, label, last = (group or "" for group in match.groups())
    if method == "POST":
        route.verb = last
    else:
        route.subresource = last
    route.model_name = _curl_unescape(name) if name else ""
    if version:
        if int(version) > _INT64_MAX:
            raise _EarlyError(ServingError(
                "INVALID_ARGUMENT", f"Failed to convert version: {version} to numeric."), route)
        route.version = int(version)
    if label:
        route.label = _curl_unescape(label)
    return route


def _proto_json(message) -> str:
    """protobuf's ``MessageToJsonString`` with ``add_whitespace`` and default fields printed:
    one-space indentation, int64 as strings, enum names, a final newline."""
    as_dict = json_format.MessageToDict(message, preserving_proto_field_name=True,
                                        always_print_fields_with_no_presence=True)
    return json.dumps(as_dict, indent=1, ensure_ascii=False) + "\n"


def model_status_json(statuses) -> bytes:
    response = protos.get_model_status_pb2.GetModelStatusResponse()
    for status in statuses:
        entry = response.model_version_status.add()
        entry.version = status.version
        entry.state = protos.get_model_status_pb2.ModelVersionStatus.State.Value(status.state)
        entry.status.error_code = protos.error_codes_pb2.Code.Value(status.error_code or "OK")
        entry.status.error_message = status.error_message or ""
    return _proto_json(response).encode("utf-8", "surrogateescape")


def model_metadata_json(servable) -> bytes:
    """``ToJsonString(GetModelMetadataResponse)``: two protobuf dumps glued together by hand,
    hence the doubled ``signature_def`` key and the irregular whitespace."""
    model_spec = protos.model_pb2.ModelSpec(name=servable.name)
    model_spec.version.value = servable.version
    signature_map = inference.signature_def_map_proto(servable.signatures)
    text = ("{\n\"model_spec\":" + _proto_json(model_spec) + ",\n"
            + "\"metadata\": {" + "\"signature_def\": " + _proto_json(signature_map) + "}\n"
            + "}\n")
    return text.encode("utf-8", "surrogateescape")


class RestApi:
    """The REST handler. ``core``/``metrics``/``faults`` follow the simulator's DESIGN.md."""

    def __init__(self, core, metrics, faults, options: RestApiOptions | None = None) -> None:
        self.core = core
        self.metrics = metrics
        self.faults = faults
        self.options = options or RestApiOptions()

    # --- entry point ---

    def handle(self, method: str, path: str, headers, body: bytes) -> Response:
        """One request whose path (with query) matched ``REST_PATH``."""
        started = time.monotonic()
        if method == "OPTIONS":
            return self._preflight(headers, started)
        response_headers = list(_JSON_HEADERS)
        if self.options.enable_cors:
            response_headers += _CORS_HEADERS
        route = _Route()
        try:
            route = parse_route(method, path)
            payload = self._dispatch(method, path, route, body)
        except _EarlyError as early:
            self._record(early.route, early.error.code, None)
            return early.error.http_status, response_headers, b""
        except ServingError as err:
            self._record(route, err.code, None)
            return err.http_status, response_headers, error_body(err.message)
        self._record(route, "OK", time.monotonic() - started)
        return 200, response_headers, payload

    def _record(self, route: _Route, code: str, seconds: float | None) -> None:
        self.metrics.record_request(route.model_name, code, route.verb, "REST", seconds)

    def _preflight(self, headers, started: float) -> Response:
        origin = _header(headers, "Origin")
        response_headers = [("Content-Type", _LIBEVENT_DEFAULT_CONTENT_TYPE)]
        if self.options.enable_cors:
            response_headers += _CORS_HEADERS
        if "http://" in origin or "https://" in origin:
            self.metrics.record_request("", "OK", "", "REST", time.monotonic() - started)
            return 200, response_headers, b""
        # FAILED_PRECONDITION "Origin header is missing in CORS preflight", but no body.
        self.metrics.record_request("", "FAILED_PRECONDITION", "", "REST", None)
        return http_status("FAILED_PRECONDITION"), response_headers, b""

    def _dispatch(self, method: str, path: str, route: _Route, body: bytes) -> bytes:
        if route.matched and method == "POST":
            handler = {"predict": self._predict, "classify": self._classify,
                       "regress": self._regress}.get(route.verb)
            if handler is not None:
                return handler(route, body)
        elif route.matched and method == "GET":
            if route.subresource == "metadata":
                return self._metadata(route)
            return self._status(route)
        raise ServingError("INVALID_ARGUMENT", f"Malformed request: {method} {path}")

    # --- GET ---

    def _status(self, route: _Route) -> bytes:
        if not route.model_name:
            raise ServingError("INVALID_ARGUMENT", "Missing model name in request.")
        self.faults.before_request("rest", "status", route.model_name, route.version)
        # GetModelStatus ignores version labels (docs/tfserving-behaviour.md §3.4).
        return model_status_json(self.core.model_status(route.model_name, route.version))

    def _metadata(self, route: _Route) -> bytes:
        if not route.model_name:
            raise ServingError("INVALID_ARGUMENT", "Missing model name in request.")
        servable = self._servable(route)
        self.faults.before_request("rest", "metadata", route.model_name, servable.version)
        return model_metadata_json(servable)

    # --- POST ---

    def _servable(self, route: _Route):
        return self.core.get_servable(route.model_name, version=route.version, label=route.label)

    def _timeout_seconds(self) -> float | None:
        timeout_ms = self.options.timeout_in_ms
        return timeout_ms / 1000.0 if timeout_ms > 0 else None

    def _predict(self, route: _Route, body: bytes) -> bytes:
        found = {}

        def input_infos(signature_name: str):
            # Called by the body parser after JSON checks, so body errors win over 404s.
            found["servable"] = servable = self._servable(route)
            name = inference.signature_name_or_default(signature_name)
            if name not in servable.signatures:
                raise ServingError("INVALID_ARGUMENT",
                                   f"Serving signature name: \"{name}\" not found in signature def")
            found["signature"] = name
            return servable.signatures[name].inputs

        request = rest_codec.parse_predict_request(body, input_infos)
        servable = found["servable"]

        def run():
            self.faults.before_request("rest", "predict", route.model_name, servable.version)
            return servable.predict(found["signature"], request.inputs)

        outputs = inference.run_with_deadline(run, self._timeout_seconds())
        return rest_codec.predict_response(outputs, request.format)

    def _examples_call(self, route: _Route, body: bytes, operation: str):
        request = rest_codec.parse_examples_request(body)
        servable = self._servable(route)
        check = (inference.classification_signature if operation == "classify"
                 else inference.regression_signature)
        check(servable.signatures, request.signature_name)
        name = inference.signature_name_or_default(request.signature_name)
        call = servable.classify if operation == "classify" else servable.regress

        def run():
            self.faults.before_request("rest", operation, route.model_name, servable.version)
            return call(name, request.examples, request.context)

        return inference.run_with_deadline(run, self._timeout_seconds())

    def _classify(self, route: _Route, body: bytes) -> bytes:
        return rest_codec.classify_response(self._examples_call(route, body, "classify"))

    def _regress(self, route: _Route, body: bytes) -> bytes:
        return rest_codec.regress_response(self._examples_call(route, body, "regress"))


def _header(headers, name: str) -> str:
    """A request header from a mapping or a list of pairs (case-insensitive)."""
    if headers is None:
        return ""
    if hasattr(headers, "get") and not isinstance(headers, list):
        value = headers.get(name)
        if value is not None:
            return value
        items = headers.items()
    else:
        items = headers
    for key, value in items:
        if key.lower() == name.lower():
            return value
    return ""
