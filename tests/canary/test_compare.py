"""Canary statistics: errors, tolerances, NaN, schema, top-1 agreement, accuracy, priority."""

import math

import numpy as np
import pytest

from exporter.canary.compare import Comparison, OutputStats, compare
from exporter.canary.golden_types import Tolerance

NAN, INF = float("nan"), float("inf")
TIGHT = Tolerance(atol=1e-6, rtol=1e-6)


def scores(rows):
    return np.array(rows, dtype=np.float32)


def test_identical_outputs_pass_with_zero_errors():
    expected = {"y": np.array([[2.5], [3.0], [4.5]]), "name": np.array([b"a", b"b", b"c"], dtype=object),
                "flag": np.array([True, False, True])}
    result = compare(expected, {alias: array.copy() for alias, array in expected.items()},
                     {alias: TIGHT for alias in expected})
    assert result == Comparison(
        outputs={alias: OutputStats(0.0, 0.0, 0, None) for alias in expected},
        accuracy=None, failure=None, detail="3 examples, 3 outputs within tolerance")


@pytest.mark.parametrize("actual, tolerance, failure, mismatched, max_error, mean_error", [
    # a shift of 0.01 is far outside atol 1e-6
    ([[2.51], [3.01], [4.51]], TIGHT, "mismatch", 3, 0.01, 0.01),
    # noise below the tolerance passes, and is still measured
    ([[2.5 + 4e-7], [3.0 - 4e-7], [4.5]], TIGHT, None, 0, 4e-7, 8e-7 / 3),
    # rtol scales with |expected|: 1e-3 * 4.5 covers an error of 0.004
    ([[2.5], [3.0], [4.504]], Tolerance(atol=0, rtol=1e-3), None, 0, 0.004, 0.004 / 3),
    ([[2.5], [3.0], [4.504]], Tolerance(atol=0, rtol=1e-4), "mismatch", 1, 0.004, 0.004 / 3),
    # only the example with a bad element counts
    ([[2.5], [3.2], [4.5]], TIGHT, "mismatch", 1, 0.2, 0.2 / 3),
])
def test_numeric_errors_and_tolerances(actual, tolerance, failure, mismatched, max_error, mean_error):
    result = compare({"y": np.array([[2.5], [3.0], [4.5]])}, {"y": np.array(actual)}, {"y": tolerance})
    stats = result.outputs["y"]
    assert result.failure == failure
    assert stats.mismatched_examples == mismatched
    assert stats.max_abs_error == pytest.approx(max_error, rel=1e-6)
    assert stats.mean_abs_error == pytest.approx(mean_error, rel=1e-6)


def test_mismatch_detail_names_output_count_tolerance_and_error():
    expected = np.zeros((1000, 4))
    actual = expected.copy()
    actual[[3, 500, 999], 2] = 0.01
    result = compare({"y": expected}, {"y": actual}, {"y": TIGHT})
    assert result.failure == "mismatch"
    assert result.detail == "y: 3 of 1000 examples outside atol=1e-06 + rtol=1e-06*|expected| (max abs error 0.01)"


def test_float32_actual_against_float64_expected_compares_in_float64():
    expected = np.array([0.1, 1 / 3, 1e-8])
    result = compare({"y": expected}, {"y": expected.astype(np.float32)}, {"y": TIGHT})
    assert result.failure is None
    assert 0 < result.outputs["y"].max_abs_error < 1e-7


@pytest.mark.parametrize("expected, actual, failure, mismatched, max_error", [
    ([1.0, 2.0], [NAN, 2.0], "nan", 1, INF),
    ([1.0, 2.0], [1.0, INF], "nan", 1, INF),
    ([1.0, 2.0], [-INF, NAN], "nan", 2, INF),
    # NaN recorded and NaN returned is equal, as are equal infinities
    ([NAN, INF, -INF], [NAN, INF, -INF], None, 0, 0.0),
    # a recorded NaN that comes back as a number is a mismatch, not "nan"
    ([NAN, 1.0], [0.0, 1.0], "mismatch", 1, INF),
    ([INF, 1.0], [1e300, 1.0], "mismatch", 1, INF),
    ([INF, 1.0], [-INF, 1.0], "mismatch", 1, INF),
])
def test_nan_and_infinity(expected, actual, failure, mismatched, max_error):
    result = compare({"y": np.array(expected)}, {"y": np.array(actual)}, {"y": Tolerance(atol=1, rtol=1)})
    assert result.failure == failure
    assert result.outputs["y"].mismatched_examples == mismatched
    assert result.outputs["y"].max_abs_error == max_error


