"""Hostile TF Serving replies, files and clients against the exporter as a process.

Each test replays one attack of the outside campaign (issue "Hostile inputs") and asserts the
exporter's promise: /metrics answers within the scrape timeout with correct series or an
honest failure; peak RSS stays under the pod's 128 MiB; no series is exported twice; what is
dropped is counted; the log grows by a bounded amount; and the next healthy reply is used at
once. The HTTP side's own attacks (idle connections, fd exhaustion, password floods) are in
test_http_hostile.py, the page parser's in test_native_hostile.py.
"""

from __future__ import annotations

import json
import os
import signal
import threading
from collections import Counter

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from exporter.config import load_config
from tests.exporter_process import ExporterProcess
from tests.helpers import sample_value, wait_until
from tests.hostile_fakes import (Drip, Hang, RawGrpcServer, RawHttpServer, Reply, Reset,
                                 Stream, grpc_metadata_reply, grpc_status_reply, page,
                                 status_json)

SCRAPE_TIMEOUT = 3.0
DEFAULT_MAX_MODELS = load_config(None, {}).limits.max_models
POD_MEMORY_MIB = 128
PAGE = "/monitoring/prometheus/metrics"
GOOD_PAGE = page([':tensorflow:serving:request_count{model_name="m",status="OK"} 7'],
                 {":tensorflow:serving:request_count": "counter"})


@pytest.fixture
def rest():
    server = RawHttpServer()
    server.route("/v1/models/m", Reply(status_json([("1", "AVAILABLE")])))
    server.route(PAGE, Reply(GOOD_PAGE, content_type="text/plain"))
    yield server
    server.close()


@pytest.fixture
def grpc_server():
    server = RawGrpcServer()
    server.replies.status = lambda request: grpc_status_reply([(1, "AVAILABLE")])
    server.replies.metadata = lambda request: grpc_metadata_reply("m", 1)
    yield server
    server.close()


@pytest.fixture
def start(tmp_path, rest, grpc_server):
    started: list[ExporterProcess] = []

    def run(*flags: str, config_file: str | None = None) -> ExporterProcess:
        exporter = ExporterProcess(
            str(tmp_path / f"exporter-{len(started)}.log"),
            f"--tfserving.grpc-address={grpc_server.address}",
            f"--tfserving.rest-address={rest.url}", "--model=m", *flags,
            config_file=config_file)
        started.append(exporter)
        return exporter

    yield run
    for exporter in started:
        exporter.stop()


def keeps_the_promise(exporter: ExporterProcess, scrapes: int = 3,
                      timeout: float = SCRAPE_TIMEOUT) -> str:
    """Scrape a few times; each answers 200 in time with unique series, and RSS stays under
    the pod limit. Returns the last exposition."""
    results = []
    for _ in range(scrapes):
        try:
            reply, seconds = exporter.scrape(timeout)
            results.append((reply.status_code, seconds, reply.text))
        except requests.RequestException as err:
            results.append((type(err).__name__, float("inf"), ""))
    peak = exporter.peak_rss_mib()
    _record(exporter, results, peak)
    for status, seconds, text in results:
        assert status == 200, f"{status}: {text[:500]}"
        assert seconds < timeout, f"scrape took {seconds:.2f}s against a {timeout}s timeout"
        assert_no_duplicate_series(text)
    assert peak < POD_MEMORY_MIB, f"peak RSS {peak:.0f} MiB"
    return results[-1][2]


def _record(exporter: ExporterProcess, results: list, peak: float) -> None:
    """With HOSTILE_REPORT set, append what this attack did to the exporter (one JSON line),
    for the before/after table of the closing note."""
    path = os.environ.get("HOSTILE_REPORT")
    if not path:
        return
    with open(path, "a", encoding="utf-8") as handle:
        handle.write(json.dumps({
            "test": os.environ.get("PYTEST_CURRENT_TEST", "").split(" ")[0],
            "statuses": [status for status, _, _ in results],
            "max_seconds": max(seconds for _, seconds, _ in results),
            "peak_rss_mib": round(peak, 1), "log_bytes": exporter.log_bytes()}) + "\n")


