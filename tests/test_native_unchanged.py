"""What the native collector reuses from the last page (unchanged blocks that go nowhere,
unchanged histogram series) never changes what a scrape exports: a collector that has seen
other pages converts a page exactly as a fresh one does, with the same drops and problems."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from exporter.collectors.native import REQUEST_LATENCY, NativeCollector
from exporter.exposition import encode
from exporter.tfserving.prometheus_page import PageError
from tests.test_native_hostile import Drops

PROPERTY = settings(max_examples=300, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow])
OPENMETRICS = "application/openmetrics-text; version=1.0.0"
MODELS = ("a", "b", "c")
LIMITS = ("10", "100", "+Inf")


def _histogram(name: str, model: str, api: str, counts: list[int], total: str,
               count: str | None, extra_sum: bool) -> list[str]:
    labels = f'model_name="{model}",API="{api}",entrypoint="REST"'
    lines = [f'{name}_bucket{{{labels},le="{le}"}} {n}' for le, n in zip(LIMITS, counts)]
    lines.append(f"{name}_sum{{{labels}}} {total}")
    if count is not None:
        lines.append(f"{name}_count{{{labels}}} {count}")
    if extra_sum:  # not TF's shape: a third tail line
        lines.append(f"{name}_sum{{{labels}}} {total}")
    return lines


# Few distinct values, so that two pages drawn independently share many series byte for byte.
series = st.builds(
    _histogram,
    st.sampled_from([REQUEST_LATENCY, ":tensorflow:serving:runtime_latency",
                     ":tensorflow:core:other_latency"]),
    st.sampled_from(MODELS), st.sampled_from(["predict", "Predict"]),
    st.sampled_from([[0, 1, 1], [1, 1, 2], [2, 1, 2], [0, 0, 0]]),  # [2, 1, 2] is invalid
    st.sampled_from(["30", "5", "-1"]),
    st.sampled_from(["1", "2", None, "0"]),
    st.sampled_from([False, False, False, True]),
)
counter_lines = st.builds(
    lambda model, status, value: [
        f':tensorflow:serving:request_count{{model_name="{model}",status="{status}"}} {value}'],
    st.sampled_from(MODELS), st.sampled_from(["OK", "INVALID_ARGUMENT"]),
    st.sampled_from(["1", "7"]))


# TYPE lines that change where a histogram's lines belong (a family typed otherwise, or its
# _bucket samples declared a family of their own).
RETYPES = [(REQUEST_LATENCY, "untyped"), (REQUEST_LATENCY + "_bucket", "gauge"),
           (":tensorflow:serving:runtime_latency_count", "counter")]


def _page(groups: list[list[str]], retypes=()) -> bytes:
    """TF's layout: each family's lines under its TYPE line, in the order first seen; then
    the ``retypes`` TYPE lines."""
    by_family: dict[str, list[str]] = {}
    for lines in groups:
        family = lines[0].split("{", 1)[0].rsplit("_", 1)[0]
        if family.endswith(":request"):
            family = ":tensorflow:serving:request_count"
        by_family.setdefault(family, []).extend(lines)
    kinds = dict(retypes)
    text = []
    for family, lines in by_family.items():
        kind = "counter" if family.endswith("request_count") else "histogram"
        text.append(f"# TYPE {family} {kinds.pop(family, kind)}")
        text.extend(lines)
    text.extend(f"# TYPE {name} {kind}" for name, kind in kinds.items())
    return ("\n".join(text) + "\n").encode()


pages = st.builds(_page, st.lists(st.one_of(series, counter_lines), max_size=12),
                  st.lists(st.sampled_from(RETYPES), max_size=2, unique=True)
                  | st.just([]))
options = st.fixed_dictionaries({
    "passthrough": st.booleans(), "max_series": st.sampled_from([5, 20, 100_000]),
    "max_models": st.sampled_from([1, 2, 100])})


def _collector(settings: dict) -> tuple[NativeCollector, Drops]:
    drops = Drops()
    return NativeCollector("/m", dict, settings["passthrough"], 1000, drops,
                           max_series=settings["max_series"],
                           max_models=settings["max_models"]), drops


def _outcome(collector: NativeCollector, drops: Drops, page: bytes):
    before = (drops.value("native_invalid"), drops.value("native_series"))
    try:
        metrics = collector.convert(page)
    except PageError as err:
        return ("error", str(err))
    tally = collector.last_tally
    return (encode(metrics, [], "text/plain")[0], encode(metrics, [], OPENMETRICS)[0],
            tally.invalid, tally.capped, tally.problem,
            drops.value("native_invalid") - before[0], drops.value("native_series") - before[1])


@PROPERTY
@given(st.lists(pages, min_size=1, max_size=4), options)
def test_a_page_converts_as_it_would_for_a_fresh_collector(history, settings):
    seasoned, seasoned_drops = _collector(settings)
    for page in history:
        fresh, fresh_drops = _collector(settings)
        assert _outcome(seasoned, seasoned_drops, page) == _outcome(fresh, fresh_drops, page)
    # and once more, when every series is unchanged
    fresh, fresh_drops = _collector(settings)
    assert _outcome(seasoned, seasoned_drops, history[-1]) == \
        _outcome(fresh, fresh_drops, history[-1])


def test_unchanged_series_are_replayed_and_a_changed_one_is_read_again():
    page = _page([_histogram(REQUEST_LATENCY, model, "predict", [0, 1, 1], "30", "1", False)
                  for model in MODELS])
    collector, _ = _collector({"passthrough": False, "max_series": 100_000, "max_models": 100})
    first = collector.convert(page)
    spec = collector.specs[REQUEST_LATENCY]
    assert len(spec.replay) == 3  # every series remembered
    remembered = dict(spec.replay)
    again = collector.convert(page)
    assert encode(again, [], "text/plain") == encode(first, [], "text/plain")
    assert spec.replay == remembered  # the same three, replayed
    changed = page.replace(b'model_name="b",API="predict",entrypoint="REST",le="+Inf"} 1',
                           b'model_name="b",API="predict",entrypoint="REST",le="+Inf"} 2')
    changed = changed.replace(b'model_name="b",API="predict",entrypoint="REST"} 1',
                              b'model_name="b",API="predict",entrypoint="REST"} 2')
    text = encode(collector.convert(changed), [], "text/plain")[0].decode()
    assert 'tfserving_request_duration_seconds_count{model="b",api="predict",' \
           'entrypoint="rest"} 2' in text
    assert len(set(spec.replay) - set(remembered)) == 1  # b's new lines, read and remembered


def test_a_third_tail_line_after_a_replayed_series_reads_the_page_again():
    good = _histogram(REQUEST_LATENCY, "a", "predict", [0, 1, 1], "30", "1", False)
    collector, _ = _collector({"passthrough": False, "max_series": 100_000, "max_models": 100})
    collector.convert(_page([good]))
    broken = _page([good + [good[-2]]])  # the same series, then its _sum once more
    fresh, _ = _collector({"passthrough": False, "max_series": 100_000, "max_models": 100})
    assert _outcome(collector, Drops(), broken)[:5] == _outcome(fresh, Drops(), broken)[:5]
    assert "two _sum lines" in collector.last_tally.problem


@pytest.mark.parametrize("changed", [False, True])
def test_unwanted_blocks_are_counted_once_read(changed):
    """A block that goes nowhere (TF's load-stage histograms) is hashed, not read, while it is
    unchanged; changed, it is read (and a garbled line in it still fails the page)."""
    unwanted = "\n".join(_histogram(":tensorflow:core:other_latency", "a", "predict",
                                    [0, 1, 1], "30", "1", False))
    page = f"# TYPE :tensorflow:core:other_latency histogram\n{unwanted}\n".encode()
    collector, _ = _collector({"passthrough": False, "max_series": 100_000, "max_models": 100})
    collector.convert(page)
    assert collector.last_tally.invalid == 0
    garbled = page.replace(b"} 30\n", b"} thirty\n") if changed else page
    if changed:
        with pytest.raises(PageError):
            collector.convert(garbled)
    else:
        collector.convert(garbled)


def test_a_page_of_type_lines_is_read_whole_and_nothing_is_remembered():
    from exporter.tfserving.prometheus_page import MAX_BLOCKS

    page = "".join(f"# TYPE m{i} gauge\nm{i} 1\n" for i in range(MAX_BLOCKS + 1)).encode()
    collector, _ = _collector({"passthrough": False, "max_series": 100_000, "max_models": 100})
    collector.convert(page)
    assert len(collector._unchanged._blocks) == 0
    small = page[:page.index(b"# TYPE m10 ")]
    collector.convert(small)
    assert len(collector._unchanged._blocks) == 10  # a page of TF's size: its blocks


def test_a_third_tail_line_after_a_replayed_series_meets_what_reading_it_leaves():
    """The series is read after all (not the whole page again): a line the fast parser takes
    and the line-by-line one refuses elsewhere on the page does not change the outcome."""
    good = _histogram(REQUEST_LATENCY, "a", "predict", [0, 1, 1], "30", "1", False)
    odd = '# TYPE foo untyped\nfoo{x="} 1'
    settings = {"passthrough": False, "max_series": 100_000, "max_models": 100}
    seasoned, seasoned_drops = _collector(settings)
    seasoned.convert(_page([good]))
    broken = _page([good + [good[-2]]]) + odd.encode() + b"\n"
    fresh, fresh_drops = _collector(settings)
    assert _outcome(seasoned, seasoned_drops, broken) == _outcome(fresh, fresh_drops, broken)
    assert "two _sum lines" in seasoned.last_tally.problem


def test_series_that_lose_tf_shape_are_not_remembered():
    settings = {"passthrough": False, "max_series": 100_000, "max_models": 100}
    collector, _ = _collector(settings)
    groups = []
    for index in range(20):
        lines = _histogram(REQUEST_LATENCY, MODELS[index % 3], "predict", [0, 1, index],
                           str(index), str(index), False)
        groups.append(lines + [lines[-2]] if index % 2 else lines)  # odd ones: a third tail
    collector.convert(_page(groups))
    replay = collector.specs[REQUEST_LATENCY].replay
    assert replay and all(entry.outcome is not None for entry in replay.values())
    assert len(replay) <= 10


@pytest.mark.parametrize("retype", RETYPES[:2])
def test_a_series_is_not_replayed_where_this_pages_type_lines_send_it_elsewhere(retype):
    good = _histogram(REQUEST_LATENCY, "a", "predict", [0, 1, 1], "30", "1", False)
    settings = {"passthrough": False, "max_series": 100_000, "max_models": 100}
    seasoned, seasoned_drops = _collector(settings)
    seasoned.convert(_page([good]))
    retyped = _page([good], [retype])
    fresh, fresh_drops = _collector(settings)
    assert _outcome(seasoned, seasoned_drops, retyped) == _outcome(fresh, fresh_drops, retyped)