def test_nan_detail_counts_examples():
    actual = np.ones((10, 3))
    actual[[1, 4], 0] = NAN
    actual[4, 2] = INF
    result = compare({"y": np.ones((10, 3))}, {"y": actual}, {"y": TIGHT})
    assert result.failure == "nan"
    assert result.detail.startswith("y: NaN or Infinity in 2 of 10 examples where finite values are expected")


@pytest.mark.parametrize("expected, actual, detail", [
    (np.zeros((3, 1)), None, "y: missing from the reply"),
    (np.zeros((3, 1)), np.zeros((3,)), "y: shape [3] differs from expected [3, 1]"),
    (np.zeros((3, 1)), np.zeros((2, 2)), "y: shape [2, 2] differs from expected [3, 1]"),
    (np.zeros((3, 1)), np.array([[b"a"], [b"b"]], dtype=object),
     "y: shape [2, 1] differs from expected [3, 1]"),
    (np.float64(2.5), np.zeros(3), "y: shape [3] differs from expected []"),
    (np.zeros(3), np.float64(2.5), "y: shape [] differs from expected [3]"),
    (np.zeros(3), np.array([b"a", b"b", b"c"], dtype=object), "y: got string values, expected number values"),
    (np.zeros(3), np.array([True, False, True]), "y: got boolean values, expected number values"),
    (np.array([True, False]), np.array([1, 0]), "y: got number values, expected boolean values"),
])
def test_schema_failures_omit_the_output_stats(expected, actual, detail):
    result = compare({"y": expected, "z": np.ones(2)},
                     {"z": np.ones(2)} | ({} if actual is None else {"y": actual}),
                     {"y": TIGHT, "z": TIGHT})
    assert result.failure == "schema"
    assert result.detail == detail
    assert list(result.outputs) == ["z"]


@pytest.mark.parametrize("actual, rows", [
    (np.zeros(0), 0),                                       # TF Serving's `[]`: no inner shape
    (np.zeros((0, 1)), 0),                                  # zero rows over gRPC
    (np.array([], dtype=object), 0),
    (np.zeros((2, 1)), 2),
    (np.zeros((4, 1)), 4),
])
def test_other_row_counts_are_a_mismatch_of_every_example(actual, rows):
    result = compare({"y": np.zeros((3, 1)), "z": np.ones(2)}, {"y": actual, "z": np.ones(2)},
                     {"y": TIGHT, "z": TIGHT})
    assert result.failure == "mismatch"
    assert result.detail == f"y: {rows} rows, expected 3 (one per example)"
    assert result.outputs["y"] == OutputStats(INF, INF, 3, None)
    assert result.outputs["z"].mismatched_examples == 0


def test_other_rows_take_no_accuracy_and_no_top1_agreement():
    tolerance = Tolerance(top1=True)
    result = compare({"p": scores([[0.1, 0.9], [0.8, 0.2]])}, {"p": np.zeros(0)}, {"p": tolerance},
                     labels=np.array([1, 0]), label_output="p")
    assert (result.failure, result.accuracy) == ("mismatch", None)
    assert result.outputs["p"].top1_agreement is None


@pytest.mark.parametrize("expected, actual, failure, detail", [
    (np.float64(2.5), np.float32(2.5), None, "1 examples, 1 outputs within tolerance"),
    (np.float64(2.5), np.float64(2.6), "mismatch",
     "y: 1 of 1 examples outside atol=1e-06 + rtol=1e-06*|expected| (max abs error 0.1)"),
    (np.array(b"\xff\xfe", dtype=object), np.array(b"\xff\xfe", dtype=object), None,
     "1 examples, 1 outputs within tolerance"),
    (np.array(b"\xff\xfe", dtype=object), np.array(b"\xff", dtype=object), "mismatch",
     "y: 1 of 1 examples differ"),
    (np.float64(2.5), np.float64(NAN), "nan",
     "y: NaN or Infinity in 1 of 1 examples where finite values are expected; "
     "y: 1 of 1 examples outside atol=1e-06 + rtol=1e-06*|expected| (max abs error inf)"),
])
def test_a_scalar_output_compares_as_one_example(expected, actual, failure, detail):
    result = compare({"y": expected}, {"y": actual}, {"y": TIGHT})
    assert (result.failure, result.detail) == (failure, detail)
    assert result.outputs["y"].mismatched_examples == (0 if failure is None else 1)