def assert_no_duplicate_series(text: str) -> None:
    seen = Counter((sample.name, tuple(sorted(sample.labels.items())))
                   for family in text_string_to_metric_families(text)
                   for sample in family.samples)
    duplicates = [key for key, count in seen.items() if count > 1]
    assert not duplicates, duplicates[:5]


def success(text: str, collector: str) -> float | None:
    return sample_value(text, "tfserving_exporter_collector_success", collector=collector)


def dropped(text: str, kind: str) -> float:
    return sample_value(text, "tfserving_exporter_dropped_total", kind=kind) or 0.0


# ---- memory ------------------------------------------------------------------------------------

@pytest.mark.parametrize("behaviour", [
    Stream(b'{"model_version_status": [' + b" " * 65536, length=100 << 20),  # 100 MB announced
    Stream(b" " * 65536),  # never ends, no length
    Stream(b"x" * 65536, length=10 << 20, status=500),  # a 10 MB error text
], ids=["100MB", "endless", "10MB-error"])
def test_huge_status_replies_fail_the_collector_not_the_memory(start, rest, behaviour):
    rest.route("/v1/models/m", behaviour)
    exporter = start("--collector.status.protocol=rest", "--collector.metadata.protocol=rest")
    log_before = exporter.log_bytes()
    text = keeps_the_promise(exporter, scrapes=4)
    assert success(text, "status") == 0
    assert sample_value(text, "tfserving_up", protocol="rest") == 1  # it did answer
    # One warning for the problem, clipped: not 20 MB per scrape.
    assert exporter.log_bytes() - log_before < 8192
    rest.route("/v1/models/m", Reply(status_json([("1", "AVAILABLE")])))
    assert success(keeps_the_promise(exporter, scrapes=1), "status") == 1


@pytest.mark.parametrize("body, problem", [
    (b"a 1\n" * (30 << 18), "larger than"),  # 30 MB, 7.8e6 lines
    (page([f':tensorflow:core:x{{l="{i}{"v" * (1 << 20)}"}} 1' for i in range(8)],
          {":tensorflow:core:x": "gauge"}), None),  # 1 MB label values
], ids=["30MB-page", "1MB-label-values"])
def test_huge_pages_are_refused_or_cut_within_memory(start, rest, body, problem):
    rest.route(PAGE, Reply(body, content_type="text/plain"))
    exporter = start("--collector.native.passthrough=true")
    text = keeps_the_promise(exporter)
    if problem:
        assert success(text, "native") == 0
        assert problem in exporter.log_text()
    else:
        assert "tensorflow_core_x" not in text
        assert dropped(text, "native_invalid") > 0


def test_metadata_with_1e5_signatures_is_cut_and_counted(start, grpc_server):
    reply = grpc_metadata_reply("m", 100_000, tensors_each=0, method="")  # 2.5 MB
    grpc_server.replies.metadata = lambda request: reply
    exporter = start()
    text = keeps_the_promise(exporter)
    signatures = [s for f in text_string_to_metric_families(text) for s in f.samples
                  if s.name == "tfserving_model_signature_info"]
    assert len(signatures) == 50  # limits.max_signatures_per_version
    assert dropped(text, "signature") >= 3 * (100_000 - 50)  # counted on every scrape


def test_metadata_over_the_reply_budget_fails_that_version_only(start, grpc_server):
    reply = grpc_metadata_reply("m", 100_000)  # 6.4 MB, over gRPC's 4 MiB
    grpc_server.replies.metadata = lambda request: reply
    exporter = start()
    text = keeps_the_promise(exporter)
    assert success(text, "metadata") == 0 and success(text, "status") == 1
    assert "RESOURCE_EXHAUSTED" in exporter.log_text()


@pytest.mark.parametrize("make", [
    lambda path: os.symlink("/dev/zero", path),
    lambda path: os.mkfifo(path),
    lambda path: open(path, "wb").truncate(64 << 20),  # sparse 64 MiB
], ids=["dev-zero", "fifo", "64MiB"])
def test_a_models_config_that_is_not_a_file_is_refused_at_once(start, tmp_path, make):
    models_config = tmp_path / "models.config"
    models_config.write_text('model_config_list { config { name: "m" base_path: "/m" } }')
    exporter = start(f"--tfserving.model-config-file={models_config}")
    os.unlink(models_config)
    make(str(models_config))
    text = keeps_the_promise(exporter)
    assert sample_value(text, "tfserving_up", protocol="grpc") == 1
    assert exporter.log_text().count("cannot read model config file") == 1


