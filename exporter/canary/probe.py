"""One canary run: send a golden set to one model version, compare, and say how it went."""

from __future__ import annotations

import time
from typing import Callable

import numpy as np

from exporter.canary.compare import compare
from exporter.canary.golden import GoldenSet, SchemaError, parse_rest_predict_reply
from exporter.canary.results import RunOutcome
from exporter.tfserving.deadline import Deadline
from exporter.tfserving.types import Signature, TFServingError
from tfserving_wire.model_status import DEFAULT_SIGNATURE


class WrongVersion(Exception):
    """A pinned request was answered by another version."""


def _signature(signatures: dict[str, Signature], name: str) -> Signature:
    wanted = name or DEFAULT_SIGNATURE
    if wanted not in signatures:
        raise SchemaError(f'signature "{wanted}" not found; the version has '
                          f'{", ".join(sorted(signatures)) or "none"}')
    return signatures[wanted]


class VersionProbe:
    """Runs a golden set against one version over one protocol, in batches."""

    def __init__(self, client, protocol: str, golden: GoldenSet, batch_size: int) -> None:
        self._client = client
        self._protocol = protocol
        self._golden = golden
        self._batches = golden.batches(batch_size)
        self._aliases = sorted(golden.expected)
        self._one_request_hint = f"set canary.batch_size to {golden.n_examples} or more"

    def _answers_over_grpc(self, version: int | None, signature: Signature,
                           deadline: Deadline) -> tuple[dict[str, list], int | None]:
        collected: dict[str, list] = {alias: [] for alias in self._aliases}
        answered = None
        for batch in self._batches:
            outputs, answered_by = self._client.predict(
                self._golden.model, version, self._golden.signature_name,
                batch.tensors(signature.inputs), self._aliases, deadline, api="canary")
            if version is not None and answered_by != version:
                raise WrongVersion(f"request pinned to version {version} was answered by "
                                   f"version {answered_by}")
            if answered is not None and answered_by != answered:
                raise WrongVersion(f"batches were answered by versions {answered} and "
                                   f"{answered_by} (a roll during the run)")
            answered = answered_by
            for alias in self._aliases:
                if alias not in outputs:
                    raise SchemaError(f'output "{alias}" missing from the reply')
                collected[alias].append(outputs[alias])
        return collected, answered

    def _answers_over_rest(self, version: int | None,
                           deadline: Deadline) -> dict[str, list]:
        collected: dict[str, list] = {alias: [] for alias in self._aliases}
        for batch in self._batches:
            body = self._client.predict(self._golden.model, version, batch.rest_body(),
                                        deadline, api="canary")
            outputs = parse_rest_predict_reply(body, self._golden.request_format,
                                               self._aliases)
            for alias in self._aliases:
                collected[alias].append(outputs[alias])
        return collected

    def run(self, version: int | None, expected_version: int, timeout: float,
            signatures: Callable[[], dict[str, Signature]]) -> tuple[int, RunOutcome]:
        """Run against ``version`` (None = unpinned, expected to be ``expected_version``).

        Returns the version the results belong to (over gRPC: the one that answered) and the
        outcome. Never raises for TF Serving's or the model's faults: they are outcomes.
        """
        started = time.monotonic()
        deadline = Deadline.after(timeout)
        attributed = expected_version
        comparison = None
        try:
            if self._protocol == "grpc":
                signature = _signature(signatures(), self._golden.signature_name)
                collected, answered = self._answers_over_grpc(version, signature, deadline)
                if answered is not None:
                    attributed = answered
            else:
                collected = self._answers_over_rest(version, deadline)
            actual = {alias: join_batches(alias, parts, self._one_request_hint)
                      for alias, parts in collected.items()}
            golden = self._golden
            comparison = compare(golden.expected, actual, golden.tolerances, golden.labels,
                                 golden.label_output, golden.min_accuracy)
            reason, detail = comparison.failure, comparison.detail
        except TFServingError as err:
            timed_out = err.code == "DEADLINE_EXCEEDED" or deadline.expired()
            reason, detail = ("timeout" if timed_out else "error"), str(err)
        except SchemaError as err:
            reason, detail = "schema", str(err)
        except WrongVersion as err:
            reason, detail = "error", str(err)
        return attributed, RunOutcome(reason=reason, detail=detail, finished_at=time.time(),
                                      duration=time.monotonic() - started,
                                      protocol=self._protocol, comparison=comparison)


def join_batches(alias: str, parts: list, one_request_hint: str) -> np.ndarray:
    """One output's answers to the batches of a golden set as one array, example axis first.

    A zero-row part adds no rows; it is left out because TF Serving's ``[]`` for it has no
    inner shape to join by (the comparison then reports the missing rows). A scalar output
    (no example axis) is one value per request, so it only stands for the golden set when the
    set went in one request: with several parts, SchemaError ending in ``one_request_hint``.
    """
    arrays = [np.asarray(part) for part in parts]
    if len(arrays) == 1:
        return arrays[0]
    if any(array.ndim == 0 for array in arrays):
        raise SchemaError(f'output "{alias}" is a scalar (one value per request, no example '
                          f"axis): the answers to {len(arrays)} batches cannot be joined, so "
                          f"the examples must go in one request; {one_request_hint}")
    with_rows = [array for array in arrays if array.shape[0]] or arrays[:1]
    try:
        return np.concatenate(with_rows, axis=0)
    except ValueError as err:
        raise SchemaError(f'output "{alias}": batches cannot be joined: {err}') from None
