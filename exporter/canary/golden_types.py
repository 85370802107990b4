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
class Provenance:
    """Where the expectations came from, so a stale golden file can be traced."""

    model: str
    version: int | None
    recorded_at: str  # RFC 3339
    protocol: str     # grpc | rest
    tool: str