def test_an_emptied_models_config_keeps_the_last_model_list(start, tmp_path):
    models_config = tmp_path / "models.config"
    models_config.write_text('model_config_list { config { name: "n" base_path: "/n" } }')
    exporter = start(f"--tfserving.model-config-file={models_config}")
    assert sample_value(keeps_the_promise(exporter, scrapes=1),
                        "tfserving_model_available_versions", model="n") == 1
    models_config.write_text("")  # a rewrite that truncates first
    # The file is looked at on each scrape and read in the background.
    wait_until(lambda: exporter.scrape()[0].ok and "empty" in exporter.log_text(), timeout=10,
               message="the refusal")
    assert sample_value(keeps_the_promise(exporter, scrapes=2),
                        "tfserving_model_available_versions", model="n") == 1


# ---- deadlines ---------------------------------------------------------------------------------

def test_hung_scrapes_and_reload_requests_leave_a_thread_for_health_checks(start, rest):
    for prefix in ("/v1/", PAGE):
        rest.route(prefix, Hang())
    exporter = start("--collector.status.protocol=rest", "--collector.metadata.protocol=rest")
    results: list[int] = []

    def hold(method: str, path: str) -> None:
        reply = requests.request(method, exporter.url + path, timeout=40,
                                 headers={"X-Prometheus-Scrape-Timeout-Seconds": "3"})
        results.append(reply.status_code)

    holders = [threading.Thread(target=hold, args=("GET", "/metrics")) for _ in range(10)]
    holders += [threading.Thread(target=hold, args=("POST", "/-/reload")) for _ in range(6)]
    for thread in holders:
        thread.start()
    for _ in range(5):
        reply, seconds = exporter.scrape(path="/-/healthy")
        assert reply.status_code == 200 and seconds < 1.0, seconds
    for thread in holders:
        thread.join(timeout=60)
    assert len(results) == len(holders) and set(results) <= {200, 500, 503}



def test_a_huge_models_config_is_parsed_off_the_scrape_path(start, tmp_path):
    models_config = tmp_path / "models.config"
    models_config.write_text('model_config_list { config { name: "m" base_path: "/m" } }')
    exporter = start(f"--tfserving.model-config-file={models_config}")
    entry = 'config {{ name: "model_{0:06d}" base_path: "/models/model_{0:06d}" }}\n'
    staged = tmp_path / "staged.config"
    staged.write_text("model_config_list {\n" + "".join(entry.format(i) for i in range(45_000))
                      + "}\n")  # 3.6 MiB: seconds of text-format parsing
    os.replace(staged, models_config)
    keeps_the_promise(exporter, scrapes=2, timeout=1.0)

    def capped() -> str | None:
        text = exporter.scrape(SCRAPE_TIMEOUT)[0].text
        return text if dropped(text, "model") > 0 else None

    text = wait_until(capped, timeout=30, message="the new models.config in use")
    assert dropped(text, "model") >= 45_001 - DEFAULT_MAX_MODELS



def test_a_dripping_page_cannot_hold_scrapes_or_later_ones(start, rest):
    rest.route(PAGE, Drip(GOOD_PAGE * 100, every=0.05))
    exporter = start()
    text = keeps_the_promise(exporter, scrapes=5)
    assert success(text, "native") == 0
    assert sample_value(text, "tfserving_up", protocol="grpc") == 1
    rest.route(PAGE, Reply(GOOD_PAGE, content_type="text/plain"))
    text = keeps_the_promise(exporter, scrapes=1)  # recovers on the next scrape
    assert success(text, "native") == 1
    assert sample_value(text, "tfserving_requests_total", model="m", status="OK") == 7


@pytest.mark.parametrize("behaviour", [Drip(GOOD_PAGE * 100, every=0.05), Hang(), Reset()],
                         ids=["drip", "hang", "reset"])
