"""The simulator's Prometheus page must be byte-identical in form to TF Serving's."""

import threading
from pathlib import Path

import pytest

from tfserving_simulator import tf_metrics
from tfserving_simulator.tf_metrics import Registry, ServingMetrics, format_g

# The sample page of docs/tfserving-behaviour.md §5.6 (tests/testdata/native/SOURCES.md).
SAMPLE = Path(__file__).resolve().parent.parent / "testdata" / "native" / "reference-sample.txt"

E33_TEXT = ("10, 18, 32.4, 58.32, 104.976, 188.957, 340.122, 612.22, 1102, 1983.59, 3570.47, "
            "6426.84, 11568.3, 20823, 37481.3, 67466.4, 121440, 218591, 393464, 708235, "
            "1.27482e+06, 2.29468e+06, 4.13043e+06, 7.43477e+06, 1.33826e+07, 2.40887e+07, "
            "4.33596e+07, 7.80473e+07, 1.40485e+08, 2.52873e+08, 4.55172e+08, 8.19309e+08, "
            "1.47476e+09")
Q52_TEXT = ("100, 120, 144, 172.8, 207.36, 248.832, 298.598, 358.318, 429.982, 515.978, 619.174, "
            "743.008, 891.61, 1069.93, 1283.92, 1540.7, 1848.84, 2218.61, 2662.33, 3194.8, "
            "3833.76, 4600.51, 5520.61, 6624.74, 7949.68, 9539.62, 11447.5, 13737.1, 16484.5, "
            "19781.4, 23737.6, 28485.2, 34182.2, 41018.6, 49222.4, 59066.8, 70880.2, 85056.2, "
            "102067, 122481, 146977, 176373, 211647, 253977, 304772, 365726, 438871, 526646, "
            "631975, 758370, 910044, 1.09205e+06")


def texts(limits):
    return ", ".join(format_g(limit) for limit in limits)


@pytest.mark.parametrize("limits, expected", [
    (tf_metrics.E33, E33_TEXT),
    (tf_metrics.LOAD_LATENCY_BY_STAGE_BUCKETS,
     E33_TEXT + ", 2.65456e+09, 4.77821e+09, 8.60078e+09, 1.54814e+10"),
    (tf_metrics.Q52, Q52_TEXT),
    (tf_metrics.P15, ", ".join(str(2 ** i) for i in range(15))),
    (tf_metrics.P14, ", ".join(str(2 ** i) for i in range(14))),
])
def test_bucket_sets_match_the_reference(limits, expected):
    assert texts(limits) == expected


def build_sample_registry() -> Registry:
    """The metrics and samples of the reference's sample exposition, fed through the registry."""
    r = Registry()
    path = "/models/half_plus_two/1"
    r.counter("/tensorflow/cc/saved_model/load_attempt_count", ("model_path", "status")) \
        .increment((path, "success"))
    r.counter("/tensorflow/cc/saved_model/load_latency", ("model_path",)).increment((path,), 63210)
    stages = r.histogram("/tensorflow/cc/saved_model/load_latency_by_stage",
                         ("model_path", "stage"), tf_metrics.LOAD_LATENCY_BY_STAGE_BUCKETS)
    stages.observe((path, "restore_graph"), 14204)
    stages.observe((path, "init_graph"), 2871)
    r.counter("/tensorflow/core/direct_session_runs").increment((), 7)
    r.counter("/tensorflow/core/graph_run_time_usecs").increment((), 1142)
    graph_hist = r.histogram("/tensorflow/core/graph_run_time_usecs_histogram", (),
                             tf_metrics.GRAPH_RUN_TIME_BUCKETS)
    for value in (60, 60, 60, 60, 300, 300, 302):
        graph_hist.observe((), value)
    r.counter("/tensorflow/core/graph_runs").increment((), 7)
    r.counter("/tensorflow/core/saved_model/read/api", ("api_label",)).increment(("cc_load",))
    r.counter("/tensorflow/core/saved_model/read/count", ("write_version",)).increment(("1",))
    r.gauge("/tensorflow/core/saved_model/read/path", (), "string").set((), path)
    r.gauge("/tensorflow/core/session_created", (), "bool").set((), True)
    r.histogram("/tensorflow/serving/batching_session/queuing_latency", ("thread_pool_name",),
                tf_metrics.Q52)
    r.counter("/tensorflow/serving/batching_session/wrapped_run_count")
    r.gauge("/tensorflow/serving/mlmd_map", ("model_name", "version"), "string")
    r.histogram("/tensorflow/serving/model_warmup_latency", ("model_path", "status"),
                tf_metrics.E33)
    r.counter("/tensorflow/serving/model_warmup_records_read", ("model_path", "status"))
    count = r.counter("/tensorflow/serving/request_count", ("model_name", "status"))
    count.increment(("nosuchmodel", "NOT_FOUND"))
    count.increment(("half_plus_two", "OK"), 6)
    count.increment(("half_plus_two", "INVALID_ARGUMENT"))
    r.counter("/tensorflow/serving/request_example_count_total", ("model",))
    r.histogram("/tensorflow/serving/request_example_counts", ("model",), tf_metrics.P15)
    latency = r.histogram("/tensorflow/serving/request_latency",
                          ("model_name", "API", "entrypoint"), tf_metrics.E33)
    for value in (400, 500, 765):
        latency.observe(("half_plus_two", "predict", "REST"), value)
    for value in (288, 289):
        latency.observe(("half_plus_two", "Predict", "GRPC"), value)
    latency.observe(("half_plus_two", "", "REST"), 94)
    r.counter("/tensorflow/serving/request_log_count", ("model_name", "status_code"))
    runtime = r.histogram("/tensorflow/serving/runtime_latency",
                          ("model_name", "API", "runtime"), tf_metrics.E33)
    for value in (60, 60, 60, 60, 300):
        runtime.observe(("half_plus_two", "Predict", "TF1"), value)
    return r


