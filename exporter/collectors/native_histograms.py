"""The bridged histograms (and pass-through ones): what lasts across scrapes for each
(``_HistogramSpec``: label mapping and the caches of rendered line prefixes), one scrape's
reading of a family a whole series at a time (``_HistogramSink``), and the summing of two TF
series that map to one exported series. Separate from the counters, whose samples stand alone.
"""

from __future__ import annotations

import hashlib
from functools import partial
from operator import add
from typing import Callable

from exporter.collectors.native_admission import _add_identity, _Budget, _identity, _ModelGate
from exporter.collectors.native_sink_base import _NO_CACHE, _Sink
from exporter.collectors.native_units import _limit_seconds, to_seconds
from exporter.exposition import (EncodedFamilies, TextFamily, format_value,
                                 label_text as render_labels)
from exporter.tfserving import page_checks as checks
from exporter.tfserving.page_checks import INF, MAX_BUCKETS, MAX_LABEL_TEXT, quote
from exporter.tfserving.prometheus_page import Family, SizedCache, labels, split_le, str_bytes

# UNCHANGED SERIES. A series of TF Serving's page whose lines (its buckets, then _sum, then
# _count) are byte for byte those of a series on the last page gives the same result: the
# sink remembers, by SHA-256 of those bytes, what reading it came to (the exported lines, or
# the problem), and replays that instead of reading the lines again. Only the admission (model
# cap, series budget, duplicates) is done again, in page order, as for a series read anew. A
# series is remembered when it is TF's shape (a run of this family's bucket lines, ending
# with its _sum and _count lines, and nothing else) and read after a closed series; the rest
# is read as before. What is remembered is the last page's series only, at most
# REPLAY_BYTES (estimated) a family: beyond, series are read each scrape.
REPLAY_BYTES = 6 << 20


def _count_text(value: float) -> str:
    return str(int(value)) if value < 2 ** 53 else format_value(value)


class _HistogramSpec:
    """What lasts across scrapes for one histogram: names, the label mapping, and caches of
    the rendered prefix of every line (``name_bucket{labels,le="…"} ``) by the label text TF
    Serving wrote, so a steady page costs a dict lookup per line."""

    def __init__(self, tf_name: str, name: str, documentation: str,
                 exported_labels: Callable[[dict[str, str]], dict[str, str] | str],
                 limit: Callable[[str], tuple] = _limit_seconds,
                 sum_value: Callable[[float], float] = to_seconds,
                 model_scoped: bool = True,
                 caches: tuple[SizedCache, SizedCache, SizedCache] | None = None) -> None:
        self.tf_name = tf_name
        self.name = name
        self.documentation = documentation
        self.bucket_name, self.sum_name, self.count_name = (
            tf_name + "_bucket", tf_name + "_sum", tf_name + "_count")
        self._exported_labels = exported_labels
        self._limit = limit
        self.sum_value = sum_value
        self.model_scoped = model_scoped
        # bucket label text -> (cell, limit, line prefix); series label text -> cell; series
        # label text -> (its bucket entries, their prefixes) once checked (see CACHE BUDGETS
        # in native.py)
        self.buckets, self.cells, self.shapes = caches or (_NO_CACHE, _NO_CACHE, _NO_CACHE)
        self.encoded = EncodedFamilies()  # the last /metrics text, reused while unchanged
        # digest of a series' lines -> _Remembered (see UNCHANGED SERIES); the last page's
        self.replay: dict[bytes, _Remembered] = {}
        self.count_marker = b"\n" + self.count_name.encode()
        self.bucket_start = (self.bucket_name + "{").encode()

    def cell(self, base: str) -> tuple:
        """A series' label text (without ``le``) → (base, model, key, count prefix, sum prefix,
        problem or None, exported label text, TF series identity)."""
        cached = self.cells.get(base)
        if cached is not None:
            return cached
        if len(base) > MAX_LABEL_TEXT:
            return (base, None, None, None, None,
                    f"label text longer than {MAX_LABEL_TEXT} characters", None, 0)
        found = labels(base, remember=self.cells is _NO_CACHE)
        exported = self._exported_labels(found)
        if exported.__class__ is str:
            cached = (base, None, None, None, None, exported, None, 0)
        else:
            rendered = render_labels(exported)
            # The key: the exported labels in name order, as a string (its hash is cached).
            key = render_labels(dict(sorted(exported.items())))
            cached = (base, exported.get("model") if self.model_scoped else None, key,
                      f"{self.name}_count{{{rendered}}} ", f"{self.name}_sum{{{rendered}}} ",
                      None, rendered, _identity(found))
        self.cells.put(base, cached, _cell_bytes(cached))
        return cached

    def bucket(self, raw: str, current: tuple | None = None) -> tuple:
        """A bucket line's label text → (cell, limit or None, line prefix or the problem).
        ``current`` is the cell of the series being read, likely this line's too."""
        if len(raw) > MAX_LABEL_TEXT:
            return ((raw.rpartition(',le="')[0], None, None, None, None, None, None, 0), None,
                    f"label text longer than {MAX_LABEL_TEXT} characters")
        base, le = split_le(raw)
        cell = current if current is not None and current[0] == base else self.cell(base)
        # A cell the cells cache did not keep lives on in this entry: counted with it.
        extra = 0 if self.cells.get(base) is cell else _cell_bytes(cell)
        limit, limit_text = (None, None) if le is None else self._limit(le)
        if limit is None:
            problem = "a bucket has no le label" if le is None else \
                f"bucket limit le={le[:40]!r} is not a number >= 0 or +Inf"
            entry = (cell, None, problem)
        else:
            rendered = cell[6] or ""
            separator = "," if rendered else ""
            entry = (cell, limit,
                     f'{self.name}_bucket{{{rendered}{separator}le="{limit_text}"}} ')
        if not self.buckets.put(raw, entry, str_bytes(raw) + str_bytes(entry[2]) + 120 + extra):
            entry += (False,)  # not cached: marked, so that no shape keeps it alive
        return entry