def test_a_stuck_rest_port_cannot_starve_grpc(start, rest, behaviour):
    # Every REST call misbehaves (ping, status, page) while gRPC is healthy: the gRPC side
    # must keep its workers, its "up" and its models.
    for prefix in ("/v1/", PAGE):
        rest.route(prefix, behaviour)
    exporter = start("--model=n", "--model=o", "--model=p")
    text = keeps_the_promise(exporter, scrapes=4)
    assert sample_value(text, "tfserving_up", protocol="grpc") == 1
    for model in ("m", "n", "o", "p"):
        assert sample_value(text, "tfserving_model_available_versions", model=model) == 1


def test_parsing_a_huge_page_stops_at_the_deadline(start, rest):
    # 200,000 lines in 13.7 MB: under the 16 MiB budget, so it is read and parsed, and the
    # parse (about a second) meets the 0.5 s budget of a 1 s scrape timeout.
    lines = [f':tensorflow:serving:request_count{{model_name="m{i}",status="OK"}} 1'
             for i in range(200_000)]
    body = page(lines, {":tensorflow:serving:request_count": "counter"})
    assert len(body) < 16 << 20
    rest.route(PAGE, Reply(body, content_type="text/plain"))
    exporter = start()
    text = keeps_the_promise(exporter, scrapes=3, timeout=1.0)
    assert success(text, "native") == 0
    assert "scrape deadline" in exporter.log_text()


# ---- wrong or lost data ------------------------------------------------------------------------

def test_a_400_digit_version_is_an_error_for_that_model_only(start, rest):
    rest.route("/v1/models/m", Reply(status_json([("9" * 400, "AVAILABLE")])))
    rest.route("/v1/models/n", Reply(status_json([("2", "AVAILABLE")])))
    exporter = start("--collector.status.protocol=rest", "--collector.metadata.protocol=rest",
                     "--model=n")
    text = keeps_the_promise(exporter)
    assert success(text, "status") == 0
    assert sample_value(text, "tfserving_model_serving_version", model="n") == 2
    assert sample_value(text, "tfserving_exporter_scrape_errors_total", reason="internal") == 0


def test_duplicate_versions_over_rest_are_merged_and_counted(start, rest):
    rest.route("/v1/models/m", Reply(status_json(
        [("01", "AVAILABLE"), ("1", "END"), ("2", "LOADING"), ("2", "LOADING")])))
    exporter = start("--collector.status.protocol=rest", "--collector.metadata.protocol=rest")
    text = keeps_the_promise(exporter)
    # The furthest state wins whatever the order: version 1 is END.
    assert sample_value(text, "tfserving_model_version_state", model="m", version="1",
                        state="END") == 1
    assert dropped(text, "duplicate_version") >= 2


def test_duplicate_versions_over_grpc_are_merged_and_counted(start, grpc_server):
    grpc_server.replies.status = lambda request: grpc_status_reply(
        [(3, "AVAILABLE"), (3, "AVAILABLE"), (3, "UNLOADING")])
    exporter = start()
    text = keeps_the_promise(exporter)
    assert sample_value(text, "tfserving_model_version_state", model="m", version="3",
                        state="UNLOADING") == 1
    assert dropped(text, "duplicate_version") >= 2


def test_bridged_models_are_capped_by_max_models(start, rest):
    lines = [f':tensorflow:serving:request_count{{model_name="x{i:05d}",status="OK"}} 1'
             for i in range(100_000)]
    rest.route(PAGE, Reply(page(lines, {":tensorflow:serving:request_count": "counter"}),
                           content_type="text/plain"))
    exporter = start()
    text = keeps_the_promise(exporter)
    requests_series = [s for f in text_string_to_metric_families(text) for s in f.samples
                       if s.name == "tfserving_requests_total"]
    assert len(requests_series) <= DEFAULT_MAX_MODELS
    assert dropped(text, "native_series") >= 100_000 - DEFAULT_MAX_MODELS