def test_page_reproduces_the_reference_sample_exposition_byte_for_byte():
    assert build_sample_registry().render() == SAMPLE.read_text()


def test_histogram_buckets_are_upper_exclusive():
    r = Registry()
    hist = r.histogram("/t/h", (), (1, 2, 4))
    hist.observe((), 2)
    assert r.render().splitlines()[1:] == [
        ':t:h_bucket{le="1"} 0',
        ':t:h_bucket{le="2"} 0',
        ':t:h_bucket{le="4"} 1',
        ':t:h_bucket{le="+Inf"} 1',
        ":t:h_sum{} 2",
        ":t:h_count{} 1",
    ]


def test_sample_above_the_last_limit_lands_only_in_inf_and_sum_uses_g_format():
    r = Registry()
    hist = r.histogram("/t/h", ("m",), (10,))
    hist.observe(("a",), 1234567)
    assert r.render().splitlines()[1:] == [
        ':t:h_bucket{m="a",le="10"} 0',
        ':t:h_bucket{m="a",le="+Inf"} 1',
        ':t:h_sum{m="a"} 1.23457e+06',
        ':t:h_count{m="a"} 1',
    ]


def test_label_values_escape_only_backslash_and_quote():
    r = Registry()
    r.counter("/t/c", ("v",)).increment(('a"b\\c\nd',))
    assert r.render() == '# TYPE :t:c counter\n:t:c{v="a\\"b\\\\c\nd"} 1\n'


def test_names_and_label_names_are_sanitised():
    r = Registry()
    r.counter("/t/x-y.z", ("1st", "a-b")).increment(("1", "2"))
    assert r.render().splitlines() == [
        "# TYPE :t:x:y:z counter", ':t:x:y:z{_1st="1",a_b="2"} 1']


def test_metrics_sort_by_original_name_not_exported_name():
    r = Registry()
    r.counter("/t/b0")
    r.counter("/t/b/x")
    # '/' sorts before '0', but ':' sorts after it: the original name decides.
    assert r.render() == "# TYPE :t:b:x counter\n# TYPE :t:b0 counter\n"


def test_cells_sort_by_label_tuple_and_idle_metrics_print_only_type():
    r = Registry()
    c = r.counter("/t/c", ("a", "b"))
    for labels in (("m", "z"), ("m", "OK"), ("B", "z")):
        c.increment(labels)
    r.gauge("/t/idle", ("x",))
    assert r.render() == (
        "# TYPE :t:c counter\n"
        ':t:c{a="B",b="z"} 1\n:t:c{a="m",b="OK"} 1\n:t:c{a="m",b="z"} 1\n'
        "# TYPE :t:idle gauge\n")


def test_label_less_cells_print_empty_braces_and_non_int_gauges_print_zero():
    r = Registry()
    r.gauge("/t/int", ()).set((), 42)
    r.gauge("/t/str", (), "string").set((), "/models/m/1")
    r.gauge("/t/bool", (), "bool").set((), True)
    assert r.render() == ("# TYPE :t:bool gauge\n:t:bool{} 0\n# TYPE :t:int gauge\n"
                          ":t:int{} 42\n# TYPE :t:str gauge\n:t:str{} 0\n")