def _cell_bytes(cell: tuple) -> int:
    """Estimated cost of a cell: its base text, three renderings of the labels (count and sum
    prefixes, label text), the sorted key pairs and the tuples."""
    return str_bytes(cell[0]) + 3 * str_bytes(cell[6] or "") + 900


class _Remembered:
    """What reading one series came to (UNCHANGED SERIES): the digest of its lines, its cell,
    the page lines it spans, its bucket lines, and the outcome once closed: (problem message
    or None, exported lines)."""

    __slots__ = ("digest", "cell", "page_lines", "buckets", "outcome")

    def __init__(self, digest: bytes, cell: tuple, page_lines: int, buckets: int) -> None:
        self.digest = digest
        self.cell = cell
        self.page_lines = page_lines
        self.buckets = buckets
        self.outcome: tuple[str | None, tuple[str, ...]] | None = None

    def size(self) -> int:
        return 400 + (sum(map(len, self.outcome[1])) + 60 * len(self.outcome[1])
                      if self.outcome else 0)


class _HistogramSink(_Sink):
    """One scrape's reading of one histogram family.

    TF Serving writes each series' buckets, ``_sum`` and ``_count`` together, so a series is
    gathered until a line of another series arrives, then checked (``page_checks``) and
    admitted (model cap, series cap) or dropped whole: never half a histogram.
    """

    def __init__(self, conversion: "_Conversion", spec: _HistogramSpec, budget: _Budget,
                 gate: _ModelGate | None) -> None:
        super().__init__(conversion)
        self.spec = spec
        self.budget = budget
        self.gate = gate
        self.by_model: dict = {}  # model -> key -> (lines, TF series identities, page lines)
        self.buckets = self.misses = 0  # bucket lines read, and how many missed the cache
        self.lines_read = 0  # bucket, _sum and _count lines taken (tells a series of TF's shape)
        self.closes = 0  # series closed (tells a run of lines that held one series)
        self._next_replay: dict[bytes, _Remembered] = {}
        self._replay_bytes = 0
        self._start(None)

    def _start(self, cell) -> None:
        self._cell = cell
        self._entries: list[tuple] = []
        self._values: list[str] = []
        self._sum: str | None = None
        self._count: str | None = None
        self._other_lines = 0  # _sum, _count and buckets beyond MAX_BUCKETS
        self._problem: str | None = None
        self._replayed: _Remembered | None = None  # the open series, replayed
        self._replayed_at: tuple | None = None  # (reader, start, end) of its lines
        self._recording: _Remembered | None = None  # the open series, to be remembered

    def adder(self, family: Family, sample_name: str):
        """What takes the runs of one sample name (the parser asks once per name)."""
        spec = self.spec
        if sample_name == spec.bucket_name:
            return self._buckets
        if sample_name == spec.sum_name or sample_name == spec.count_name:
            return partial(self._tail, is_sum=sample_name == spec.sum_name)
        return partial(self.take, family, sample_name)

    def take(self, family: Family, sample_name: str, samples) -> None:
        spec = self.spec
        if sample_name == spec.bucket_name:
            self._buckets(samples)
        elif sample_name == spec.sum_name or sample_name == spec.count_name:
            self._tail(samples, sample_name == spec.sum_name)
        else:
            for _, raw, _ in samples:
                self.conversion.tally.reject(
                    1, f"{quote(sample_name, raw)}: not a _bucket, _sum or _count sample of "
                       f"the histogram {family.name}")

    def _buckets(self, samples) -> None:
        if self._sum is not None or self._count is not None:
            # Buckets after _sum or _count: another series, even with the same labels (then
            # "the same series twice").
            self._close()
            self._start(None)
        get, make = self.spec.buckets.get, self.spec.bucket
        cell, entries, values = self._cell, self._entries, self._values
        read = 0
        for _, raw, value in samples:
            read += 1
            entry = get(raw)
            if entry is None:
                entry = make(raw, cell)
                self.misses += 1
            if entry[0] is not cell and (cell is None or entry[0][0] != cell[0]):
                self._close()
                self._start(entry[0])
                cell, entries, values = self._cell, self._entries, self._values
            entries.append(entry)
            values.append(value)
        self.lines_read += read
        if len(entries) > MAX_BUCKETS:  # checked a run (at most one page slice) at a time
            self._other_lines += len(entries)
            self._problem = f"more than {MAX_BUCKETS} buckets"
            entries.clear()
            values.clear()

    def _tail(self, samples, is_sum: bool) -> None:
        for _, raw, value in samples:
            self.lines_read += 1
            cell = self._cell
            if cell is None or (raw is not cell[0] and raw != cell[0]):
                self._close()
                self._start(self.spec.cell(raw))
            elif self._replayed is not None:
                # A third tail line of a replayed series (not TF's shape): the series' lines
                # are read after all, so that this line meets the state reading leaves.
                self._read_replayed()
            if self._recording is not None:  # no longer TF's shape: not remembered
                self._next_replay.pop(self._recording.digest, None)
                self._recording = None
            if is_sum:
                if self._sum is not None:
                    self._problem = "two _sum lines"
                self._sum = value
            else:
                if self._count is not None:
                    self._problem = "two _count lines"
                self._count = value
            self._other_lines += 1

    def close(self) -> None:
        """Finish the series being read (a scrape calls this once the page is read)."""
        self._close()
        self._start(None)
        self.spec.buckets.settle(self.buckets - self.misses)
        self.spec.replay = self._next_replay

    def take_block(self, family: Family, reader, start: int, stop: int) -> None:
        """Read this family's block of the page (``parse_page``): a series at a time, each
        replayed when unchanged since the last page (UNCHANGED SERIES)."""
        spec, page = self.spec, reader.page
        marker = spec.count_marker
        position = page.find(b"\n", start, stop) + 1  # after the TYPE line
        router = reader.router
        if position == 0 or any(router.family_name(name) != family.name for name in (
                spec.bucket_name, spec.sum_name, spec.count_name)):
            # This page's TYPE lines send some of the series' lines elsewhere: read as written.
            reader.read(start, stop)
            return
        reader.read(start, position - 1)
        while position < stop:
            found = page.find(marker, position - 1, stop)
            while found != -1 and page[found + len(marker):found + len(marker) + 1] not in (
                    b"{", b" "):
                found = page.find(marker, found + 1, stop)
            if found == -1:
                reader.read(position, stop)
                return
            end = page.find(b"\n", found + 1, stop)
            end = stop if end == -1 else end
            self._series(reader, position, end)
            position = end + 1

    def _series(self, reader, start: int, end: int) -> None:
        """One series' lines, ``page[start:end]``: replayed, or read (and remembered when it
        has TF's shape)."""
        page, remember = reader.page, self._next_replay
        if not (self._cell is None or self._sum is not None or self._count is not None) \
                or not page.startswith(self.spec.bucket_start, start):
            reader.read(start, end)  # it may continue the open series: read as it comes
            return
        digest = hashlib.sha256(memoryview(page)[start:end]).digest()
        known = self.spec.replay.get(digest)
        # What the series' first bucket line would do: close the open series.
        self._close()
        self._start(None)
        if known is not None and known.outcome is not None:
            self._cell = known.cell
            self._sum = self._count = ""  # closed by the next line of another series
            self._replayed = known
            self._replayed_at = (reader, start, end)
            if digest not in remember:
                remember[digest] = known
            reader.skip(known.page_lines)
            return
        before, closes = self.lines_read, self.closes
        lines, _, _ = reader.read(start, end)
        # Remembered when the lines were all this family's and made one series, still open.
        if (self.lines_read - before == lines and self.closes == closes
                and self._sum is not None
                and self._count is not None and self._replay_bytes < REPLAY_BYTES
                and digest not in remember):
            self._recording = remember[digest] = _Remembered(
                digest, self._cell, lines, len(self._entries))

    def _read_replayed(self) -> None:
        reader, start, end = self._replayed_at
        self._start(None)
        lines, _, _ = reader.read(start, end)
        reader.done -= lines  # counted once already, when replayed

    def _close(self) -> None:
        cell = self._cell
        if cell is None:
            return
        self.closes += 1
        replayed = self._replayed
        if replayed is not None:
            self.buckets += replayed.buckets
            self._conclude(cell, *replayed.outcome, replayed.page_lines)
            return
        entries, values = self._entries, self._values
        page_lines = len(entries) + self._other_lines
        self.buckets += len(entries)
        problem = self._problem or cell[5]
        prefixes = None
        if problem is None:
            shape = self.spec.shapes.get(cell[0])
            if shape is not None and shape[0] == entries:
                prefixes = shape[1]  # the same buckets as a series already checked
            else:
                limits = [entry[1] for entry in entries]
                problem = checks.limits_problem(limits)
                if problem is not None and None in limits:
                    problem = next(entry[2] for entry in entries if entry[1] is None)
                elif problem is None:
                    prefixes = [entry[2] for entry in entries]
                    if all(len(entry) == 3 for entry in entries):
                        # Only entries the bucket cache holds (and counts): a shape must not
                        # keep uncached ones alive.
                        self.spec.shapes.put(cell[0], (list(entries), prefixes),
                                             str_bytes(cell[0]) + 16 * len(entries) + 300)
        sum_value = None
        if problem is None:
            counts = checks.bucket_counts(values)
            if counts is None:
                problem = checks.BAD_COUNTS
            elif self._sum is None:
                problem = "no _sum"
            else:
                sum_value = float(self._sum)
                if not 0.0 <= sum_value < INF or (self._count is not None
                                                  and float(self._count) != counts[-1]):
                    problem = checks.tail_problem(counts[-1], sum_value, self._count)
        if problem is not None:
            message, lines = f"{quote(self.spec.tf_name, cell[0])}: {problem}", ()
        else:
            # Tuples of strings: the garbage collector stops tracking them, so a page's worth
            # of series held during a scrape does not trigger full collections.
            message, lines = None, (*map(add, prefixes, values), cell[3] + values[-1],
                                    cell[4] + format_value(self.spec.sum_value(sum_value)))
        recording = self._recording
        if recording is not None:
            recording.outcome = (message, lines)
            self._replay_bytes += recording.size()
        self._conclude(cell, message, lines, page_lines)

    def _conclude(self, cell: tuple, message: str | None, lines: tuple[str, ...],
                  page_lines: int) -> None:
        """A closed series, read or replayed: dropped with its problem, or admitted."""
        if message is not None:
            self.conversion.tally.reject(page_lines, message)
        else:
            self._admit(cell, lines, page_lines)

    def _admit(self, cell: tuple, lines: tuple[str, ...], page_lines: int) -> None:
        conversion, model = self.conversion, cell[1]
        gate = self.gate
        if gate is not None and model not in gate.admitted and not gate.admit(model):
            conversion.tally.capped += page_lines
            return
        series = self.by_model.get(model)
        if series is None:
            series = self.by_model[model] = {}
        record = series.get(cell[2])
        if record is None:
            if self.budget.left < len(lines):
                conversion.tally.capped += page_lines
                return
            self.budget.left -= len(lines)
            series[cell[2]] = (lines, cell[7], page_lines)
            return
        identities = _add_identity(record[1], cell[7])
        merged = None if identities is None else _sum_histograms(record[0], lines)
        if merged is None:
            conversion.tally.reject(page_lines, f"{quote(self.spec.tf_name, cell[0])}: " + (
                "the same series twice" if identities is None else
                "maps to the same exported series as another with different buckets"))
            return
        # another TF series of the same exported series: summed (see native_admission)
        series[cell[2]] = (merged, identities, record[2] + page_lines)

    def evict(self, model: str) -> tuple[int, int]:
        series = self.by_model.pop(model, None) or {}
        return (sum(len(record[0]) for record in series.values()),
                sum(record[2] for record in series.values()))

    def metric(self) -> TextFamily:
        lines: list[str] = []
        for series in self.by_model.values():
            for record in series.values():
                lines.extend(record[0])
        return TextFamily(self.spec.name, "histogram", self.spec.documentation, lines,
                          self.spec.encoded)


def _sum_histograms(old: tuple[str, ...], new: tuple[str, ...]) -> tuple[str, ...] | None:
    """Two rendered series with the same labels and bucket limits → their sum (bucket lines,
    count, sum); None when the limits differ."""
    if len(old) != len(new):
        return None
    merged = []
    for index, (left, right) in enumerate(zip(old, new)):
        prefix, _, left_value = left.rpartition(" ")
        other, _, right_value = right.rpartition(" ")
        if prefix != other:
            return None
        total = float(left_value) + float(right_value)
        # The last line is the _sum (seconds); the others are counts.
        text = format_value(total) if index == len(old) - 1 else _count_text(total)
        merged.append(f"{prefix} {text}")
    return tuple(merged)