def test_passthrough_never_exports_an_invalid_page(start, rest):
    rest.route(PAGE, Reply(page([
        ":tensorflow:core:a{} NaN", ":tensorflow:core:b{} -5", ":tensorflow:core:c{} +Inf",
        ':tensorflow:core:d{x="1"} 2', ':tensorflow:core:d{x="1"} 3',
        ':tensorflow:core:h_bucket{le="10"} 5', ':tensorflow:core:h_bucket{le="+Inf"} 3',
        ":tensorflow:core:h_sum{} 1", ":tensorflow:core:h_count{} 3",
        ':tensorflow:serving:request_latency_bucket{model_name="m",API="predict",'
        'entrypoint="REST",le="abc"} 1',
    ], {":tensorflow:core:a": "counter", ":tensorflow:core:b": "counter",
        ":tensorflow:core:c": "counter", ":tensorflow:core:d": "gauge",
        ":tensorflow:core:h": "histogram", ":tensorflow:serving:request_latency": "histogram"}),
        content_type="text/plain"))
    exporter = start("--collector.native.passthrough=true")
    keeps_the_promise(exporter)
    reply = requests.get(exporter.url + "/metrics", timeout=10,
                         headers={"Accept": "application/openmetrics-text; version=1.0.0"})
    from prometheus_client.openmetrics.parser import text_string_to_metric_families as om
    families = {f.name: f for f in om(reply.text)}  # raises on an invalid exposition
    assert "tensorflow_core_a" not in families or not families["tensorflow_core_a"].samples
    text = keeps_the_promise(exporter, scrapes=1)
    assert dropped(text, "native_invalid") > 0
    assert "Traceback" not in exporter.log_text()


def test_a_truncated_config_is_not_applied_by_a_reload(start, tmp_path):
    config = tmp_path / "config.yaml"
    config.write_text("collectors: {native: {enabled: false}}\n")
    exporter = start(config_file=str(config))
    config.write_text("")  # an editor between truncating and writing
    reply = requests.post(exporter.url + "/-/reload", timeout=30)
    assert reply.status_code == 500 and "empty" in reply.text
    text = keeps_the_promise(exporter, scrapes=1)
    assert success(text, "native") is None  # still the file's setting, not the default
    assert sample_value(text, "tfserving_exporter_config_last_reload_successful") == 0


def test_a_golden_file_that_is_a_fifo_cannot_hang_a_reload_or_the_stop(start, tmp_path):
    fifo = tmp_path / "golden.json"
    os.mkfifo(fifo)
    config = tmp_path / "config.yaml"
    config.write_text("models: [m]\n")
    exporter = start(config_file=str(config))
    config.write_text(f"models: [m]\ncanary: {{golden_files: [{json.dumps(str(fifo))}]}}\n")
    reply = requests.post(exporter.url + "/-/reload", timeout=30)
    assert reply.status_code == 500 and "not a regular file" in reply.text
    exporter.signal(signal.SIGHUP)
    assert exporter.stop(timeout=10) == 0


# ---- CPU, threads, noise -----------------------------------------------------------------------

def test_a_reload_storm_is_coalesced_and_leaves_no_threads_behind(start, tmp_path):
    config = tmp_path / "config.yaml"
    config.write_text("models: [m]\n")
    exporter = start(config_file=str(config))
    keeps_the_promise(exporter, scrapes=1)
    threads_before = exporter.threads()

    def storm() -> None:
        for _ in range(25):
            requests.post(exporter.url + "/-/reload", timeout=30)

    stormers = [threading.Thread(target=storm) for _ in range(4)]
    for thread in stormers:
        thread.start()
    for _ in range(20):
        exporter.signal(signal.SIGHUP)
    for thread in stormers:
        thread.join(timeout=60)
    keeps_the_promise(exporter, scrapes=2)
    wait_until(lambda: exporter.threads() <= threads_before + 4, timeout=10,
               message=f"threads back near {threads_before}")
    assert exporter.rss_mib() < POD_MEMORY_MIB


def test_changing_grpc_error_details_are_logged_once_not_per_scrape(start, grpc_server):
    import grpc

    count = iter(range(10**6))
    grpc_server.replies.status = lambda request: (
        grpc.StatusCode.INTERNAL, f"failure number {next(count)} " + "x" * 10_000)
    exporter = start()
    log_before = exporter.log_bytes()
    keeps_the_promise(exporter, scrapes=6)
    assert exporter.log_bytes() - log_before < 8192


