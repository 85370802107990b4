"""TF Serving's REST API (``/v1/models/...``) as the exporter needs it.

Every call has a hard deadline: ``requests`` only bounds each socket read, so bodies are read
in chunks against the scrape's deadline and a size cap, and a server that trickles bytes
cannot hold a scrape hostage.
"""

from __future__ import annotations

import json
import time
from typing import Callable
from urllib.parse import quote

import requests

from exporter.tfserving.deadline import Deadline
from exporter.tfserving.types import Signature, TensorSpec, TFServingError, VersionStatus

PROTOCOL = "rest"
MAX_REPLY_BYTES = 32 * 1024 * 1024
_CHUNK = 64 * 1024

CallObserver = Callable[[str, str, float], None]


def _no_observer(protocol: str, api: str, seconds: float) -> None:
    return None


class RestReply:
    def __init__(self, status: int, content_type: str, body: bytes) -> None:
        self.status = status
        self.content_type = content_type
        self.body = body


def _bad_reply(api: str, what: str) -> TFServingError:
    return TFServingError(PROTOCOL, api, "BAD_REPLY", what, reached=True)


def _parse_json(api: str, body: bytes):
    try:
        return json.loads(body)
    except (ValueError, UnicodeDecodeError) as err:
        raise _bad_reply(api, f"reply is not valid JSON: {err}") from None
    except RecursionError:
        raise _bad_reply(api, "reply is not valid JSON: nested too deeply") from None


def parse_status_reply(body: bytes) -> list[VersionStatus]:
    """A ``GET /v1/models/<m>`` reply → version statuses; TFServingError(BAD_REPLY) when it is
    not the shape TF Serving writes."""
    api = "model_status"
    doc = _parse_json(api, body)
    items = doc.get("model_version_status") if isinstance(doc, dict) else None
    if not isinstance(items, list):
        raise _bad_reply(api, "reply has no 'model_version_status' list")
    statuses = []
    for index, item in enumerate(items):
        try:
            status = item.get("status") or {}
            statuses.append(VersionStatus(
                version=int(item["version"]),
                state=str(item["state"]),
                error_code=str(status.get("error_code", "OK")),
                error_message=str(status.get("error_message", "")),
            ))
        except (AttributeError, KeyError, TypeError, ValueError) as err:
            raise _bad_reply(api, f"model_version_status[{index}] is malformed: "
                                  f"{type(err).__name__}: {err}") from None
    return statuses


def parse_metadata_reply(body: bytes) -> dict[str, Signature]:
    """A ``GET .../metadata`` reply → signatures by name (TFServingError(BAD_REPLY) else)."""
    api = "model_metadata"
    doc = _parse_json(api, body)
    try:
        signature_defs = doc["metadata"]["signature_def"]["signature_def"]
        if not isinstance(signature_defs, dict):
            raise TypeError("signature_def is not an object")
        return {str(name): _signature_from_json(str(name), sig)
                for name, sig in signature_defs.items()}
    except (KeyError, TypeError, ValueError, AttributeError) as err:
        raise _bad_reply(api, f"metadata reply is malformed: {type(err).__name__}: {err}") \
            from None


def _error_message(body: bytes) -> str:
    try:
        parsed = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        parsed = None
    if isinstance(parsed, dict) and isinstance(parsed.get("error"), str):
        return parsed["error"]
    text = body[:200].decode("utf-8", "replace").strip()
    return text or "(empty body)"


_HTTP_TO_CODE = {400: "INVALID_ARGUMENT", 401: "UNAUTHENTICATED", 403: "PERMISSION_DENIED",
                 404: "NOT_FOUND", 409: "ABORTED", 429: "RESOURCE_EXHAUSTED", 499: "CANCELLED",
                 500: "INTERNAL", 501: "UNIMPLEMENTED", 503: "UNAVAILABLE",
                 504: "DEADLINE_EXCEEDED"}


def _http_error(api: str, reply: "RestReply") -> TFServingError:
    code = _HTTP_TO_CODE.get(reply.status, f"HTTP_{reply.status}")
    return TFServingError(PROTOCOL, api, code,
                          f"HTTP {reply.status}: {_error_message(reply.body)}", reached=True)


