"""The bridged counters (``request_count`` and the two ``model_path`` load families): what lasts
across scrapes for each (``_CounterSpec``), one scrape's checked and capped samples
(``_CounterSink``), rendered as text with each series' line prefix kept across scrapes.
Separate from the histograms, which are read a whole series at a time.
"""

from __future__ import annotations

from typing import Callable

from prometheus_client.utils import floatToGoString

from exporter.collectors.native_admission import _add_identity, _count_of, _identity
from exporter.collectors.native_sink_base import _NO_CACHE, _Sink
from exporter.exposition import EncodedFamilies, TextFamily, sample_prefix
from exporter.tfserving.page_checks import INF, MAX_LABEL_TEXT, quote
from exporter.tfserving.prometheus_page import Family, SizedCache, labels, str_bytes


# Line prefixes of one counter's series (its exported label values): far above a real page
# (one line per model and status, or per version), and what at most it holds.
PREFIX_CACHE_ENTRIES = 20_000
PREFIX_CACHE_BYTES = 2 << 20


class _CounterSpec:
    """What lasts across scrapes for one bridged counter: names and the label cache."""

    def __init__(self, tf_name: str, name: str, documentation: str, label_names: list[str],
                 resolve: Callable, scale: Callable[[float], float] = float,
                 cache: SizedCache | None = None) -> None:
        self.tf_name = tf_name
        self.name = name
        self.documentation = documentation
        self.label_names = label_names
        self._resolve = resolve  # (parsed TF labels, model_of) -> exported labels dict
        self.scale = scale
        self.cache = cache if cache is not None else _NO_CACHE
        # exported label values -> "name_total{labels} ", as prometheus_client writes it
        self.prefixes = SizedCache(max_entries=PREFIX_CACHE_ENTRIES, max_bytes=PREFIX_CACHE_BYTES)
        self.encoded = EncodedFamilies()

    def prefix(self, key: tuple) -> str:
        cached = self.prefixes.get(key)
        if cached is None:
            cached = sample_prefix(self.name + "_total", dict(zip(self.label_names, key)))
            self.prefixes.put(key, cached, str_bytes(cached) + 60 * len(key) + 200)
        return cached

    def entry(self, raw: str, model_of) -> tuple | str:
        """Raw label text → (model, key: the exported label values, TF series identity), or
        the problem."""
        if len(raw) > MAX_LABEL_TEXT:
            return f"label text longer than {MAX_LABEL_TEXT} characters"
        cached = self.cache is not _NO_CACHE
        found = labels(raw, remember=not cached)
        key = tuple(self._resolve(found, model_of).values())
        entry = (key[0], key, _identity(found))
        if cached:
            self.cache.put(raw, entry, str_bytes(raw) + 110 * len(key) + 400)
        return entry


class _CounterSink(_Sink):
    """One scrape's samples of one bridged counter, checked and capped line by line."""

    def __init__(self, conversion: "_Conversion", spec: _CounterSpec) -> None:
        super().__init__(conversion)
        self.spec = spec
        # model -> key -> (value, TF series identities); tuples, so the garbage collector
        # stops tracking them (see native_histograms._HistogramSink._close)
        self.by_model: dict[str, dict[tuple, tuple]] = {}

    def take(self, family: Family, sample_name: str, samples) -> None:
        spec, conversion = self.spec, self.conversion
        tally = conversion.tally
        if sample_name != family.name:
            for _, raw, _ in samples:
                tally.reject(1, f"{quote(sample_name, raw)}: not a sample of the counter "
                                f"{family.name}")
            return
        get, entry_of, model_of = spec.cache.get, spec.entry, conversion.model_of
        gate, budget, by_model = conversion.gate, conversion.budget, self.by_model
        admitted = gate.admitted
        for _, raw, value in samples:
            entry = get(raw)
            if entry is None:
                entry = entry_of(raw, model_of)
                if entry.__class__ is str:
                    tally.reject(1, f"{quote(spec.tf_name, raw)}: {entry}")
                    continue
            number = float(value)
            if not 0.0 <= number < INF:
                tally.reject(1, f"{quote(spec.tf_name, raw)}: value {value[:40]} is not a "
                                "finite count >= 0")
                continue
            model = entry[0]
            if model not in admitted and not gate.admit(model):
                tally.capped += 1
                continue
            series = by_model.get(model)
            if series is None:
                series = by_model[model] = {}
            key = entry[1]
            record = series.get(key)
            if record is None:
                if budget.left <= 0:
                    tally.capped += 1
                    continue
                budget.left -= 1
                series[key] = (number, entry[2])
                continue
            identities = _add_identity(record[1], entry[2])
            if identities is None:
                tally.reject(1, f"{quote(spec.tf_name, raw)}: the same series twice")
            else:  # another TF series of the same exported series: summed (see native_admission)
                series[key] = (record[0] + number, identities)

    def evict(self, model: str) -> tuple[int, int]:
        series = self.by_model.pop(model, None) or {}
        return len(series), sum(_count_of(record[1]) for record in series.values())

    def close(self) -> None:
        pass

    def metric(self) -> TextFamily:
        spec = self.spec
        prefix_of, scale = spec.prefix, spec.scale
        lines = [prefix_of(key) + floatToGoString(scale(value))
                 for series in self.by_model.values() for key, (value, _) in series.items()]
        return TextFamily(spec.name, "counter", spec.documentation, lines, spec.encoded)
