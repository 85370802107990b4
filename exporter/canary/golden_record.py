"""``tfserving-exporter golden record``: ask a live model, write its answers as a golden set."""

from __future__ import annotations

import dataclasses
import datetime
import json

import numpy as np

from exporter import __version__
from exporter.canary.compare import predicted_classes, rows_text
from exporter.canary.golden import (GoldenError, GoldenSet, Provenance, SchemaError, Tolerance,
                                    golden_document, merge_requests, parse_rest_predict_reply)
from exporter.canary.golden_calibrate import calibrate, calibrated_tolerances
from exporter.canary.golden_validate import validate_document
from exporter.canary.golden_write import json_round_trip
from exporter.canary.json_arrays import dumps_compact
from exporter.canary.probe import join_batches
from exporter.canary.request_json import parse_request
from exporter.tfserving.deadline import Deadline
from exporter.tfserving.loaded_versions import available_versions
from exporter.tfserving.types import TFServingError
from tfserving_wire.model_status import DEFAULT_SIGNATURE


def read_requests(path: str) -> list[dict]:
    """Request bodies from a file: one JSON object, a JSON array of them, or JSON Lines."""
    try:
        with open(path, encoding="utf-8") as handle:
            text = handle.read()
    except (OSError, UnicodeDecodeError) as err:
        raise GoldenError([f"{path}: cannot read requests: {err}"]) from None
    try:
        document = json.loads(text)
        requests = document if isinstance(document, list) else [document]
    except json.JSONDecodeError as whole_error:
        requests = []
        for number, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                requests.append(json.loads(line))
            except json.JSONDecodeError:
                raise GoldenError([f"{path}: not JSON, a JSON array or JSON Lines: "
                                   f"{whole_error} (line {number} is not JSON either)"]) from None
    bad = [index for index, request in enumerate(requests) if not isinstance(request, dict)]
    if bad or not requests:
        raise GoldenError([f"{path}: expected TF Serving predict request objects"
                           + (f"; item {bad[0]} is not an object" if bad else "; found none")])
    return requests


def _serving_version(client, model: str, deadline: Deadline) -> int:
    available = available_versions(client.model_status(model, deadline))
    if not available:
        raise GoldenError([f"model {model!r} has no AVAILABLE version to record"])
    return available[0]


def _answers(client, protocol: str, model: str, version: int, signature_name: str, parsed,
             inputs, aliases: list[str], batch_size: int, deadline: Deadline) -> dict:
    """Each output's answers, one array per batch."""
    parts: dict[str, list] = {alias: [] for alias in aliases}
    for start in range(0, parsed.n_examples, batch_size):
        stop = min(start + batch_size, parsed.n_examples)
        if protocol == "grpc":
            outputs, answered = client.predict(model, version, signature_name,
                                               parsed.tensors(start, stop, inputs), aliases,
                                               deadline, api="record")
            if answered != version:
                raise GoldenError([f"asked version {version}, answered by version {answered}"])
        else:
            # dumps_compact: b64 inputs are bytes here, and go back as {"b64": ...}
            body = dumps_compact(parsed.body(start, stop, signature_name)).encode()
            outputs = parse_rest_predict_reply(client.predict(model, version, body, deadline,
                                                              api="record"),
                                               parsed.format, aliases)
        for alias in aliases:
            parts[alias].append(np.asarray(outputs[alias]))
    return parts


def _joined(parts: dict[str, list], n_examples: int, version: int) -> dict:
    """One array per output, refused unless it has one row per example (or is a scalar of
    the one request): a golden set holds an answer for every example."""
    outputs = {}
    for alias, chunks in parts.items():
        try:
            array = join_batches(alias, chunks, f"record with --batch-size {n_examples} or more")
        except SchemaError as err:
            raise GoldenError([f"cannot record: {err}"]) from None
        if array.ndim and array.shape[0] != n_examples:
            raise GoldenError([f'cannot record output "{alias}": version {version} answered '
                               f"{rows_text(array.shape[0], n_examples)}"])
        outputs[alias] = array
    return outputs


def record_golden(client, protocol: str, model: str, requests: list[dict], *,
                  version: int | None = None, timeout: float = 60.0, batch_size: int = 64,
                  atol: float = 1e-6, rtol: float = 1e-6,
                  top1_outputs: dict[str, bool] | None = None,
                  labels=None, label_output: str | None = None,
                  labels_from_output: str | None = None,
                  min_accuracy: float | None = None,
                  calibrate_runs: int | None = None) -> dict:
    """The golden document for ``requests`` answered by ``version`` (default: the version
    serving unpinned requests, pinned for every batch so one version answers them all).

    ``labels_from_output`` takes the labels from this recording's own answers (for a version
    trusted to be right), naming the output they come from. With ``calibrate_runs``, the
    floating-point outputs get the atol their measured noise calls for (``golden_calibrate``;
    ``atol`` is then its minimum), within the same ``timeout``.
    """
    request = merge_requests(requests) if len(requests) > 1 else requests[0]
    problems: list[str] = []
    parsed = parse_request(request, "request", problems)
    if parsed is None:
        raise GoldenError(problems)
    signature_name = parsed.signature_name or ""
    deadline = Deadline.after(timeout)
    try:
        if version is None:
            version = _serving_version(client, model, deadline)
        signatures = client.model_metadata(model, version, deadline)
        wanted = signature_name or DEFAULT_SIGNATURE
        if wanted not in signatures:
            raise GoldenError([f"model {model!r} version {version} has no signature {wanted!r} "
                               f"(it has {', '.join(sorted(signatures))})"])
        signature = signatures[wanted]
        aliases = sorted(t.alias for t in signature.outputs)
        parts = _answers(client, protocol, model, version, signature_name, parsed,
                         signature.inputs, aliases, batch_size, deadline)
    except TFServingError as err:
        raise GoldenError([f"recording from model {model!r} failed: {err}"]) from None
    except SchemaError as err:
        raise GoldenError([f"the requests do not fit model {model!r}: {err}"]) from None
    outputs = _joined(parts, parsed.n_examples, version)

    if labels_from_output is not None:
        if labels_from_output not in outputs:
            raise GoldenError([f"--labels-from-output: no output {labels_from_output!r} "
                               f"(outputs: {', '.join(aliases)})"])
        labels = predicted_classes(outputs[labels_from_output])
        label_output = labels_from_output
    tolerances = {alias: Tolerance(atol=atol, rtol=rtol,
                                   top1=(top1_outputs or {}).get(alias)) for alias in aliases}
    recorded_at = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    provenance = Provenance(model=model, version=version, recorded_at=recorded_at,
                            protocol=protocol, tool=f"tfserving-exporter {__version__}")
    recording = dict(model=model, signature_name=signature_name, request=request,
                     outputs=outputs, labels=labels, label_output=label_output,
                     min_accuracy=min_accuracy)
    document = golden_document(provenance=provenance, tolerances=tolerances, **recording)
    if calibrate_runs is None:
        return document
    calibration = calibrate(client, protocol, _as_loaded(document), version, batch_size,
                            calibrate_runs, deadline, min_atol=atol)
    return golden_document(provenance=dataclasses.replace(provenance, calibration=calibration),
                           tolerances=calibrated_tolerances(tolerances, calibration),
                           **recording)


def _as_loaded(document: dict) -> GoldenSet:
    """The golden set as the canary will load it from the file about to be written."""
    valid, problems = validate_document(json_round_trip(document, "the recording"),
                                        lambda name: ({}, []))  # no data file yet
    if problems:
        raise GoldenError([f"cannot calibrate the recording: {problem}" for problem in problems])
    return GoldenSet("the recording", valid)
