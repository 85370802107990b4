"""The compare benchmark keeps working (its numbers are reported, not asserted)."""

import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_compare_benchmark_runs_and_reports_latency_and_memory():
    result = subprocess.run(
        [sys.executable, os.path.join(ROOT, "benchmarks", "compare_benchmark.py"),
         "--examples", "50", "--runs", "5"],
        capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith("golden set: 50 examples x 10 outputs")
    assert lines[1].startswith("compare result: failure=None")
    assert lines[2].startswith("compare latency over 5 runs: median ")
    assert "golden set memory: nbytes " in lines[4] and "extra RSS after load_golden" in lines[4]