class RestClient:
    """A pooled HTTP session against one TF Serving REST base URL."""

    def __init__(self, base_url: str, observe: CallObserver = _no_observer,
                 session: requests.Session | None = None) -> None:
        self.base_url = base_url.rstrip("/")
        self._observe = observe
        self._session = session or requests.Session()
        self._session.trust_env = False  # never route sidecar traffic through a proxy

    def close(self) -> None:
        self._session.close()

    def request(self, api: str, method: str, path: str, deadline: Deadline,
                body: bytes | None = None, max_bytes: int = MAX_REPLY_BYTES) -> RestReply:
        """One HTTP exchange bounded by ``deadline``; transport failures raise
        TFServingError with ``reached_server`` False."""
        if deadline.expired():
            raise TFServingError(PROTOCOL, api, "DEADLINE_EXCEEDED",
                                 "no time left in this scrape", reached=False)
        started = time.monotonic()
        url = self.base_url + path
        try:
            headers = {"Content-Type": "application/json"} if body is not None else {}
            with self._session.request(method, url, data=body, headers=headers, stream=True,
                                       timeout=deadline.remaining(),
                                       allow_redirects=False) as response:
                chunks, size = [], 0
                for chunk in response.iter_content(_CHUNK):
                    size += len(chunk)
                    if size > max_bytes:
                        raise _bad_reply(api, f"reply larger than {max_bytes} bytes")
                    if deadline.expired():
                        raise TFServingError(PROTOCOL, api, "DEADLINE_EXCEEDED",
                                             f"reply from {url} not complete before the "
                                             "scrape deadline", reached=False)
                    chunks.append(chunk)
                return RestReply(response.status_code,
                                 response.headers.get("Content-Type", ""), b"".join(chunks))
        except requests.Timeout:
            raise TFServingError(PROTOCOL, api, "DEADLINE_EXCEEDED",
                                 f"no reply from {url} before the scrape deadline",
                                 reached=False) from None
        except requests.RequestException as err:
            raise TFServingError(PROTOCOL, api, "UNAVAILABLE",
                                 f"cannot reach {url}: {type(err).__name__}",
                                 reached=False) from None
        finally:
            self._observe(PROTOCOL, api, time.monotonic() - started)

    def _get_ok(self, api: str, path: str, deadline: Deadline) -> bytes:
        reply = self.request(api, "GET", path, deadline)
        if reply.status != 200:
            raise _http_error(api, reply)
        return reply.body

    def model_status(self, model: str, deadline: Deadline) -> list[VersionStatus]:
        return parse_status_reply(
            self._get_ok("model_status", f"/v1/models/{quote(model, safe='')}", deadline))

    def model_metadata(self, model: str, version: int | None,
                       deadline: Deadline) -> dict[str, Signature]:
        path = f"/v1/models/{quote(model, safe='')}"
        if version is not None:
            path += f"/versions/{int(version)}"
        return parse_metadata_reply(self._get_ok("model_metadata", path + "/metadata", deadline))

    def predict(self, model: str, version: int | None, body: bytes, deadline: Deadline,
                api: str = "predict") -> bytes:
        """POST a predict body; returns the reply body of a 200, raises TFServingError else."""
        path = f"/v1/models/{quote(model, safe='')}"
        if version is not None:
            path += f"/versions/{int(version)}"
        reply = self.request(api, "POST", path + ":predict", deadline, body=body)
        if reply.status != 200:
            raise _http_error(api, reply)
        return reply.body

    def ping(self, path: str, deadline: Deadline) -> None:
        """Prove the REST port answers. Any HTTP status will do; ``path`` should be outside
        ``/v1`` (the monitoring page) so the ping does not count as a TF Serving request, and
        HEAD spares transferring the page."""
        self.request("ping", "HEAD", path, deadline)


def _tensor_specs(tensors: dict) -> tuple[TensorSpec, ...]:
    specs = []
    for alias, info in sorted(tensors.items(), key=lambda item: str(item[0])):
        shape_doc = info.get("tensor_shape") or {}
        if shape_doc.get("unknown_rank"):
            shape = None
        else:
            shape = tuple(int(dim.get("size", 0)) for dim in shape_doc.get("dim", []))
        specs.append(TensorSpec(alias=alias, dtype=str(info.get("dtype", "DT_INVALID")),
                                shape=shape))
    return tuple(specs)


def _signature_from_json(name: str, sig: dict) -> Signature:
    return Signature(name=name, method_name=str(sig.get("method_name", "")),
                     inputs=_tensor_specs(sig.get("inputs") or {}),
                     outputs=_tensor_specs(sig.get("outputs") or {}))
