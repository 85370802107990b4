"""Statistics of a canary run: actual outputs against a golden set's expectations.

Everything is vectorised per output (numpy over all examples at once); the only Python loop is
over output aliases. Rules:

* Numbers are compared in float64. The error of an element is |actual - expected|, except:
  a NaN expected with a NaN actual, or equal infinities, count as equal (error 0), because a
  model that legitimately yields NaN/Inf was recorded doing so; any other non-finite pair has
  an infinite error. An element matches when its error <= atol + rtol * |expected| (finite).
* An example is mismatched when any of its elements does not match.
* NaN or Infinity in the actual output where the expectation is finite is failure "nan".
* Strings and booleans compare exactly (error 0 or 1 per element). Strings compare as bytes:
  ``"cat"`` and ``{"b64": "Y2F0"}`` are the same DT_STRING value.
* ``top1`` outputs: share of examples whose arg-max over the last axis agrees (ties go to the
  first index, as ``numpy.argmax``); with ``top1=True`` any disagreement is a mismatch.
* Accuracy, with labels: share of examples whose predicted class (the value of an integer
  output with one value per example, else the arg-max of class scores) equals the label.
* Rows: an answer with another number of rows than expected examples (zero rows, which TF
  Serving writes as a bare ``[]``, or rows of the expected shape and kind that are too few or
  too many) is failure "mismatch": no row can be paired with its example, so every example of
  that output is mismatched, with an infinite error. It is not "schema": the version answered,
  and its signature may well be unchanged.
* A scalar expectation (an output without example axis, shape []) compares as one example.
* Failure priority: "schema" (an output missing, of another shape or kind) > "nan" > "mismatch".
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from exporter.canary.golden_types import Tolerance
from exporter.canary.json_arrays import BOOLEAN, NUMBER, canonical_strings, kind_of_array, shape_text

SCHEMA, NAN, MISMATCH = "schema", "nan", "mismatch"
_PRIORITY = (SCHEMA, NAN, MISMATCH)


@dataclass(frozen=True)
class OutputStats:
    max_abs_error: float
    mean_abs_error: float
    mismatched_examples: int
    top1_agreement: float | None


@dataclass(frozen=True)
class Comparison:
    outputs: dict[str, OutputStats]
    accuracy: float | None
    failure: str | None  # None (passed) | "schema" | "nan" | "mismatch"
    detail: str

    @property
    def passed(self) -> bool:
        return self.failure is None


def compare(expected: dict[str, np.ndarray], actual: dict[str, np.ndarray],
            tolerances: dict[str, Tolerance], labels: np.ndarray | None = None,
            label_output: str | None = None, min_accuracy: float | None = None) -> Comparison:
    reasons: dict[str, list[str]] = {kind: [] for kind in _PRIORITY}
    outputs: dict[str, OutputStats] = {}
    examples = 0
    for alias, want in expected.items():
        want = np.asarray(want)
        examples = max(examples, want.shape[0] if want.ndim else 1)
        got = actual.get(alias)
        got = None if got is None else np.asarray(got)
        if got is not None and _rows_differ(want, got):
            reasons[MISMATCH].append(f"{alias}: {rows_text(got.shape[0], want.shape[0])}")
            outputs[alias] = OutputStats(math.inf, math.inf, want.shape[0], None)
            continue
        problem = _schema_problem(want, got)
        if problem:
            reasons[SCHEMA].append(f"{alias}: {problem}")
            continue
        outputs[alias] = _output_stats(alias, want, got, tolerances.get(alias, Tolerance()),
                                       reasons)
    accuracy = None
    if labels is not None:
        accuracy = _accuracy(expected, actual, tolerances, np.asarray(labels), label_output,
                             min_accuracy, reasons)
    failure = next((kind for kind in _PRIORITY if reasons[kind]), None)
    detail = "; ".join(reason for kind in _PRIORITY for reason in reasons[kind])
    if failure is None:
        detail = f"{examples} examples, {len(outputs)} outputs within tolerance"
    return Comparison(outputs, accuracy, failure, detail)


def rows_text(rows: int, examples: int) -> str:
    return f"{rows} rows, expected {examples} (one per example)"


def _rows_differ(want: np.ndarray, got: np.ndarray) -> bool:
    """Answers for another number of examples, and otherwise like the expected ones (a zero-row
    ``[]`` carries neither inner shape nor kind, so it always counts)."""
    if want.ndim == 0 or got.ndim == 0 or got.shape[0] == want.shape[0]:
        return False
    return got.shape[0] == 0 or (got.shape[1:] == want.shape[1:]
                                 and kind_of_array(got) == kind_of_array(want))


def _schema_problem(want: np.ndarray, got: np.ndarray | None) -> str | None:
    if got is None:
        return "missing from the reply"
    if got.shape != want.shape:
        return f"shape {shape_text(got.shape)} differs from expected {shape_text(want.shape)}"
    want_kind, got_kind = kind_of_array(want), kind_of_array(got)
    if want_kind is None or got_kind != want_kind:
        return f"got {got_kind or got.dtype} values, expected {want_kind or want.dtype} values"
    return None


def _per_example(mask: np.ndarray) -> np.ndarray:
    """Element mask -> one flag per example (any element set)."""
    if mask.ndim == 0:
        return mask.reshape(1)
    return mask.reshape(mask.shape[0], -1).any(axis=1) if mask.size else np.zeros(
        mask.shape[0], dtype=bool)


def _output_stats(alias: str, want: np.ndarray, got: np.ndarray, tolerance: Tolerance,
                  reasons: dict[str, list[str]]) -> OutputStats:
    if want.ndim == 0:  # a scalar output is one example; ufuncs would turn 0-d into scalars
        want, got = want.reshape(1), got.reshape(1)
    n = want.shape[0]
    if kind_of_array(want) == NUMBER:
        error, outside, nonfinite = _numeric_errors(want, got, tolerance)
        bad_nan = _per_example(nonfinite)
        if bad_nan.any():
            reasons[NAN].append(f"{alias}: NaN or Infinity in {int(bad_nan.sum())} of {n} examples "
                                "where finite values are expected")
        rule = (f"outside atol={tolerance.atol:g} + rtol={tolerance.rtol:g}*|expected|")
    else:
        if kind_of_array(want) == BOOLEAN:
            outside = want != got
        else:
            outside = canonical_strings(want) != canonical_strings(got)
        error = outside.astype(np.float64)
        rule = "differ"
    mismatched = int(_per_example(outside).sum())
    max_error = float(error.max()) if error.size else 0.0
    mean_error = float(error.mean()) if error.size else 0.0
    if mismatched:
        tail = f" (max abs error {max_error:.3g})" if rule != "differ" else ""
        reasons[MISMATCH].append(f"{alias}: {mismatched} of {n} examples {rule}{tail}")
    agreement = None
    if tolerance.top1 is not None:
        agreement = _top1_agreement(alias, want, got, tolerance, reasons)
    return OutputStats(max_error, mean_error, mismatched, agreement)


def _numeric_errors(want: np.ndarray, got: np.ndarray, tolerance: Tolerance):
    """Per-element error, mask of elements outside tolerance, mask of NaN/Inf where a finite
    value is expected."""
    expected = want.astype(np.float64, copy=False)
    with np.errstate(invalid="ignore", over="ignore"):
        error = np.abs(got.astype(np.float64, copy=False) - expected)
        bound = tolerance.atol + tolerance.rtol * np.abs(expected) if tolerance.rtol else tolerance.atol
        if np.isfinite(error).all():  # the usual case: both sides finite everywhere
            return error, error > bound, np.zeros(error.shape, dtype=bool)
        actual = got.astype(np.float64, copy=False)
        same = (actual == expected) | (np.isnan(actual) & np.isnan(expected))
        finite_error = np.isfinite(error)
        error[same] = 0.0
        error[~same & ~finite_error] = np.inf
        inside = same | (finite_error & (error <= bound))
    nonfinite = np.isfinite(expected) & ~np.isfinite(actual)
    return error, ~inside, nonfinite


def _top1_agreement(alias: str, want: np.ndarray, got: np.ndarray, tolerance: Tolerance,
                    reasons: dict[str, list[str]]) -> float | None:
    if kind_of_array(want) != NUMBER or want.ndim < 2 or want.shape[0] == 0:
        reasons[SCHEMA].append(f"{alias}: top1 needs numeric class scores of shape "
                               f"[examples, ..., classes], got {shape_text(want.shape)}")
        return None
    flipped = _per_example(np.argmax(want, axis=-1) != np.argmax(got, axis=-1))
    agreement = 1.0 - float(flipped.mean())
    if tolerance.top1 and flipped.any():
        reasons[MISMATCH].append(f"{alias}: top-1 class differs in {int(flipped.sum())} of "
                                 f"{flipped.size} examples (agreement {agreement:.4g}, required 1)")
    return agreement


def predicted_classes(scores: np.ndarray) -> np.ndarray | None:
    """One class per example: the value of an integer output with one value per example, or
    the arg-max over the last axis of [examples, classes] scores; None if neither."""
    if scores.ndim >= 1 and scores.dtype.kind in "iu" and scores.size == scores.shape[0]:
        return scores.reshape(scores.shape[0])
    if kind_of_array(scores) == NUMBER and scores.ndim == 2 and scores.shape[1] >= 1:
        return np.argmax(scores, axis=1)
    return None


def resolve_label_output(tolerances: dict[str, Tolerance], label_output: str | None) -> str:
    if label_output is not None:
        return label_output
    flagged = [alias for alias, tolerance in tolerances.items() if tolerance.top1 is not None]
    if len(flagged) != 1:
        raise ValueError("labels need label_output, or exactly one output with top1 set")
    return flagged[0]


def _accuracy(expected, actual, tolerances, labels: np.ndarray, label_output: str | None,
              min_accuracy: float | None, reasons: dict[str, list[str]]) -> float | None:
    alias = resolve_label_output(tolerances, label_output)
    got = actual.get(alias)
    if got is None or alias not in expected or np.asarray(got).shape != np.asarray(expected[alias]).shape:
        return None  # already reported: a schema failure or other rows of that output
    classes = predicted_classes(np.asarray(got))
    if classes is None or classes.shape != labels.shape:
        reasons[SCHEMA].append(f"{alias}: cannot give one class per example for "
                               f"{labels.shape[0]} labels")
        return None
    correct = int((classes == labels).sum())
    accuracy = correct / labels.shape[0] if labels.shape[0] else 0.0
    if min_accuracy is not None and accuracy < min_accuracy:
        reasons[MISMATCH].append(f"accuracy {accuracy:.4g} below min_accuracy {min_accuracy:g} "
                                 f"({alias}: {correct} of {labels.shape[0]} correct)")
    return accuracy