def test_integer_and_float_outputs_are_both_numbers():
    result = compare({"y": np.array([1, 2, 3])}, {"y": np.array([1.0, 2.0, 3.0], np.float32)}, {"y": TIGHT})
    assert result.failure is None


@pytest.mark.parametrize("expected, actual, mismatched, mean_error", [
    (np.array([b"cat", b"dog"], dtype=object), np.array([b"cat", b"cow"], dtype=object), 1, 0.5),
    # text and bytes are the same DT_STRING value
    (np.array([b"cat", b"dog"], dtype=object), np.array(["cat", "dog"], dtype=object), 0, 0.0),
    (np.array([[True, False], [True, True]]), np.array([[True, True], [True, True]]), 1, 0.25),
])
def test_strings_and_booleans_compare_exactly(expected, actual, mismatched, mean_error):
    result = compare({"y": expected}, {"y": actual}, {"y": Tolerance(atol=10, rtol=10)})
    stats = result.outputs["y"]
    assert (stats.mismatched_examples, stats.mean_abs_error) == (mismatched, mean_error)
    assert stats.max_abs_error == (1.0 if mismatched else 0.0)
    assert result.failure == ("mismatch" if mismatched else None)
    if mismatched:
        assert result.detail == f"y: {mismatched} of 2 examples differ"


EXPECTED_SCORES = scores([[0.1, 0.9], [0.8, 0.2], [0.3, 0.7], [0.5, 0.5]])
ONE_FLIP = scores([[0.1, 0.9], [0.8, 0.2], [0.7, 0.3], [0.5, 0.5]])


@pytest.mark.parametrize("top1, actual, agreement, failure", [
    (None, ONE_FLIP, None, None),
    (False, ONE_FLIP, 0.75, None),
    (True, ONE_FLIP, 0.75, "mismatch"),
    (True, EXPECTED_SCORES, 1.0, None),
    # ties go to the first index on both sides, as numpy.argmax
    (True, scores([[0.1, 0.9], [0.8, 0.2], [0.3, 0.7], [0.6, 0.6]]), 1.0, None),
])
def test_top1_agreement_reported_or_required(top1, actual, agreement, failure):
    # the tolerance is loose so only the arg-max decides
    result = compare({"p": EXPECTED_SCORES}, {"p": actual}, {"p": Tolerance(atol=1, rtol=0, top1=top1)})
    assert result.outputs["p"].top1_agreement == agreement
    assert result.failure == failure
    if failure:
        assert result.detail == "p: top-1 class differs in 1 of 4 examples (agreement 0.75, required 1)"


def test_top1_over_a_sequence_needs_every_position_to_agree():
    expected = np.zeros((2, 3, 4))
    expected[:, :, 1] = 1
    actual = expected.copy()
    actual[1, 2, 3] = 5
    result = compare({"p": expected}, {"p": actual}, {"p": Tolerance(atol=10, top1=False)})
    assert result.outputs["p"].top1_agreement == 0.5


@pytest.mark.parametrize("labels, min_accuracy, accuracy, failure", [
    ([1, 0, 1, 0], None, 1.0, None),
    ([1, 0, 0, 1], None, 0.5, None),
    ([1, 0, 0, 1], 0.5, 0.5, None),
    ([1, 0, 0, 1], 0.6, 0.5, "mismatch"),
])
def test_accuracy_against_labels(labels, min_accuracy, accuracy, failure):
    result = compare({"p": EXPECTED_SCORES}, {"p": EXPECTED_SCORES.copy()}, {"p": Tolerance(top1=False)},
                     labels=np.array(labels), label_output="p", min_accuracy=min_accuracy)
    assert result.accuracy == accuracy
    assert result.failure == failure
    if failure:
        assert result.detail == "accuracy 0.5 below min_accuracy 0.6 (p: 2 of 4 correct)"


def test_accuracy_of_an_integer_class_output_uses_its_values():
    classes = np.array([[3], [1], [2]])
    result = compare({"c": classes}, {"c": classes.copy()}, {"c": TIGHT}, labels=np.array([3, 1, 0]),
                     label_output="c")
    assert result.accuracy == pytest.approx(2 / 3)