def test_wrong_label_count_and_duplicate_names_are_rejected():
    r = Registry()
    c = r.counter("/t/c", ("a",))
    with pytest.raises(ValueError):
        c.increment(("x", "y"))
    with pytest.raises(ValueError):
        r.counter("/t/c")


SERVING_TYPES = [
    "# TYPE :tensorflow:serving:request_count counter",
    "# TYPE :tensorflow:serving:request_latency histogram",
    "# TYPE :tensorflow:serving:runtime_latency histogram",
    "# TYPE :tensorflow:serving:request_example_counts histogram",
    "# TYPE :tensorflow:serving:request_example_count_total counter",
    "# TYPE :tensorflow:serving:request_log_count counter",
    "# TYPE :tensorflow:serving:model_warmup_latency histogram",
    "# TYPE :tensorflow:serving:model_warmup_records_read counter",
    "# TYPE :tensorflow:serving:mlmd_map gauge",
    "# TYPE :tensorflow:serving:batching_session:queuing_latency histogram",
    "# TYPE :tensorflow:serving:batching_session:wrapped_run_count counter",
]


def test_fresh_serving_metrics_page_has_the_eleven_serving_metrics_as_bare_type_lines():
    page = ServingMetrics().render()
    lines = page.splitlines()
    for line in SERVING_TYPES:
        assert line in lines
    assert all(line.startswith("# TYPE ") for line in lines)
    assert "# HELP" not in page and page.endswith("\n") and not page.endswith("\n\n")
    assert len(lines) > 30  # the TF-core metrics are there too, as on a real page


def test_record_request_counts_every_request_but_times_only_successes():
    metrics = ServingMetrics()
    metrics.record_request("half_plus_two", "OK", "predict", "REST", 0.000094)
    metrics.record_request("half_plus_two", "NOT_FOUND", "predict", "REST", None)
    page = metrics.render()
    assert ':tensorflow:serving:request_count{model_name="half_plus_two",status="OK"} 1' in page
    assert (':tensorflow:serving:request_count{model_name="half_plus_two",status="NOT_FOUND"} 1'
            in page)
    assert (':tensorflow:serving:request_latency_sum{model_name="half_plus_two",API="predict",'
            'entrypoint="REST"} 94') in page
    assert page.count(":tensorflow:serving:request_latency_count{") == 1


def test_record_runtime_moves_runtime_latency_and_session_counters():
    metrics = ServingMetrics()
    metrics.record_runtime("m", "Predict", 0.0003)
    page = metrics.render()
    assert ':tensorflow:serving:runtime_latency_sum{model_name="m",API="Predict",runtime="TF1"} 300' in page
    assert ":tensorflow:core:graph_runs{} 1" in page
    assert ":tensorflow:core:direct_session_runs{} 1" in page
    assert ":tensorflow:core:graph_run_time_usecs{} 300" in page


def test_record_load_success_and_failure():
    metrics = ServingMetrics()
    metrics.record_load("/models/m/2", False, 0.001)
    metrics.record_load("/models/m/1", True, 0.06321)
    page = metrics.render()
    assert ':tensorflow:cc:saved_model:load_attempt_count{model_path="/models/m/2",status="fail"} 1' in page
    assert ':tensorflow:cc:saved_model:load_attempt_count{model_path="/models/m/1",status="success"} 1' in page
    assert ':tensorflow:cc:saved_model:load_latency{model_path="/models/m/1"} 63210' in page
    assert 'load_latency{model_path="/models/m/2"}' not in page
    for stage in ("init_graph", "restore_graph"):
        assert (f':tensorflow:cc:saved_model:load_latency_by_stage_count{{model_path="/models/m/1",'
                f'stage="{stage}"}} 1') in page
    assert ':tensorflow:core:saved_model:read:count{write_version="1"} 1' in page
    assert ":tensorflow:core:session_created{} 0" in page


def test_concurrent_recording_loses_nothing():
    metrics = ServingMetrics()

    def hammer():
        for _ in range(500):
            metrics.record_request("m", "OK", "Predict", "GRPC", 0.0001)

    threads = [threading.Thread(target=hammer) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert metrics.request_count.value(("m", "OK")) == 4000
    assert metrics.request_latency.snapshot(("m", "Predict", "GRPC"))[2] == 4000
