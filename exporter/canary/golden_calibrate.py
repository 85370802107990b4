"""``golden record --calibrate N``: tolerances from the measured noise of one model version.

Real numerics move between runs (non-deterministic reductions, other kernels under load) and
with the batch size (other kernels, other summation orders), so nobody can guess an atol that
holds. Calibration measures it instead, as Twitter's Diffy does: it sends the golden set to the
recorded version again ``runs`` times at the recording's batch size and ``runs`` times at
batch size 1, the way the canary sends it (``VersionProbe``: the same batches and request
bodies, the version pinned and, over gRPC, checked), and compares every run with the recording
(``compare`` at zero tolerance, so NaN or an infinity in the same place counts as equal). A
floating-point output's noise is the largest element-wise difference any run showed; its atol
is ``FACTOR`` times that, rounded up to two significant digits, never below ``min_atol``.

Any other difference means the golden set would fail against the very version it was recorded
from, so calibration refuses it: an output that is not floating point (integers, strings,
booleans are compared exactly) that changed, a required top-1 class that flipped, accuracy below
``min_accuracy``, NaN where the recording has a number, other rows, an error or a timeout.
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import math

from exporter.canary.compare import MISMATCH, Comparison
from exporter.canary.errors import GoldenError
from exporter.canary.golden import GoldenSet
from exporter.canary.golden_types import Calibration, OutputNoise, Tolerance
from exporter.canary.probe import VersionProbe
from exporter.tfserving.deadline import Deadline

# The runs see a few samples of the noise; the canary then draws thousands more (one run a
# minute is 1440 a day), on hardware with other load. The maximum of Gaussian noise over a
# million samples is about twice its maximum over a hundred (4.9 against 2.5 sigma), so ten
# times the measured floor leaves room for the tail and for noisier moments, while a real
# change (a weight retrained, a preprocessing step lost) moves outputs by orders of magnitude
# more than float noise.
FACTOR = 10.0
_DIGITS = 2  # significant digits of a calibrated atol
_OUT_OF_TIME = ("out of time: the recording's deadline (golden record --timeout) covers every "
                "calibration run, so allow more")


def calibrate(client, protocol: str, golden: GoldenSet, version: int, batch_size: int,
              runs: int, deadline: Deadline, *, min_atol: float = Tolerance().atol
              ) -> Calibration:
    """Measure ``golden``'s noise against ``version`` of ``golden.model`` (whose answers
    ``golden.expected`` holds) in ``runs`` runs at ``batch_size`` and ``runs`` at batch size
    1, all within ``deadline``; GoldenError says why a run made the set unusable."""
    for name, value in (("runs", runs), ("batch_size", batch_size)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")
    measuring = copy.copy(golden)
    # Zero tolerance: every difference shows as error; the top-1 and accuracy checks stay.
    measuring.tolerances = {alias: dataclasses.replace(tolerance, atol=0.0, rtol=0.0)
                            for alias, tolerance in golden.tolerances.items()}
    signatures = functools.lru_cache(maxsize=1)(
        lambda: client.model_metadata(golden.model, version, deadline))
    between_runs = _largest_differences(client, protocol, measuring, version, batch_size, runs,
                                        deadline, signatures)
    between_sizes = None
    if _batch_size_one_differs(golden, batch_size):
        between_sizes = _largest_differences(client, protocol, measuring, version, 1, runs,
                                             deadline, signatures)
    outputs = {}
    for alias, expected in golden.expected.items():
        if expected.dtype.kind != "f":
            continue  # compared exactly, and _check made sure it never changed
        across_sizes = None if between_sizes is None else between_sizes[alias]
        worst = max(between_runs[alias], across_sizes or 0.0)
        outputs[alias] = OutputNoise(between_runs[alias], across_sizes,
                                     max(min_atol, _rounded_up(FACTOR * worst)))
    return Calibration(runs=runs, batch_size=batch_size, factor=FACTOR, min_atol=min_atol,
                       outputs=outputs)


def calibrated_tolerances(tolerances: dict[str, Tolerance],
                          calibration: Calibration) -> dict[str, Tolerance]:
    """``tolerances`` with the calibrated atol of each floating-point output; rtol and top1
    stay as given, and exactly compared outputs keep their tolerance."""
    return {alias: (dataclasses.replace(tolerance, atol=calibration.outputs[alias].atol)
                    if alias in calibration.outputs else tolerance)
            for alias, tolerance in tolerances.items()}


def _batch_size_one_differs(golden: GoldenSet, batch_size: int) -> bool:
    """Runs at batch size 1 send other requests than those at ``batch_size``, and can: not
    when every batch already holds one example, nor when a scalar output (one value per
    request) makes the set go in one request, which the canary must do too."""
    return min(batch_size, golden.n_examples) > 1 and all(
        array.ndim for array in golden.expected.values())


def _largest_differences(client, protocol: str, measuring: GoldenSet, version: int,
                         batch_size: int, runs: int, deadline: Deadline,
                         signatures) -> dict[str, float]:
    """Per output, the largest element-wise difference from the recording over ``runs``."""
    largest = dict.fromkeys(measuring.expected, 0.0)
    probe = VersionProbe(client, protocol, measuring, batch_size)
    for run in range(1, runs + 1):
        where = f"calibration run {run} of {runs} at batch size {batch_size}"
        if deadline.expired():
            raise GoldenError([f"{where}: {_OUT_OF_TIME}"])
        _, outcome = probe.run(version, version, deadline.remaining(), signatures)
        if outcome.reason == "timeout":
            raise GoldenError([f"{where}: {_OUT_OF_TIME} ({outcome.detail})"])
        if outcome.reason not in (None, MISMATCH):
            raise GoldenError([f"{where} failed with {outcome.reason}: {outcome.detail}"])
        _check(outcome.comparison, measuring, where)
        for alias, stats in outcome.comparison.outputs.items():
            largest[alias] = max(largest[alias], stats.max_abs_error)
    return largest


def _check(comparison: Comparison, golden: GoldenSet, where: str) -> None:
    """Refuse differences no tolerance can absorb: the set would fail against this version."""
    problems = []
    for alias, stats in comparison.outputs.items():
        if not math.isfinite(stats.max_abs_error):
            problems.append(f'output "{alias}" differs from the recording beyond any tolerance '
                            "(an infinite error: NaN or Infinity where the recording has "
                            f"another value, or other rows): {comparison.detail}")
        elif stats.max_abs_error and golden.expected[alias].dtype.kind != "f":
            problems.append(f'output "{alias}" differs from the recording in '
                            f"{stats.mismatched_examples} examples; it is not floating point, "
                            "so it is compared exactly")
        if (golden.tolerances[alias].top1 and stats.top1_agreement is not None
                and stats.top1_agreement < 1):
            problems.append(f'the top-1 class of "{alias}" differs from the recording '
                            f"(agreement {stats.top1_agreement:.4g}), and its tolerance "
                            "requires top-1 agreement")
    if (golden.min_accuracy is not None and comparison.accuracy is not None
            and comparison.accuracy < golden.min_accuracy):
        problems.append(f"accuracy {comparison.accuracy:.4g} is below min_accuracy "
                        f"{golden.min_accuracy:g}")
    if problems:
        raise GoldenError([f"{where}: {problem}" for problem in problems] + [
            "a canary would fail against the very version the golden set is recorded from"])


def _rounded_up(value: float) -> float:
    """``value`` rounded up to two significant digits: the file reads 3.6e-06, not
    3.5355339059327378e-06, and the tolerance is never below what was asked."""
    if value <= 0:
        return 0.0
    if value < 1e-300:  # 10 ** exponent would underflow; no tolerance is that small anyway
        return 1e-300
    exponent = math.floor(math.log10(value)) - (_DIGITS - 1)
    digits = math.ceil(value / 10.0 ** exponent)
    rounded = float(f"{digits}e{exponent}")
    return rounded if rounded >= value else float(f"{digits + 1}e{exponent}")