def test_bad_values_on_the_page_log_no_traceback_per_scrape(start, rest):
    rest.route(PAGE, Reply(page([
        ':tensorflow:serving:request_latency_bucket{model_name="m",API="predict",'
        'entrypoint="REST",le="abc"} 1',
        ':tensorflow:cc:saved_model:load_attempt_count{model_path="/models/m/²",'
        'status="success"} 1',
    ], {":tensorflow:serving:request_latency": "histogram",
        ":tensorflow:cc:saved_model:load_attempt_count": "counter"}), content_type="text/plain"))
    exporter = start()
    log_before = exporter.log_bytes()
    text = keeps_the_promise(exporter, scrapes=5)
    assert "Traceback" not in exporter.log_text()
    assert exporter.log_bytes() - log_before < 4096
    assert sample_value(text, "tfserving_model_load_attempts_total", model="m", version="²",
                        status="success") == 1


# ---- HTTP details ------------------------------------------------------------------------------

def test_head_answers_without_collecting(start, rest, grpc_server):
    exporter = start()
    calls_before, requests_before = grpc_server.calls, len(rest.requests)
    reply = requests.head(exporter.url + "/metrics", timeout=10)
    assert reply.status_code == 200 and reply.content == b""
    assert "Content-Length" not in reply.headers  # not 0: GET's length is not known
    assert reply.headers["Vary"] == "Accept-Encoding"
    assert (grpc_server.calls, len(rest.requests)) == (calls_before, requests_before)


@pytest.mark.parametrize("accept_encoding, gzipped", [
    ("gzip", True), ("GZIP", True), ("gzip;q=0", False), ("gzip; q=0.5, identity", True),
    ("*", True), ("*;q=0", False), ("identity", False), ("br, *;q=0.1", True),
    ("gzip;q=0, *", False), ("", False), ("gzip;q=abc", False),
])
def test_gzip_is_negotiated(start, accept_encoding, gzipped):
    exporter = start()
    reply = requests.get(exporter.url + "/metrics", timeout=10, stream=True,
                         headers={"Accept-Encoding": accept_encoding})
    assert (reply.headers.get("Content-Encoding") == "gzip") == gzipped
    assert reply.headers["Vary"] == "Accept-Encoding"
    reply.close()


def test_a_scrape_timeout_below_the_offset_still_leaves_half_for_the_calls(start):
    exporter = start()
    reply, _ = exporter.scrape(0.4)
    assert sample_value(reply.text, "tfserving_exporter_scrape_timeout_seconds") == 0.2
    assert sample_value(reply.text, "tfserving_up", protocol="grpc") == 1


def test_reload_endpoint_can_be_switched_off(start):
    exporter = start("--web.enable-lifecycle=false")
    reply = requests.post(exporter.url + "/-/reload", timeout=10)
    assert reply.status_code == 403 and "SIGHUP" in reply.text


def test_a_page_over_max_page_size_fails_the_native_collector_naming_the_setting(
        start, rest, tmp_path):
    lines = [f':tensorflow:serving:request_count{{model_name="m{i:05d}",status="OK"}} 1'
             for i in range(2_000)]  # ~150 KiB
    rest.route(PAGE, Reply(page(lines, {":tensorflow:serving:request_count": "counter"}),
                           content_type="text/plain"))
    config = tmp_path / "page.yaml"
    config.write_text("collectors:\n  native:\n    max_page_size: 64KiB\n")
    exporter = start(config_file=str(config))
    text = keeps_the_promise(exporter)
    assert success(text, "native") == 0 and success(text, "status") == 1
    wait_until(lambda: "larger than collectors.native.max_page_size (64KiB)"
               in exporter.log_text(), timeout=10, message="the log line")
    # raised, the same page is bridged
    config.write_text("collectors:\n  native:\n    max_page_size: 1MiB\n")
    bigger = start(config_file=str(config))
    assert success(keeps_the_promise(bigger), "native") == 1