def test_accuracy_uses_the_only_top1_output_when_label_output_is_not_given():
    result = compare({"p": EXPECTED_SCORES, "y": np.ones(4)}, {"p": ONE_FLIP, "y": np.ones(4)},
                     {"p": Tolerance(atol=1, top1=False), "y": TIGHT}, labels=np.array([1, 0, 1, 0]))
    assert result.accuracy == 0.75


def test_accuracy_is_none_when_the_label_output_is_missing():
    result = compare({"p": EXPECTED_SCORES}, {}, {"p": Tolerance(top1=True)}, labels=np.array([1, 0, 1, 0]),
                     label_output="p", min_accuracy=0.9)
    assert (result.accuracy, result.failure, result.detail) == (None, "schema", "p: missing from the reply")


@pytest.mark.parametrize("actual, failure, first_reason", [
    ({"a": np.array([1.0, 2.0]), "b": np.array([NAN, 2.0])}, "schema", "c: missing from the reply"),
    ({"a": np.array([9.0, 2.0]), "b": np.array([NAN, 2.0]), "c": np.ones(2)}, "nan",
     "b: NaN or Infinity in 1 of 2 examples"),
    ({"a": np.array([9.0, 2.0]), "b": np.array([1.0, 2.0]), "c": np.ones(2)}, "mismatch", "a: 1 of 2 examples"),
])
def test_failure_priority_is_schema_then_nan_then_mismatch(actual, failure, first_reason):
    expected = {"a": np.array([1.0, 2.0]), "b": np.array([1.0, 2.0]), "c": np.ones(2)}
    result = compare(expected, actual, {alias: TIGHT for alias in expected})
    assert result.failure == failure
    assert result.detail.startswith(first_reason)


def test_every_reason_is_in_the_detail_highest_priority_first():
    expected = {"a": np.array([1.0, 2.0]), "b": np.array([1.0, 2.0]), "c": np.ones(2)}
    actual = {"a": np.array([9.0, 2.0]), "b": np.array([NAN, 2.0])}
    result = compare(expected, actual, {alias: TIGHT for alias in expected})
    assert result.detail.split("; ") == [
        "c: missing from the reply",
        "b: NaN or Infinity in 1 of 2 examples where finite values are expected",
        "a: 1 of 2 examples outside atol=1e-06 + rtol=1e-06*|expected| (max abs error 8)",
        "b: 1 of 2 examples outside atol=1e-06 + rtol=1e-06*|expected| (max abs error inf)",
    ]


def test_extra_actual_outputs_are_ignored():
    result = compare({"y": np.ones(2)}, {"y": np.ones(2), "other": np.zeros(5)}, {"y": TIGHT})
    assert result.failure is None and list(result.outputs) == ["y"]


def test_missing_tolerance_uses_the_defaults():
    result = compare({"y": np.ones(2)}, {"y": np.ones(2) + 2e-6}, {})
    assert result.failure == "mismatch"


def test_a_thousand_examples_with_ten_outputs_in_one_call():
    rng = np.random.default_rng(0)
    expected = {f"o{i}": rng.random((1000, 10)).astype(np.float32) for i in range(10)}
    actual = {alias: array + rng.normal(0, 1e-6, array.shape).astype(np.float32)
              for alias, array in expected.items()}
    actual["o3"][17] += 1.0
    tolerances = {alias: Tolerance(atol=1e-4, rtol=0, top1=False if alias < "o3" else None)
                  for alias in expected}
    labels = np.argmax(expected["o0"], axis=1)
    result = compare(expected, actual, tolerances, labels=labels, label_output="o0", min_accuracy=0.99)
    assert result.failure == "mismatch"
    assert result.detail.startswith("o3: 1 of 1000 examples outside atol=0.0001")
    assert result.outputs["o3"].mismatched_examples == 1
    assert result.outputs["o3"].max_abs_error == pytest.approx(1.0, abs=1e-5)
    assert all(result.outputs[alias].mismatched_examples == 0 for alias in expected if alias != "o3")
    assert [result.outputs[alias].top1_agreement for alias in ("o0", "o1", "o2")] == [1.0, 1.0, 1.0]
    assert result.accuracy == 1.0
    assert 0 < result.outputs["o5"].mean_abs_error < 1e-5
    assert not math.isnan(result.outputs["o5"].max_abs_error)
