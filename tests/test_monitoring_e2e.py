"""Dashboards and rules against a real Prometheus that scrapes a real exporter under traffic.

One Prometheus (1 s scrapes, 1 s rule evaluation, the shipped rules loaded) scrapes an exporter
with the demo golden sets (canaries every second) that watches the simulator while a thread
sends predicts. Then:

- every query of every panel of every dashboard, with the template variables substituted as
  Grafana would (``$job``, ``$instance``, ``$model`` = All, ``$__rate_interval`` = 1m), returns
  data, and so do the template variables' own queries;
- every recording rule is healthy and records series;
- injected faults make the matching alerts fire: a version that fails to load, a bad version
  rolled out (canary failing on the serving version), and TF Serving stopped (unreachable).

The alerts' ``for:`` durations (minutes) are too long for a test, so Prometheus loads a copy of
the rules file in which every ``for:`` is 1 s; expressions, labels and annotations are the
shipped ones. The exporter's scrape job is named ``tfserving-exporter`` so that the rules' job
selector is tested as shipped.

Some series only exist after an event, so the test provokes them first: a burst of concurrent
scrapes while TF Serving's status calls are slow (``tfserving_exporter_scrape_errors_total``),
a broken version (failed load attempts, ``tfserving_model_version_error``), and observations of
the batching queue histogram, which the simulator registers but, not modelling
``--enable_batching``, never moves.
"""

from __future__ import annotations

import math
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import requests
import yaml

from tests.helpers import wait_until
from tests.prometheus_harness import exporter_and_tfserving_jobs
from tests.prometheus_harness import prometheus_for  # noqa: F401  (pytest fixture)
from tests.test_dashboards import DASHBOARD_FILES, data_panels, load
from tests.test_rules import RULES, recording_names
from tfserving_simulator.demo_files import STANDIN_GOLDEN_DIR
from tfserving_simulator.demo_models import write_broken_version, write_half_plus_two
from tfserving_simulator.faults import FaultRule

JOB = "tfserving-exporter"
RATE_INTERVAL = "1m"
BATCHING_HISTOGRAM = "/tensorflow/serving/batching_session/queuing_latency"
TRAFFIC_PAUSE_SECONDS = 0.05


def fast_rules(tmp_path) -> str:
    """The shipped rules with every alert's ``for:`` shortened to 1 s."""
    with open(RULES, encoding="utf-8") as handle:
        rules = yaml.safe_load(handle)
    for group in rules["groups"]:
        for rule in group["rules"]:
            if "alert" in rule:
                rule["for"] = "1s"
    path = tmp_path / "tfserving.rules.fast.yaml"
    path.write_text(yaml.safe_dump(rules, sort_keys=False))
    return str(path)


def substitute(expr: str, instance: str) -> str:
    """Grafana's variable interpolation for one query, All selected for ``$model``."""
    values = {"$__rate_interval": RATE_INTERVAL, "$__interval": "15s", "$__range": "5m",
              "$job": JOB, "$instance": instance.replace(".", r"\\."), "$model": ".+"}
    for name in sorted(values, key=len, reverse=True):
        expr = expr.replace("${%s}" % name[1:], values[name]).replace(name, values[name])
    assert "$" not in expr, expr
    return expr


def provoke_scrape_errors(exporter, simulator) -> None:
    """Fill the exporter's 4 scrape slots with slow scrapes until a fifth gets a 503."""
    rule = simulator.simulator.faults.add(FaultRule(operations=frozenset({"status"}),
                                                    latency_seconds=2.0))
    stop = threading.Event()

    def hold_a_slot():
        while not stop.is_set():
            exporter.get(headers={"X-Prometheus-Scrape-Timeout-Seconds": "10"}, timeout=15)

    try:
        with ThreadPoolExecutor(4) as pool:
            holders = [pool.submit(hold_a_slot) for _ in range(4)]
            try:
                # Budget 0.5 s: while 4 slow scrapes hold the slots, it gets 503 at once.
                wait_until(lambda: exporter.get(
                    headers={"X-Prometheus-Scrape-Timeout-Seconds": "1"}, timeout=15
                ).status_code == 503, timeout=20, interval=0.05, message="a 503 scrape")
            finally:
                stop.set()
            for holder in holders:
                holder.result(timeout=30)
    finally:
        simulator.simulator.faults.clear(rule)


class Traffic:
    """Predicts (a few of them invalid) and batching-queue observations until stopped."""

    def __init__(self, simulator) -> None:
        self.url = f"http://127.0.0.1:{simulator.rest_port}/v1/models/half_plus_two:predict"
        self.batching = simulator.simulator.metrics.registry.get(BATCHING_HISTOGRAM)
        self.stop_event = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.sent = 0

    def run(self) -> None:
        session = requests.Session()
        session.trust_env = False
        while not self.stop_event.is_set():
            body = {"instances": [1.0]} if self.sent % 10 else {"instancez": [1.0]}
            try:
                session.post(self.url, json=body, timeout=10)
            except requests.RequestException:
                pass  # TF Serving stopped on purpose at the end
            self.batching.observe(("batch_threads",), 200 + 100 * (self.sent % 20))  # µs
            self.sent += 1
            self.stop_event.wait(TRAFFIC_PAUSE_SECONDS)  # pacing, not waiting for a result
        session.close()

    def __enter__(self) -> "Traffic":
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop_event.set()
        self.thread.join(timeout=15)


