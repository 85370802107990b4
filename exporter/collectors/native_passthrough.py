"""Every other family of TF Serving's page, passed through under a ``tensorflow_`` name in TF's
unit (``collectors.native.passthrough``): the naming, one family's checked samples, and the
line budget and name clashes across families. Separate because it is optional and follows
none of the bridged families' mappings.
"""

from __future__ import annotations

import re

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from exporter.collectors.native_admission import _Budget
from exporter.collectors.native_histograms import _HistogramSink, _HistogramSpec
from exporter.collectors.native_sink_base import _Sink
from exporter.collectors.native_units import _limit_as_is
from exporter.exposition import TextFamily
from exporter.tfserving import page_checks as checks
from exporter.tfserving.page_checks import MAX_LABEL_TEXT, quote
from exporter.tfserving.prometheus_page import Family, labels

# Pass-through families tracked per scrape beyond the series cap (TYPE-only families, which
# export nothing, take a slot too; TF Serving's page has about 150 families).
PASSTHROUGH_FAMILY_SLACK = 1000


class _PassFamily(_Sink):
    """One scrape's samples of one pass-through family (counter, gauge or histogram; other
    types are not passed through), within the shared pass-through line budget."""

    def __init__(self, conversion: "_Conversion", passthrough: "_PassThrough",
                 name: str) -> None:
        super().__init__(conversion)
        self.name = name
        self.exported = passthrough_name(name)
        self.budget = passthrough.budget
        self.kind: str | None = None
        self.samples: list[tuple[dict, float]] = []
        self._keys: set[tuple] = set()
        self.histogram: _HistogramSink | None = None

    def take(self, family: Family, sample_name: str, samples) -> None:
        if self.kind is None:
            self.kind = family.type
            if self.kind == "histogram":
                spec = _HistogramSpec(
                    family.name, self.exported, _passthrough_help(family.name), _pass_labels,
                    limit=_limit_as_is, sum_value=float, model_scoped=False)
                self.histogram = _HistogramSink(self.conversion, spec, self.budget, None)
        if self.histogram is not None:
            self.histogram.take(family, sample_name, samples)
        elif self.kind in ("counter", "gauge"):
            self._scalars(sample_name, samples)

    def _scalars(self, sample_name: str, samples) -> None:
        tally, budget = self.conversion.tally, self.budget
        value_of = checks.counter_value if self.kind == "counter" else checks.gauge_value
        for _, raw, value in samples:
            if budget.left <= 0:
                tally.capped += 1
                continue
            if len(raw) > MAX_LABEL_TEXT:
                tally.reject(1, f"{quote(sample_name, raw)}: label text longer than "
                                f"{MAX_LABEL_TEXT} characters")
                continue
            number = value_of(value)
            if number is None:
                tally.reject(1, f"{quote(sample_name, raw)}: value {value[:40]} is not valid "
                                f"for a {self.kind}")
                continue
            found = labels(raw)
            problem = checks.label_names_problem(found)
            if problem is None:
                key = tuple(sorted(found.items()))
                if key in self._keys:
                    problem = "the same series twice"
            if problem is not None:
                tally.reject(1, f"{quote(sample_name, raw)}: {problem}")
                continue
            self._keys.add(key)
            self.samples.append((found, number))
            budget.left -= 1

    def close(self) -> None:
        if self.histogram is not None:
            self.histogram.close()

    def lines(self) -> int:
        if self.histogram is not None:
            return sum(record[2] for series in self.histogram.by_model.values()
                       for record in series.values())
        return len(self.samples)

    def names(self) -> set[str]:
        """Every name this family's exposition uses (OpenMetrics and the text format)."""
        name = self.exported
        if self.kind == "counter":
            base = name[:-6] if name.endswith("_total") else name
            return {base, base + "_total", base + "_created"}
        if self.kind == "histogram":
            return {name} | {name + suffix for suffix in ("_bucket", "_count", "_sum",
                                                          "_created")}
        return {name}

    def metric(self) -> Metric | TextFamily | None:
        if self.histogram is not None:
            family = self.histogram.metric()
            return family if family.lines else None
        if not self.samples:
            return None
        help_text = _passthrough_help(self.name)
        if self.kind == "counter":
            metric = CounterMetricFamily(self.exported, help_text)
            sample_name = metric.name + "_total"
        else:
            metric = GaugeMetricFamily(self.exported, help_text)
            sample_name = metric.name
        for found, number in self.samples:
            metric.add_sample(sample_name, found, number)
        return metric


def _passthrough_help(tf_name: str) -> str:
    return f"Passed through from TF Serving's {tf_name} (unit as TF reports it)."


def _pass_labels(found: dict[str, str]) -> dict[str, str] | str:
    problem = checks.label_names_problem(found)
    if problem is not None:
        return problem
    if "le" in found:
        return "a histogram series with an le label besides its buckets'"
    return found


class _PassThrough:
    """Every other family of the page under a ``tensorflow_`` name, at most ``max_series``
    lines in page order (a histogram whole), never two families with clashing names."""

    def __init__(self, conversion: "_Conversion", max_series: int) -> None:
        self.conversion = conversion
        self.budget = _Budget(max_series)
        self.max_families = max_series + PASSTHROUGH_FAMILY_SLACK
        self.families: dict[str, _PassFamily] = {}

    def route(self, name: str):
        handler = self.families.get(name)
        if handler is None:
            if len(self.families) >= self.max_families:
                return False  # its lines are counted in Families.skipped
            handler = self.families[name] = _PassFamily(self.conversion, self, name)
        return handler

    def metrics(self) -> list:
        used: set[str] = set()
        result = []
        for handler in self.families.values():
            handler.close()
            metric = handler.metric()
            if metric is None:
                continue
            names = handler.names()
            if names & used:
                self.conversion.tally.reject(
                    handler.lines(), f"{handler.name}: its name {handler.exported} clashes "
                                     "with another family's")
                continue
            used |= names
            result.append(metric)
        return result


_NOT_NAME = re.compile(r"[^a-zA-Z0-9_]+")


def passthrough_name(tf_name: str) -> str:
    """``:tensorflow:core:graph_runs`` → ``tensorflow_core_graph_runs``."""
    stripped = tf_name.strip(":")
    if stripped.startswith("tensorflow:"):
        stripped = stripped[len("tensorflow:"):]
    return "tensorflow_" + _NOT_NAME.sub("_", stripped).strip("_")
