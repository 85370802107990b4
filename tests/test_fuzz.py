"""Property-based tests: untrusted input (TF Serving's page and replies, config files, golden
files) yields a result or a clear error of the documented type, never a crash or a hang; label
values with quotes, newlines and unicode survive the trip through /metrics."""

from __future__ import annotations

import contextlib
import json
import os
import tempfile

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from prometheus_client.parser import text_string_to_metric_families

from exporter.canary.golden import GoldenError, load_golden
from exporter.collectors.native import NativeCollector
from exporter.config import ConfigError, load_config
from exporter.exposition import encode
from exporter.tfserving.prometheus_page import PageError, labels, parse_page
from exporter.tfserving.rest_client import parse_metadata_reply, parse_status_reply
from exporter.tfserving.types import TFServingError

FUZZ = settings(max_examples=300, deadline=None,
                suppress_health_check=[HealthCheck.too_slow])

PAGE_ALPHABET = st.sampled_from(list('#{}"=,\\\n :_abcTYPEhistogramcounter0123456789.e+-Inf'))
page_text = st.text(alphabet=PAGE_ALPHABET, max_size=400)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=25)

TF_LINES = st.sampled_from([
    "# TYPE :tensorflow:serving:request_latency histogram",
    ':tensorflow:serving:request_latency_bucket{model_name="m",API="predict",entrypoint="REST",le="10"} 1',
    ':tensorflow:serving:request_latency_bucket{model_name="m",API="predict",entrypoint="REST",le="+Inf"} 2',
    ':tensorflow:serving:request_latency_sum{model_name="m",API="predict",entrypoint="REST"} 30',
    ':tensorflow:serving:request_latency_count{model_name="m",API="predict",entrypoint="REST"} 2',
    "# TYPE :tensorflow:serving:request_count counter",
    ':tensorflow:serving:request_count{model_name="m",status="OK"} 2',
    ':tensorflow:cc:saved_model:load_attempt_count{model_path="/m/1",status="success"} 1',
    ":tensorflow:core:graph_runs{} 7",
    "# TYPE :tensorflow:core:graph_runs counter",
])


@FUZZ
@given(page_text)
def test_page_parser_returns_families_or_page_error(text):
    try:
        families = parse_page(text)
    except PageError:
        return
    for family in families.values():
        for _, label_text, value in family.samples:
            float(value)
            try:
                labels(label_text)
            except PageError:
                pass


@FUZZ
@given(st.lists(TF_LINES, max_size=30), st.booleans())
def test_native_bridge_of_shuffled_tf_lines_is_valid_or_page_error(lines, passthrough):
    text = "\n".join(lines) + "\n"
    collector = NativeCollector("/metrics", lambda: {}, passthrough=passthrough)
    try:
        metrics = collector.convert(text)
    except PageError:
        return
    body, _ = encode(metrics, [], "text/plain")
    list(text_string_to_metric_families(body.decode()))  # a valid exposition


@FUZZ
@given(st.one_of(json_values.map(lambda v: json.dumps(v).encode()),
                 st.binary(max_size=64),
                 st.just(b"[" * 5000)))
def test_rest_replies_parse_or_raise_bad_reply(body):
    for parse in (parse_status_reply, parse_metadata_reply):
        try:
            parse(body)
        except TFServingError as err:
            assert err.code == "BAD_REPLY"


@contextlib.contextmanager
def _file_holding(text: str, name: str):
    """A fresh file with ``text`` for one hypothesis example (tmp_path is per test, not per
    example)."""
    with tempfile.TemporaryDirectory() as directory:
        path = os.path.join(directory, name)
        with open(path, "w", encoding="utf-8") as handle:
            handle.write(text)
        yield path


@FUZZ
@given(st.one_of(
    st.text(alphabet=st.sampled_from(list("abcdefgimnoprstuvwxyz_:.-[]{}'\" \n0123456789#&*!")),
            max_size=200),
    json_values.map(json.dumps)))
def test_config_files_load_or_raise_config_error(text):
    with _file_holding(text, "config.yaml") as path:
        try:
            load_config(path)
        except ConfigError as err:
            assert err.problems and all(isinstance(p, str) and p for p in err.problems)


GOLDEN_BASE = {"format": 1, "model": "m", "request": {"instances": [[1.0]]},
               "expected": {"y": [[2.5]]},
               "provenance": {"model": "m", "version": 1, "recorded_at": "2026-01-01T00:00:00Z",
                              "protocol": "grpc", "tool": "t"}}


@FUZZ
@given(st.one_of(
    json_values.map(json.dumps),
    st.dictionaries(st.sampled_from(sorted(GOLDEN_BASE) + ["labels", "tolerances", "data",
                                                           "label_output", "min_accuracy"]),
                    json_values, max_size=8).map(lambda d: json.dumps({**GOLDEN_BASE, **d})),
    st.text(max_size=200)))
def test_golden_files_load_or_raise_golden_error(text):
    with _file_holding(text, "golden.json") as path:
        try:
            load_golden(path)
        except GoldenError as err:
            assert err.problems and all(path in p for p in err.problems)


label_values = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=30)


@FUZZ
@given(label_values, label_values)
def test_label_values_survive_the_bridge_and_the_exposition(model, status):
    def escaped(value: str) -> str:  # TF Serving escapes only backslash and quote
        return value.replace("\\", "\\\\").replace('"', '\\"')

    page = ("# TYPE :tensorflow:serving:request_count counter\n"
            f':tensorflow:serving:request_count{{model_name="{escaped(model)}",'
            f'status="{escaped(status)}"}} 3\n'
            "# TYPE :tensorflow:serving:request_latency histogram\n"
            f':tensorflow:serving:request_latency_bucket{{model_name="{escaped(model)}",'
            'API="predict",entrypoint="REST",le="10"} 1\n'
            f':tensorflow:serving:request_latency_bucket{{model_name="{escaped(model)}",'
            'API="predict",entrypoint="REST",le="+Inf"} 1\n'
            f':tensorflow:serving:request_latency_sum{{model_name="{escaped(model)}",'
            'API="predict",entrypoint="REST"} 5\n')
    for accept in ("text/plain", "application/openmetrics-text; version=1.0.0"):
        body, _ = encode(NativeCollector("/m", lambda: {}).convert(page), [], accept)
        if "openmetrics" in accept:
            from prometheus_client.openmetrics.parser import \
                text_string_to_metric_families as parse_openmetrics
            families = list(parse_openmetrics(body.decode()))
        else:
            families = list(text_string_to_metric_families(body.decode()))
        found = {(s.name, s.labels.get("model"), s.labels.get("status"))
                 for f in families for s in f.samples}
        assert ("tfserving_requests_total", model, status) in found
        assert ("tfserving_request_duration_seconds_count", model, None) in found