def dashboard_queries(instance: str) -> dict[str, str]:
    """``"<dashboard> / <panel> [refId]"`` → substituted query, for every target."""
    queries = {}
    for path in DASHBOARD_FILES:
        dashboard = load(path)
        for panel in data_panels(dashboard):
            for target in panel["targets"]:
                key = f"{dashboard['uid']} / {panel['title']} [{target['refId']}]"
                queries[key] = substitute(target["expr"], instance)
        for variable in dashboard["templating"]["list"]:
            if variable["type"] == "query":
                selector, label = variable["query"][len("label_values("):-1].rsplit(",", 1)
                queries[f"{dashboard['uid']} / variable {variable['name']}"] = substitute(
                    f"count by ({label.strip()}) ({selector})", instance)
    return queries


def has_number(result: list[dict]) -> bool:
    return any(not math.isnan(float(sample["value"][1])) for sample in result)


def wait_for_all_queries(prom, queries: dict[str, str], timeout: float) -> None:
    """Poll the queries still without data until none is left (each answered once is done)."""
    pending = dict(queries)

    def drained():
        for key, expr in list(pending.items()):
            if has_number(prom.query(expr)):
                del pending[key]
        return not pending

    try:
        wait_until(drained, timeout=timeout, interval=0.2, message="every panel query")
    except AssertionError:
        raise AssertionError("queries without data:\n" + "\n".join(
            f"{key}: {expr}" for key, expr in sorted(pending.items()))) from None


def test_dashboards_and_rules_work_against_prometheus(prometheus_for, simulator,
                                                      start_exporter_for, tmp_path):
    started = time.monotonic()
    exporter = start_exporter_for(simulator, canary__golden_dir=STANDIN_GOLDEN_DIR,
                                  canary__interval="1s")
    instance = f"127.0.0.1:{exporter.running.port}"
    provoke_scrape_errors(exporter, simulator)
    # A version that fails to load (no saved_model.pb): v1 keeps serving.
    write_broken_version(f"{simulator.models_root}/image_classifier", 2)

    jobs = exporter_and_tfserving_jobs(exporter, simulator)
    jobs[0]["job_name"] = JOB
    prom = prometheus_for(jobs, rule_files=[fast_rules(tmp_path)], evaluation_interval="1s")

    with Traffic(simulator) as traffic:
        prom.wait_for_targets_up([JOB, "tfserving"])

        # Every panel and variable query returns at least one number.
        queries = dashboard_queries(instance)
        assert len(queries) > 40
        wait_for_all_queries(prom, queries, timeout=40)
        models = {r["metric"]["model"] for r in prom.query(
            queries["tfserving-overview / variable model"])}
        assert models == {"half_plus_two", "image_classifier"}

        # Every rule is loaded and healthy; every recording rule records series.
        rules = [rule for group in prom.rules() for rule in group["rules"]]
        assert {rule["name"] for rule in rules if rule["type"] == "recording"} == recording_names()
        assert [(rule["name"], rule.get("lastError")) for rule in rules
                if rule["health"] != "ok"] == []
        for name in sorted(recording_names()):
            assert has_number(prom.query(f'{name}{{job="{JOB}"}}')), name

        # The version that failed to load.
        failed = prom.wait_for_alert("TFServingModelVersionLoadFailed", "firing", timeout=20)
        assert {(a["labels"]["model"], a["labels"]["version"]) for a in failed} \
            == {("image_classifier", "2")}
        assert failed[0]["labels"]["severity"] == "warning"

        # Healthy so far: the serving versions pass their canaries.
        assert not [a for a in prom.alerts()
                    if a["labels"]["alertname"] == "TFServingCanaryFailingOnServingVersion"]

        # A bad version rolls out: it loads, serves, and answers b=2.01 instead of 2.
        write_half_plus_two(f"{simulator.models_root}/half_plus_two", 124, b=2.01)
        prom.wait_for_value(
            f'model_version:tfserving_model_serving_version:info{{model="half_plus_two",'
            f'version="124"}}', lambda value: value == 1, timeout=20)
        bad = prom.wait_for_alert("TFServingCanaryFailingOnServingVersion", "firing", timeout=20)
        assert [(a["labels"]["model"], a["labels"]["version"], a["labels"]["instance"],
                 a["labels"]["severity"]) for a in bad] \
            == [("half_plus_two", "124", instance, "critical")]
        assert bad[0]["annotations"]["runbook_url"].endswith(
            "#tfservingcanaryfailingonservingversion")
        assert traffic.sent > 0

    # TF Serving goes away.
    simulator.stop()
    down = prom.wait_for_alert("TFServingUnreachable", "firing", timeout=20)
    assert {a["labels"]["protocol"] for a in down} == {"grpc", "rest"}
    assert all(a["labels"]["instance"] == instance for a in down)
    assert time.monotonic() - started < 90
