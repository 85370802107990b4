"""Small value types shared by golden files, the comparison and the runner."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Tolerance:
    """An element matches when |actual - expected| <= atol + rtol * |expected|.

    ``top1`` marks a class-score output: None = not one; False = report top-1 agreement;
    True = also require it (any flipped arg-max fails the run)."""

    atol: float = 1e-6
    rtol: float = 1e-6
    top1: bool | None = None


@dataclass(frozen=True)
class OutputNoise:
    """One floating-point output's measured noise: the largest element-wise difference from
    the recording over the runs at the recording's batch size, and over the runs at batch
    size 1 (None when there were none), and the atol calibration derived from them."""

    between_runs: float
    between_batch_sizes: float | None
    atol: float


@dataclass(frozen=True)
class Calibration:
    """How ``golden record --calibrate`` measured the noise floor: ``runs`` repetitions at
    ``batch_size`` (and as many at batch size 1), atol = max(min_atol, factor x noise)."""

    runs: int
    batch_size: int
    factor: float
    min_atol: float
    outputs: dict[str, OutputNoise]


@dataclass(frozen=True)
class Provenance:
    """Where the expectations came from, so a stale golden file can be traced."""

    model: str
    version: int | None
    recorded_at: str  # RFC 3339
    protocol: str     # grpc | rest
    tool: str
    calibration: Calibration | None = None  # only in files recorded with --calibrate
