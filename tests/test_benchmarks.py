"""The benchmark scripts keep working (their numbers go in the README, not in assertions)."""

import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_scrape_benchmark_runs_and_reports_latency_and_rss():
    result = subprocess.run(
        [sys.executable, os.path.join(ROOT, "benchmarks", "scrape_benchmark.py"), "--scrapes", "20"],
        capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "/metrics latency p50:" in result.stdout
    assert "exporter RSS:" in result.stdout
