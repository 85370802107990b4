"""The parser of TF Serving's own Prometheus page: every habit of docs/tfserving-behaviour.md §5.2, and garbage."""

from __future__ import annotations

import glob
import os

import pytest

from exporter.tfserving.prometheus_page import (PageError, _parse_lines, labels, parse_page,
                                                 split_le)

HERE = os.path.dirname(os.path.abspath(__file__))
# The sample page of docs/tfserving-behaviour.md §5.6 (see SOURCES.md).
SAMPLE = os.path.join(HERE, "testdata", "native", "reference-sample.txt")
REAL_PAGES = sorted(glob.glob(os.path.join(HERE, "testdata", "native", "*.txt")))


def sample_page() -> str:
    with open(SAMPLE, encoding="utf-8") as handle:
        return handle.read()


def test_sample_exposition_parses_with_types_and_type_only_families():
    families = parse_page(sample_page())
    latency = families[":tensorflow:serving:request_latency"]
    assert latency.type == "histogram"
    assert len(latency.samples) == 3 * 36  # 3 cells x (34 buckets + sum + count)
    assert families[":tensorflow:serving:request_log_count"].samples == []  # TYPE only
    assert families[":tensorflow:serving:request_log_count"].type == "counter"
    runs = families[":tensorflow:core:graph_runs"]
    assert runs.samples == [(":tensorflow:core:graph_runs", "", "7")]  # written with {}
    counts = {labels(text)["status"]: float(value)
              for _, text, value in families[":tensorflow:serving:request_count"].samples}
    assert counts == {"INVALID_ARGUMENT": 1.0, "OK": 6.0, "NOT_FOUND": 1.0}


def test_percent_g_limits_and_inf_are_read():
    families = parse_page(sample_page())
    buckets = [split_le(text)[1] for name, text, _ in
               families[":tensorflow:serving:request_latency"].samples
               if name.endswith("_bucket")][:34]
    assert buckets[:3] == ["10", "18", "32.4"]
    assert "1.27482e+06" in buckets
    assert buckets[-1] == "+Inf"


@pytest.mark.parametrize("page", [
    "# TYPE a counter\na{} 1\n",
    '# TYPE a histogram\na_bucket{le="1"} 0\na_bucket{le="+Inf"} 1\na_sum{} 3\na_count{} 1\n',
    'a{x="has \\"quotes\\" and \\\\ slash",y="}{,="} 2\n',
    'a{x="raw\nnewline"} 2\n',   # TF Serving does not escape newlines
    "a 1 1700000000000\n",        # a timestamp (not TF's, but legal)
    "# HELP a something\n# TYPE a gauge\na 1\n\n\nb 2\n",
])
def test_fast_and_line_by_line_parsers_agree(page):
    fast = parse_page(page)
    slow = _parse_lines(page[:-1], None)
    assert {n: (f.type, f.samples) for n, f in fast.items()} == \
        {n: (f.type, f.samples) for n, f in slow.items()}


def test_label_escapes_and_raw_newlines():
    family = parse_page('a{x="q\\"}\\\\",y="line1\nline2"} 2\n')["a"]
    assert labels(family.samples[0][1]) == {"x": 'q"}\\', "y": "line1\nline2"}


@pytest.mark.parametrize("page, message", [
    ("", "empty"),
    (":tensorflow:serving:request_count{model_name=\"m\",status=\"OK\"} 1",
     "does not end with a newline"),
    ("# TYPE a counter\na{} 1\n<html>\n", "line 3: not a metric sample"),
    ("a{} one\n", "line 1: value 'one' is not a number"),
    ("# TYPE a sometype\n", "unknown metric type 'sometype'"),
    ("9a 1\n", "invalid metric name '9a'"),
])
def test_garbled_or_cut_pages_are_errors(page, message):
    with pytest.raises(PageError, match=message):
        parse_page(page)


@pytest.mark.parametrize("page", ['a{x=unquoted} 1\n', 'a{x="unterminated} 1\nb 2\n'])
def test_malformed_labels_are_caught_when_the_family_is_read(page):
    # Label text is checked for the families a consumer reads, which keeps whole-page parsing
    # fast; the bridged families are always read, so garbage there still fails the scrape.
    family = parse_page(page)["a"]
    with pytest.raises(PageError, match="malformed labels"):
        labels(family.samples[0][1])


def test_unwanted_families_keep_no_samples_but_are_still_checked():
    families = parse_page("a 1\nb 2\n", wanted=lambda name: name == "a")
    assert families["a"].samples and "b" not in families
    with pytest.raises(PageError):
        parse_page("a 1\nb two\n", wanted=lambda name: name == "a")


@pytest.mark.parametrize("path", REAL_PAGES, ids=os.path.basename)
def test_real_pages_posted_by_users_parse(path):
    with open(path, encoding="utf-8") as handle:
        families = parse_page(handle.read())
    assert families
    for family in families.values():
        for _, text, _ in family.samples:
            labels(text)  # every label set is well formed


def test_real_pages_are_present():
    assert len(REAL_PAGES) >= 3, "tests/testdata/native/ should hold real pages (SOURCES.md)"
