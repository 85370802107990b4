"""Golden-set canary results. Reads the runner's last results; never runs a canary itself.

Sample output::

    tfserving_canary_success{model="half_plus_two",version="2"} 0.0
    tfserving_canary_failures_total{model="half_plus_two",reason="mismatch",version="2"} 3.0
    tfserving_canary_max_abs_error{model="half_plus_two",output="y",version="2"} 0.01
    tfserving_canary_top1_agreement_ratio{model="image_classifier",output="probabilities",version="2"} 0.875
"""

from __future__ import annotations

from typing import Iterable

from prometheus_client.core import (CounterMetricFamily, GaugeMetricFamily,
                                    HistogramMetricFamily, Metric)

from exporter.canary.results import ResultStore
from exporter.collectors.base import CollectorError
from exporter.scrape import Scrape
from exporter.tfserving.loaded_versions import available_versions

MV = ["model", "version"]
MVO = ["model", "version", "output"]


class CanaryCollector:
    name = "canary"

    def __init__(self, store: ResultStore, load_problems: list[str] | None = None) -> None:
        self._store = store
        self._load_problems = list(load_problems or [])

    @staticmethod
    def _loaded(scrape: Scrape) -> dict[str, set[int]]:
        """Each model's AVAILABLE versions as this scrape saw them: results of versions that
        left are hidden at once (the runner forgets them on its next cycle). A model whose
        status this scrape could not read keeps the results the runner has."""
        return {model: set(available_versions(result))
                for model, result in scrape.model_statuses().items()
                if not isinstance(result, BaseException)}

    def collect(self, scrape: Scrape) -> Iterable[Metric]:
        records, golden_sizes = self._store.snapshot()
        success = GaugeMetricFamily(
            "tfserving_canary_success", "1 if the last canary run on the version passed.",
            labels=MV)
        runs = CounterMetricFamily("tfserving_canary_runs", "Canary runs on the version.",
                                   labels=MV)
        failures = CounterMetricFamily(
            "tfserving_canary_failures", "Failed canary runs by reason (mismatch, error, "
            "timeout, schema, nan).", labels=MV + ["reason"])
        duration = HistogramMetricFamily(
            "tfserving_canary_duration_seconds", "Round trip of a canary run (all batches).",
            labels=MV + ["protocol"])
        last_run = GaugeMetricFamily(
            "tfserving_canary_last_run_timestamp_seconds",
            "Unix time the last canary run on the version finished.", labels=MV)
        examples = GaugeMetricFamily(
            "tfserving_canary_golden_examples", "Size of the model's golden set.",
            labels=["model"])
        mismatched = GaugeMetricFamily(
            "tfserving_canary_mismatched_examples",
            "Examples outside atol + rtol*|expected| in the last run.", labels=MVO)
        max_error = GaugeMetricFamily(
            "tfserving_canary_max_abs_error",
            "Largest absolute error against the golden expectations in the last run.",
            labels=MVO)
        mean_error = GaugeMetricFamily(
            "tfserving_canary_mean_abs_error",
            "Mean absolute error against the golden expectations in the last run.",
            labels=MVO)
        top1 = GaugeMetricFamily(
            "tfserving_canary_top1_agreement_ratio",
            "Class outputs: share of examples whose arg-max matches the golden one.",
            labels=MVO)
        accuracy = GaugeMetricFamily(
            "tfserving_canary_accuracy_ratio",
            "Share of examples classified as their golden label, when labels are given.",
            labels=MV)

        for model, size in sorted(golden_sizes.items()):
            examples.add_metric([model], size)
        loaded = self._loaded(scrape)
        for (model, version), record in sorted(records.items()):
            if model in loaded and version not in loaded[model]:
                continue
            labels = [model, str(version)]
            last = record.last
            success.add_metric(labels, 1 if last.passed else 0)
            runs.add_metric(labels, record.runs)
            for reason, count in record.failures.items():
                failures.add_metric(labels + [reason], count)
            for protocol, histogram in sorted(record.durations.items()):
                duration.add_metric(labels + [protocol], histogram.cumulative(), histogram.total)
            last_run.add_metric(labels, last.finished_at)
            comparison = last.comparison
            if comparison is None:
                continue
            for output, stats in sorted(comparison.outputs.items()):
                output_labels = labels + [output]
                mismatched.add_metric(output_labels, stats.mismatched_examples)
                max_error.add_metric(output_labels, stats.max_abs_error)
                mean_error.add_metric(output_labels, stats.mean_abs_error)
                if stats.top1_agreement is not None:
                    top1.add_metric(output_labels, stats.top1_agreement)
            if comparison.accuracy is not None:
                accuracy.add_metric(labels, comparison.accuracy)

        yield from (success, runs, failures, duration, last_run, examples, mismatched,
                    max_error, mean_error, top1, accuracy)
        if self._load_problems:
            raise CollectorError("golden files not loaded: " + "; ".join(self._load_problems))
