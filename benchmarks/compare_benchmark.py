"""Time ``compare`` on a golden set and measure the memory the loaded set holds.

    python benchmarks/compare_benchmark.py [--examples 1000] [--runs 200]

The golden set has 10 float32 outputs of shape (examples, 10), 3 of them class scores with
top1 set (labels on one of them); the "actual" outputs carry small noise so errors are not
zero. The set is written with ``write_golden(..., npz=True)`` and loaded back with
``load_golden``; RSS is read from /proc/self/status before and after loading. Numbers are
reported, not asserted (target: < 5 ms per compare for 1,000 examples). The files are
written by a child process, so the memory freed after building them cannot hide the cost of
loading them.
"""

from __future__ import annotations

import argparse
import gc
import os
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from exporter.canary.compare import compare  # noqa: E402
from exporter.canary.golden import (  # noqa: E402
    Provenance, Tolerance, golden_document, load_golden, write_golden)

OUTPUTS, CLASSES, TOP1_OUTPUTS = 10, 10, 3
TARGET_MS = 5.0


def rss_mib() -> float:
    with open("/proc/self/status", encoding="ascii") as handle:
        for line in handle:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError("VmRSS not found")


def softmax(logits: np.ndarray) -> np.ndarray:
    shifted = np.exp(logits - logits.max(axis=1, keepdims=True))
    return (shifted / shifted.sum(axis=1, keepdims=True)).astype(np.float32)


def build_document(examples: int, rng: np.random.Generator) -> dict:
    outputs = {}
    for index in range(OUTPUTS):
        values = rng.normal(size=(examples, CLASSES))
        is_class_scores = index < TOP1_OUTPUTS
        outputs[f"out{index}"] = softmax(values) if is_class_scores else values.astype(np.float32)
    # out0 requires top-1 agreement, out1 and out2 only report it
    tolerances = {alias: Tolerance(atol=1e-4, rtol=1e-4,
                                   top1=(index == 0) if index < TOP1_OUTPUTS else None)
                  for index, alias in enumerate(outputs)}
    labels = np.argmax(outputs["out0"], axis=1)
    labels[::20] = (labels[::20] + 1) % CLASSES  # 95 % accuracy
    return golden_document(
        model="bench", signature_name="serving_default",
        request={"inputs": {"x": rng.normal(size=(examples, 8)).astype(np.float32)}},
        outputs=outputs,
        provenance=Provenance("bench", 1, "2026-11-22T13:00:00Z", "grpc", "benchmark"),
        tolerances=tolerances, labels=labels, label_output="out0", min_accuracy=0.9)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--examples", type=int, default=1000)
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--write", metavar="PATH", help=argparse.SUPPRESS)  # child process
    args = parser.parse_args()
    if args.examples < 1 or args.runs < 1:
        parser.error("--examples and --runs must be positive")
    if args.write:
        write_golden(args.write, build_document(args.examples, np.random.default_rng(0)), npz=True)
        return 0

    with tempfile.TemporaryDirectory() as directory:
        path = os.path.join(directory, "bench.golden.json")
        subprocess.run([sys.executable, os.path.abspath(__file__), "--write", path,
                        "--examples", str(args.examples)], check=True)
        file_bytes = sum(os.path.getsize(os.path.join(directory, name))
                         for name in os.listdir(directory))
        gc.collect()
        before = rss_mib()
        golden = load_golden(path)
        after = rss_mib()

    rng = np.random.default_rng(1)

    actual = {alias: (array + rng.normal(0, 1e-6, array.shape)).astype(np.float32)
              for alias, array in golden.expected.items()}
    result = compare(golden.expected, actual, golden.tolerances, golden.labels,
                     golden.label_output, golden.min_accuracy)
    timings = []
    for _ in range(args.runs):
        start = time.perf_counter()
        compare(golden.expected, actual, golden.tolerances, golden.labels, golden.label_output,
                golden.min_accuracy)
        timings.append((time.perf_counter() - start) * 1000)
    timings.sort()
    p99 = timings[min(len(timings) - 1, int(len(timings) * 0.99))]

    print(f"golden set: {golden.n_examples} examples x {len(golden.expected)} outputs "
          f"(float32, {CLASSES} values each; {TOP1_OUTPUTS} top1, labels on {golden.label_output})")
    print(f"compare result: failure={result.failure} accuracy={result.accuracy:.3f} "
          f"max_abs_error(out3)={result.outputs['out3'].max_abs_error:.2e}")
    print(f"compare latency over {args.runs} runs: median {statistics.median(timings):.3f} ms, "
          f"p99 {p99:.3f} ms (target < {TARGET_MS:g} ms)")
    print(f"golden files on disk: {file_bytes / 1024:.1f} KiB (JSON + npz)")
    print(f"golden set memory: nbytes {golden.nbytes / 2**20:.2f} MiB, "
          f"extra RSS after load_golden {after - before:.2f} MiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
