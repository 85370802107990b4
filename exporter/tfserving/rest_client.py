"""TF Serving's REST API (``/v1/models/...``) as the exporter needs it.

Every call has a hard deadline and a size budget: the transport (``http_client``) ends each
exchange by the scrape's deadline however the server trickles bytes, and each kind of reply
has its own cap, chosen so that what is parsed from it also stays small.
"""

from __future__ import annotations

import json
import time
from typing import Callable
from urllib.parse import quote

from exporter.tfserving import http_client
from exporter.tfserving.deadline import Deadline
from exporter.tfserving.types import (SignatureMap, TensorSpec, TFServingError,
                                      convert_signatures, first_names, parse_version)
from tfserving_wire.model_status import VersionStatus

PROTOCOL = "rest"
# Per kind of reply. A real status reply is a few hundred bytes per version; a metadata reply
# a few KiB per signature; JSON parsed into Python objects takes 10-20 times its size, so
# these keep a hostile reply's parse to tens of MiB at most.
STATUS_MAX_BYTES = 1 << 20
METADATA_MAX_BYTES = 4 << 20
# TF Serving's monitoring page, unless collectors.native.max_page_size says otherwise: about
# 10 KiB a loaded version plus 8 KiB a model and API (3.9 MB at 100 models x 3 versions).
METRICS_PAGE_MAX_BYTES = 16 << 20
PREDICT_MAX_BYTES = 16 << 20
# Error replies are cut, not refused: the message is all we keep, and it is clipped further.
ERROR_MAX_BYTES = 64 << 10

CallObserver = Callable[[str, str, float], None]


def _no_observer(protocol: str, api: str, seconds: float) -> None:
    return None


class RestReply:
    def __init__(self, status: int, content_type: str, body: bytes) -> None:
        self.status = status
        self.content_type = content_type
        self.body = body


class ReplyTooLarge(TFServingError):
    """TF Serving's reply is over the size budget of its kind (a BAD_REPLY)."""


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
                version=parse_version(item["version"]),
                state=str(item["state"]),
                error_code=str(status.get("error_code", "OK")),
                error_message=str(status.get("error_message", "")),
            ))
        except (AttributeError, KeyError, TypeError, ValueError) as err:
            raise _bad_reply(api, f"model_version_status[{index}] is malformed: "
                                  f"{type(err).__name__}: {err}") from None
    return statuses


def parse_metadata_reply(body: bytes) -> SignatureMap:
    """A ``GET .../metadata`` reply → signatures by name (TFServingError(BAD_REPLY) else),
    within the reply ceilings of ``types``."""
    api = "model_metadata"
    doc = _parse_json(api, body)
    try:
        signature_defs = doc["metadata"]["signature_def"]["signature_def"]
        if not isinstance(signature_defs, dict):
            raise TypeError("signature_def is not an object")
        return convert_signatures(signature_defs, _signature_parts)
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
    """Calls against one TF Serving REST base URL, over kept-alive connections."""

    def __init__(self, base_url: str, observe: CallObserver = _no_observer) -> None:
        self.base_url = base_url.rstrip("/")
        self._observe = observe
        self._http = http_client.HttpClient(self.base_url)

    def close(self) -> None:
        self._http.close()

    def request(self, api: str, method: str, path: str, deadline: Deadline,
                body: bytes | None = None, max_bytes: int = PREDICT_MAX_BYTES,
                buffers: http_client.BodyBuffers | None = None) -> RestReply:
        """One HTTP exchange bounded by ``deadline``; transport failures raise
        TFServingError with ``reached_server`` False, a reply over ``max_bytes`` (or not
        HTTP) raises BAD_REPLY. ``buffers``: see ``HttpClient.request``."""
        if deadline.expired():
            raise TFServingError(PROTOCOL, api, "DEADLINE_EXCEEDED",
                                 "no time left in this scrape", reached=False)
        started = time.monotonic()
        url = self.base_url + path
        try:
            reply = self._http.request(method, path, deadline, body=body, max_bytes=max_bytes,
                                       max_error_bytes=ERROR_MAX_BYTES, buffers=buffers)
            return RestReply(reply.status, reply.headers.get("content-type", ""), reply.body)
        except http_client.HttpTimeout as err:
            raise TFServingError(PROTOCOL, api, "DEADLINE_EXCEEDED", f"{url}: {err}",
                                 reached=False) from None
        except http_client.HttpTooLarge as err:
            raise ReplyTooLarge(PROTOCOL, api, "BAD_REPLY", f"{url}: {err}",
                                reached=True) from None
        except http_client.HttpBadReply as err:
            raise _bad_reply(api, f"{url}: {err}") from None
        except http_client.HttpError as err:
            raise TFServingError(PROTOCOL, api, "UNAVAILABLE", f"cannot reach {url}: {err}",
                                 reached=False) from None
        finally:
            self._observe(PROTOCOL, api, time.monotonic() - started)

    def _get_ok(self, api: str, path: str, deadline: Deadline, max_bytes: int) -> bytes:
        reply = self.request(api, "GET", path, deadline, max_bytes=max_bytes)
        if reply.status != 200:
            raise _http_error(api, reply)
        return reply.body

    def model_status(self, model: str, deadline: Deadline) -> list[VersionStatus]:
        return parse_status_reply(
            self._get_ok("model_status", f"/v1/models/{quote(model, safe='')}", deadline,
                         STATUS_MAX_BYTES))

    def model_metadata(self, model: str, version: int | None,
                       deadline: Deadline) -> SignatureMap:
        path = f"/v1/models/{quote(model, safe='')}"
        if version is not None:
            path += f"/versions/{int(version)}"
        return parse_metadata_reply(self._get_ok("model_metadata", path + "/metadata", deadline,
                                                 METADATA_MAX_BYTES))

    def predict(self, model: str, version: int | None, body: bytes, deadline: Deadline,
                api: str = "predict") -> bytes:
        """POST a predict body; returns the reply body of a 200, raises TFServingError else."""
        path = f"/v1/models/{quote(model, safe='')}"
        if version is not None:
            path += f"/versions/{int(version)}"
        reply = self.request(api, "POST", path + ":predict", deadline, body=body,
                             max_bytes=PREDICT_MAX_BYTES)
        if reply.status != 200:
            raise _http_error(api, reply)
        return reply.body

    def ping(self, path: str, deadline: Deadline) -> None:
        """Prove the REST port answers. Any HTTP status will do; ``path`` should be outside
        ``/v1`` (the monitoring page) so the ping does not count as a TF Serving request, and
        HEAD spares transferring the page."""
        self.request("ping", "HEAD", path, deadline)


def _tensor_specs(tensors: dict, budget: int) -> tuple[tuple[TensorSpec, ...], int]:
    if not isinstance(tensors, dict):
        raise TypeError("inputs and outputs must be objects")
    specs = []
    for alias in first_names(tensors, budget):
        info = tensors[alias]
        shape_doc = info.get("tensor_shape") or {}
        if shape_doc.get("unknown_rank"):
            shape = None
        else:
            shape = tuple(int(dim.get("size", 0)) for dim in shape_doc.get("dim", []))
        specs.append(TensorSpec(alias=str(alias), dtype=str(info.get("dtype", "DT_INVALID")),
                                shape=shape))
    return tuple(specs), len(tensors) - len(specs)


def _signature_parts(sig: dict, budget: int):
    inputs, left_in = _tensor_specs(sig.get("inputs") or {}, budget)
    outputs, left_out = _tensor_specs(sig.get("outputs") or {}, budget - len(inputs))
    return str(sig.get("method_name", "")), inputs, outputs, left_in + left_out
