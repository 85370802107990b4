"""The native collector's bridged metrics agree with TF Serving's own page, as Prometheus sees them.

A real Prometheus scrapes both the exporter and the simulator's page while we send REST and gRPC
predicts with a spread of latencies. Quantiles computed by Prometheus from the bridged histogram
(seconds) must equal those from the raw one (microseconds) scaled by 1e6: same buckets, same
counts. Request counters must be exactly equal.
"""

from __future__ import annotations

import re
import time

import numpy as np
import pytest
import requests

from exporter.tfserving.deadline import Deadline
from exporter.tfserving.grpc_client import GrpcClient
from tests.helpers import sample_value, wait_until
from tests.prometheus_harness import TFSERVING_PAGE, exporter_and_tfserving_jobs
from tests.prometheus_harness import prometheus_for  # noqa: F401  (pytest fixture)
from tfserving_simulator.faults import FaultRule

MODEL = "half_plus_two"
# (requests, injected latency in seconds): most are fast, a tail is slow, so the quantiles land
# in different E33 buckets (limits ... 6426.84, 11568.3, 20823, ... 67466.4, 121440 µs).
REST_PLAN = ((12, 0.0), (8, 0.01), (6, 0.04), (4, 0.12))   # 30 REST predicts
GRPC_PLAN = ((8, 0.0), (6, 0.01), (4, 0.04), (2, 0.12))    # 20 gRPC predicts
N_REST = sum(count for count, _ in REST_PLAN)
M_GRPC = sum(count for count, _ in GRPC_PLAN)
# Every predict succeeds, and nothing else in this test reaches TF Serving's request counter.
TOTAL = N_REST + M_GRPC
QUANTILES = (0.5, 0.9, 0.99)

# entrypoint as the exporter writes it → (API, entrypoint) as TF Serving writes them.
RAW_LABELS = {"rest": ("predict", "REST"), "grpc": ("Predict", "GRPC")}


def raw_latency(entrypoint: str, series: str = "bucket") -> str:
    api, raw_entrypoint = RAW_LABELS[entrypoint]
    return ('{__name__=":tensorflow:serving:request_latency_%s",job="tfserving",'
            'model_name="%s",API="%s",entrypoint="%s"}' % (series, MODEL, api, raw_entrypoint))


def bridged_latency(entrypoint: str, series: str = "bucket") -> str:
    return ('tfserving_request_duration_seconds_%s{job="exporter",model="%s",api="predict",'
            'entrypoint="%s"}' % (series, MODEL, entrypoint))



def drive_traffic(simulator) -> None:
    """Send the REST and gRPC plans, each slice with its own injected latency."""
    url = f"http://127.0.0.1:{simulator.rest_port}/v1/models/{MODEL}:predict"
    client = GrpcClient(f"127.0.0.1:{simulator.grpc_port}")
    faults = simulator.simulator.faults
    try:
        for plan, send in ((REST_PLAN, lambda: rest_predict(url)),
                           (GRPC_PLAN, lambda: grpc_predict(client))):
            for count, latency in plan:
                rule_id = (faults.add(FaultRule(model=MODEL, operations=frozenset({"predict"}),
                                                latency_seconds=latency))
                           if latency else None)
                try:
                    for _ in range(count):
                        send()
                finally:
                    if rule_id is not None:
                        faults.clear(rule_id)
    finally:
        client.close()


def rest_predict(url: str) -> None:
    reply = requests.post(url, json={"instances": [[1.0], [2.0]]}, timeout=10)
    assert reply.status_code == 200, reply.text
    assert reply.json() == {"predictions": [[2.5], [3.0]]}


def grpc_predict(client: GrpcClient) -> None:
    outputs, version = client.predict(MODEL, None, "serving_default",
                                      {"x": np.array([[1.0], [2.0]], dtype=np.float32)}, ["y"],
                                      Deadline.after(5))
    assert version == 123
    assert outputs["y"].tolist() == [[2.5], [3.0]]


def raw_page_count(page: str, model: str, status: str) -> float | None:
    """``:tensorflow:serving:request_count`` from TF Serving's page, read as the exact line TF
    Serving writes (labels in definition order, no spaces)."""
    line = re.search(r'^:tensorflow:serving:request_count\{model_name="%s",status="%s"\} (\S+)$'
                     % (re.escape(model), re.escape(status)), page, re.M)
    return float(line.group(1)) if line else None


def quantile_pair(prom, q: float, raw: str, bridged: str) -> tuple[float, float]:
    """Both quantiles evaluated at one instant, retried while either series is momentarily
    absent (a scrape that failed leaves a staleness marker)."""
    def both():
        at = time.time()
        raw_value = prom.query_value(f"histogram_quantile({q}, sum by (le) ({raw}))", at)
        bridged_value = prom.query_value(f"histogram_quantile({q}, sum by (le) ({bridged}))", at)
        if raw_value is None or bridged_value is None:
            return None
        return raw_value, bridged_value
    return wait_until(both, timeout=15, interval=0.1,
                      message=f"quantile {q} of {raw} and {bridged}")


def test_bridged_request_metrics_match_tfserving_page_in_prometheus(prometheus_for, simulator,
                                                                    start_exporter_for):
    exporter = start_exporter_for(simulator)
    prom = prometheus_for(exporter_and_tfserving_jobs(exporter, simulator))
    prom.wait_for_targets_up(["exporter", "tfserving"])

    drive_traffic(simulator)

    # Prometheus has scraped the final counts from both sides.
    for entrypoint, expected in (("rest", N_REST), ("grpc", M_GRPC)):
        for selector in (raw_latency(entrypoint, "count"), bridged_latency(entrypoint, "count")):
            prom.wait_for_value(f"sum({selector})", lambda v, n=expected: v == n, timeout=30)
    prom.wait_for_value(
        'tfserving_requests_total{job="exporter",model="half_plus_two",status="OK"}',
        lambda v: v == TOTAL, timeout=30)
    prom.wait_for_value(
        '{__name__=":tensorflow:serving:request_count",job="tfserving",'
        'model_name="half_plus_two",status="OK"}', lambda v: v == TOTAL, timeout=30)

    for entrypoint in RAW_LABELS:
        found = {}
        for q in QUANTILES:
            raw_q, bridged_q = quantile_pair(prom, q, raw_latency(entrypoint),
                                             bridged_latency(entrypoint))
            assert bridged_q * 1e6 == pytest.approx(raw_q, rel=1e-6), (entrypoint, q)
            found[q] = raw_q
        # The latency plan really spread the requests: p99 is at least two E33 buckets (×1.8
        # each) above p50, so the comparison above covered more than one bucket.
        assert found[0.99] > 3 * found[0.5], (entrypoint, found)

    # Exactly equal counts at one moment: traffic has stopped, so the exporter's scrape and
    # the page fetched right after it see the same state.
    exported = exporter.metrics()
    page = requests.get(f"http://127.0.0.1:{simulator.rest_port}{TFSERVING_PAGE}", timeout=10)
    assert page.status_code == 200
    bridged_total = sample_value(exported, "tfserving_requests_total", model=MODEL, status="OK")
    raw_total = raw_page_count(page.text, MODEL, "OK")
    assert raw_total == TOTAL
    assert bridged_total == raw_total
