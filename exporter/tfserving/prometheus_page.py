"""Parser for TF Serving's own Prometheus page (``/monitoring/prometheus/metrics``).

TF Serving writes the text format with its own habits (docs/tfserving-behaviour.md §5.2): ``# TYPE`` lines but
no ``# HELP``; families with no samples at all; ``{}`` on label-less samples; bucket limits and
sums in ``%g`` (``1.27482e+06``); integer-only counters and gauges; label values with only
``\\`` and ``"`` escaped, so a raw newline can sit inside a quoted value. Unknown metrics are
normal (the TF-core set changes between releases).

The parser is strict about structure, because a half-read page must not be mistaken for a
real one: every line must be a comment or a well-formed sample, and the page must end with a
newline (TF Serving always writes one; a missing one means the page was cut off).

It is also bounded, because the page is untrusted input (up to the REST client's 16 MiB):

- time: the page is read a slice (``CHUNK_CHARS``) at a time, and ``expired()`` is asked
  after every slice (and every ``CHECK_LINES`` lines of the line-by-line parser), so a huge
  page fails with ``PageDeadline`` at the scrape deadline instead of making /metrics late;
- memory: a page given as bytes is decoded a slice at a time (never a second full copy, and
  one emoji cannot make the whole text four bytes a character); the regular expression's
  match list is one slice's; only the families the caller wants are kept, and a caller can
  take their samples as they are read (a *sink*, see ``parse_page``) instead of keeping them;
  the caches here and the per-parse name memos have fixed sizes (``SizedCache``).
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from functools import partial
from itertools import groupby
from operator import itemgetter
from typing import Callable, Iterator

_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
_NUMBER_TEXT = r"[-+]?(?:[0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?|[0-9]+\.|Inf|NaN)"
# One sample on one line: name, optional {labels}, value, optional timestamp. Kept loose for
# speed (in C over a slice of the page); the name is checked once per distinct name and label
# text when a family is read (``labels()``), so garbage still cannot pass as data.
_SAMPLE_LINE = re.compile(
    r'^([^{ \t\n#][^{ \t\n]*)(?:\{([^\n]*)\})?[ \t]+'
    r'(' + _NUMBER_TEXT + r')'
    r'(?:[ \t]+-?[0-9]+)?[ \t]*$', re.M)
# The same number syntax for the line-by-line parser (``float()`` would also take ``1_0``,
# ``١٢٣`` or ``infinity``, which are not numbers in the exposition format).
_VALUE = re.compile(_NUMBER_TEXT)
_LABEL = re.compile(r'\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*=\s*"((?:[^"\\]|\\.)*)"\s*(,|$)', re.S)
_UNESCAPE = re.compile(r"\\(.)", re.S)
# A text whose quotes are all closed (inside quotes a backslash escapes the next character).
# Possessive, so a line that does end inside quotes fails in linear time.
_QUOTES_CLOSED = re.compile(r'(?:[^"]++|"(?:[^"\\]++|\\.)*+")*+', re.S)
_HISTOGRAM_SUFFIXES = ("_bucket", "_sum", "_count")
_MAX_CONTINUATION_LINES = 16  # a label value with raw newlines spans a few lines, not more
_TYPES = frozenset({"counter", "gauge", "histogram", "summary", "untyped"})
_first = itemgetter(0)

# The page is read this many characters (bytes, for a bytes page) at a time, cut at a line
# end: the deadline is checked after each slice, and the regular expression's list of matches
# never holds more than one slice (about 2,500 TF Serving lines, 65,000 at most).
CHUNK_CHARS = 1 << 18
# The line-by-line parser checks the deadline every this many lines.
CHECK_LINES = 50_000
# Per parse, at most this many sample and family names are memoised; a page with more distinct
# names is still parsed correctly, only more slowly (and stops at the deadline).
MAX_MEMO_NAMES = 4096
# Cache keys longer than this are never cached (a long label text is parsed every time): what
# a cache holds is bounded by its entry count times this, not by what a page puts in it.
MAX_CACHED_KEY = 256


class PageError(ValueError):
    """The page is not a well-formed exposition (garbled, truncated, or not a metrics page)."""


class PageDeadline(PageError):
    """Parsing stopped because the scrape's deadline passed."""

    def __init__(self, lines: int | None = None, message: str | None = None) -> None:
        super().__init__(message or f"parsing stopped at the scrape deadline after {lines} lines")
        self.lines = lines


class CachePool:
    """A byte budget shared by several caches."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self.bytes = 0


class SizedCache(dict):
    """A memo bounded in entries *and* bytes (``max_bytes`` of its own and, optionally, a
    ``pool`` shared with other caches), which never holds a key longer than ``max_key``.

    When full it keeps what it holds and refuses new keys, so a page larger than the cache
    still hits for what fits (clearing would make every scrape of such a page miss
    everything). It starts over when what it holds is going stale (label churn): an owner
    that counts its hits says so once a scrape (``settle``); otherwise, once it has refused
    four times as many keys as it holds. Lookups are plain ``dict.get``; ``put`` takes the
    caller's estimate of what the entry costs (``str_bytes`` of its strings plus fixed
    overheads). Concurrent scrapes share the caches: each dict operation is atomic, and a race
    can only blur the byte count until the next start-over (the entry count bounds the cache
    regardless)."""

    def __init__(self, max_entries: int, max_bytes: int, max_key: int = MAX_CACHED_KEY,
                 pool: CachePool | None = None, settled: bool = False) -> None:
        super().__init__()
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self.max_key = max_key
        self.pool = pool
        self.settled = settled  # its owner calls settle() once a scrape
        self.bytes = 0
        self.refused = 0
        self.inserted = 0  # since the last settle()
        self.linked: tuple[SizedCache, ...] = (self,)

    def full(self, size: int = 2048) -> bool:
        pool = self.pool
        return (len(self) >= self.max_entries or self.bytes + size > self.max_bytes
                or (pool is not None and pool.bytes + size > pool.max_bytes))

    def put(self, key, value, size: int) -> bool:
        """Remember ``value`` under ``key`` unless the cache is full; True when it did."""
        if len(key) > self.max_key:
            return False
        if self.full(size):
            if self.settled:
                return False
            self.refused += 1
            if self.refused <= 4 * len(self) + 64:
                return False
            self.start_over()
        self[key] = value
        self.bytes += size
        self.inserted += 1
        if self.pool is not None:
            self.pool.bytes += size
        return True

    def settle(self, hits: int) -> None:
        """Called once a scrape with the number of lookups that hit: a full cache whose older
        entries (those from before this scrape) mostly went unused starts over, so that it can
        learn the page's new labels."""
        older, self.inserted = len(self) - self.inserted, 0
        if older > 0 and hits < older // 4 and self.full():
            self.start_over()

    def start_over(self) -> None:
        """Forget everything, and so do the caches linked to this one (``link``): caches whose
        entries refer to each other's must be forgotten together, or the survivors would keep
        the forgotten entries alive, outside every budget."""
        for cache in self.linked:
            cache.forget()

    def forget(self) -> None:
        if self.pool is not None:
            self.pool.bytes -= self.bytes
        self.clear()
        self.bytes = self.refused = self.inserted = 0


def link(*caches: SizedCache) -> None:
    """Make the caches start over together."""
    for cache in caches:
        cache.linked = caches


def str_bytes(text: str) -> int:
    """What a string costs (CPython: 49 bytes plus one a character when ASCII, up to four a
    character otherwise): the cheap estimate caches use for their byte budgets."""
    return 49 + len(text) if text.isascii() else 80 + 4 * len(text)


@dataclass
class Family:
    """One metric family. Samples stay raw, ``(sample name, label text, value)``, because
    most of a page's cost would be building label dicts nobody reads; ``labels()`` parses
    (and caches) a label text when a consumer needs it."""

    name: str
    type: str = "untyped"
    # (sample name, label text, value text): the value is checked to be a number but kept as
    # written, so bucket counts pass through without a float round trip. Stays empty when the
    # family's samples went to a sink.
    samples: list[tuple[str, str, str]] = field(default_factory=list)


class Families(dict):
    """Families by name; ``skipped`` counts the sample lines of families not wanted."""

    skipped = 0


# Parsed label texts, shared by every scrape. Worst case: 20,000 entries or 4 MiB as estimated
# at insertion (a 256-character key parsed into ~50 labels is ~8 KiB, so the byte budget is
# what binds for odd pages); a TF Serving page needs a few hundred entries.
_parsed_labels = SizedCache(max_entries=20_000, max_bytes=4 << 20)


def labels(text: str, remember: bool = True) -> dict[str, str]:
    """``model_name="m",status="OK"`` → ``{"model_name": "m", "status": "OK"}``. The dict may
    be shared: do not change it. ``remember=False`` for a caller that caches what it makes of
    the labels itself."""
    cached = _parsed_labels.get(text)
    if cached is None:
        cached = parse_labels(text, 0) if text else {}
        if remember and len(text) <= MAX_CACHED_KEY:
            # The key, its name and value strings (at most the key's characters, 98 bytes of
            # overhead a pair), the dict (~50 bytes a label, 230 at least) and the slot.
            _parsed_labels.put(text, cached, 2 * str_bytes(text) + 150 * len(cached) + 330)
    return cached


def split_le(text: str) -> tuple[str, str | None]:
    """Bucket label text → (the other labels' text, the ``le`` value, None when there is
    none). TF Serving writes ``le`` last; a page that does not is handled the slow way.
    Malformed label text raises PageError (the page is garbled)."""
    head, separator, le = text.rpartition(',le="')
    if separator and le.endswith('"') and '"' not in le[:-1]:
        return head, le[:-1]
    if text.startswith('le="') and text.endswith('"') and '"' not in text[4:-1]:
        return "", text[4:-1]
    parsed = dict(labels(text))
    le = parsed.pop("le", None)
    return ",".join(f'{k}="{_escape(v)}"' for k, v in parsed.items()), le


def _unescape(value: str) -> str:
    if "\\" not in value:
        return value
    return _UNESCAPE.sub(lambda m: "\n" if m.group(1) == "n" else m.group(1), value)


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


# Label text as TF Serving writes it (no spaces, no escapes): parsed with two C-level calls.
_PLAIN_LABELS = re.compile(r'(?:[a-zA-Z_][a-zA-Z0-9_]*="[^"\\]*",)*'
                           r'[a-zA-Z_][a-zA-Z0-9_]*="[^"\\]*",?')
_PLAIN_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="([^"\\]*)"')


def parse_labels(text: str, line_number: int) -> dict[str, str]:
    if _PLAIN_LABELS.fullmatch(text) is not None:
        return dict(_PLAIN_LABEL.findall(text))
    found: dict[str, str] = {}
    position = 0
    while position < len(text):
        match = _LABEL.match(text, position)
        if match is None:
            raise PageError(f"line {line_number}: malformed labels {{{text[:80]}}}")
        found[match.group(1)] = _unescape(match.group(2))
        position = match.end()
        if match.group(3) == "" and position < len(text):
            raise PageError(f"line {line_number}: malformed labels {{{text[:80]}}}")
    return found


def _split_sample(line: str, number: int) -> tuple[str, str, str]:
    """``name{labels} value [timestamp]`` → (name, label text, value text)."""
    brace = line.find("{")
    space = line.find(" ")
    if brace != -1 and (space == -1 or brace < space):
        close = line.rfind("}")
        if close < brace:
            raise PageError(f"line {number}: not a metric sample: {line[:120]!r}")
        name, label_text, rest = line[:brace], line[brace + 1:close], line[close + 1:]
    elif space != -1:
        name, label_text, rest = line[:space], "", line[space:]
    else:
        raise PageError(f"line {number}: not a metric sample: {line[:120]!r}")
    fields = rest.split()
    if not 1 <= len(fields) <= 2:
        raise PageError(f"line {number}: not a metric sample: {line[:120]!r}")
    return name, label_text, fields[0]


_MISSING = object()


class _Router:
    """Where the samples of each name go, decided once per name (memo bounded): a family's
    list, a caller's sink, or nowhere (counted in ``Families.skipped``)."""

    def __init__(self, wanted) -> None:
        self.wanted = wanted
        self.families = Families()
        self.kinds: dict[str, str] = {}  # TYPE lines of unwanted families (bounded)
        self.decisions: dict[str, object] = {}  # family name -> (family, sink or None) or None
        self.routes: dict[str, object] = {}  # sample name -> adder(samples) or None
        self.sinks: dict[int, object] = {}

    def family(self, name: str):
        decision = self.decisions.get(name, _MISSING)
        if decision is _MISSING:
            choice = True if self.wanted is None else self.wanted(name)
            decision = None
            if choice:
                family = self.families.get(name)
                if family is None:
                    family = self.families[name] = Family(name)
                if choice is True or not hasattr(choice, "take"):
                    decision = (family, None)
                else:
                    decision = (family, choice)
                    self.sinks[id(choice)] = choice
            if len(self.decisions) < MAX_MEMO_NAMES:
                self.decisions[name] = decision
        return decision

    def declare(self, name: str, kind: str) -> None:
        family = self.families.get(name)
        if family is None and self.family(name) is not None:
            family = self.families[name]
        if family is not None:
            family.type = kind
        elif len(self.kinds) < MAX_MEMO_NAMES:
            self.kinds[name] = kind

    def _kind(self, name: str) -> str | None:
        family = self.families.get(name)
        return family.type if family is not None else self.kinds.get(name)

    def family_name(self, sample_name: str) -> str:
        """The family a sample name belongs to on this page (its TYPE lines decide whether
        ``x_bucket`` is a sample of the histogram ``x`` or a family of its own)."""
        if sample_name not in self.families and sample_name not in self.kinds:
            for suffix in _HISTOGRAM_SUFFIXES:
                if sample_name.endswith(suffix):
                    base = sample_name[: -len(suffix)]
                    if self._kind(base) in ("histogram", "summary"):
                        return base
                    break
        return sample_name

    def routed(self, sample_name: str):
        """``route``, memoised: what a name already seen on this page goes to."""
        add = self.routes.get(sample_name, _MISSING)
        return self.route(sample_name) if add is _MISSING else add

    def route(self, sample_name: str):
        """The adder (called with the samples of a run) for a sample name already checked to
        be a valid name, or None."""
        decision = self.family(self.family_name(sample_name))
        add = None
        if decision is not None:
            family, sink = decision
            if sink is None:
                add = family.samples.extend
            elif hasattr(sink, "adder"):
                add = sink.adder(family, sample_name)
            else:
                add = partial(sink.take, family, sample_name)
        if len(self.routes) < MAX_MEMO_NAMES:
            self.routes[sample_name] = add
        return add

    def restart(self) -> None:
        for sink in self.sinks.values():
            sink.clear()


def parse_page(page: str | bytes, wanted: Callable[[str], object] | None = None,
               expired: Callable[[], bool] | None = None,
               unchanged: "UnchangedBlocks | None" = None) -> Families:
    """Families by name, from the page's text (or its UTF-8 bytes).

    ``wanted(family_name)`` says what becomes of a family's samples (every line is still
    checked for shape): false, they are dropped (and counted in ``Families.skipped``); true,
    they are kept in ``Family.samples``; or a *sink*, an object with
    ``take(family, sample_name, samples)`` and ``clear()``, which is handed them as they are
    read, in page order, a run of one sample name at a time (``clear()`` is called if the
    parser has to start over). A sink may also have ``adder(family, sample_name)``, giving the
    callable that takes that sample name's runs directly. ``None`` keeps everything. Only
    wanted families are returned.

    ``expired()``, when given, is asked after each slice of the page; once true, parsing stops
    with ``PageDeadline``.

    ``unchanged``, for a caller that parses the same server's page again and again (bytes
    pages only): a block of lines from one ``# TYPE`` line to the next whose bytes equal a
    block found well formed on the last page, and whose samples all go nowhere, is counted
    without being read again (see ``UnchangedBlocks``).

    The common case (one sample per line) is matched by one regular expression per slice, in C;
    when its matches do not account for every line (raw newlines in a label value, or a
    garbled line) the line-by-line parser starts over and names the problem.
    """
    newline = _check_ends(page)
    end = len(page) - 1  # the body: everything before the final newline
    router = _Router(wanted)
    if isinstance(page, str):
        unchanged = None
    starts: list[tuple[int, str]] | None = [] if unchanged is not None else None
    for position, name, kind in _type_lines(page, end, expired):
        if kind not in _TYPES:
            return _parse_lines(page, wanted, expired, end)  # reports the line
        router.declare(name, kind)
        if starts is not None:
            starts.append((position, name))
            if len(starts) > MAX_BLOCKS:
                starts = None  # a page of TYPE lines: read whole, nothing remembered
    reader = _BlockReader(page, end, newline, router, expired)
    try:
        if starts is None:
            reader.read(0, end)
            if unchanged is not None:
                unchanged.remember({})
        else:
            _read_blocks(reader, starts, unchanged)
    except PageRestart:
        router.restart()
        return _parse_lines(page, wanted, expired, end)  # reports the line
    return router.families


class PageRestart(Exception):
    """The fast parser (or a sink reading with it) cannot account for what it read: the
    line-by-line parser starts over."""


class _BlockReader:
    """The fast parser over one range of the page at a time (``read``), for ``parse_page``
    and for sinks that read their family's block themselves (``take_block``)."""

    def __init__(self, page, end: int, newline, router: "_Router",
                 expired: Callable[[], bool] | None) -> None:
        self.page, self.end, self.newline = page, end, newline
        self.router = router
        self.expired = expired
        self.done = 0  # lines read so far (for messages)

    def skip(self, lines: int) -> None:
        """Count lines not read again (an unchanged block or series); checks the deadline."""
        self.done += lines
        if self.expired is not None and self.expired():
            raise PageDeadline(self.done)

    def read(self, start: int, stop: int,
             names: dict[str, None] | None = None) -> tuple[int, int, bool]:
        """Parse ``page[start:stop]`` (whole lines, the newline at ``stop`` excluded): its
        samples go where the router says. Returns (lines, samples that went nowhere, whether
        any sample was kept); the names of the samples that went nowhere are added to
        ``names`` (at most MAX_BLOCK_NAMES; beyond, the range counts as kept)."""
        router, families = self.router, self.router.families
        routes, findall = router.routes, _SAMPLE_LINE.findall
        skipped_here = lines_here = 0
        taken = False
        for chunk in _chunks(self.page, start, stop, self.newline,
                             done_lines=lambda: self.done):
            matches = findall(chunk)
            # Every line is a sample (one match each), a comment, a blank line or garbage: the
            # slice is well formed when the matches, comments and blanks add up to its lines.
            # Most slices of a TF Serving page have no "#" at all and no blank line, which two
            # single-character scans tell; the substring counts run only when needed.
            line_count = chunk.count("\n") + 1
            unmatched = line_count - len(matches)
            if unmatched and "#" in chunk:
                unmatched -= chunk.count("\n#") + chunk.startswith("#")
            if unmatched:
                # Runs of several blank lines are undercounted here; the mismatch sends such
                # (unusual) pages to the line-by-line parser, which is exact.
                blanks = (chunk.count("\n\n") + chunk.startswith("\n") + chunk.endswith("\n")
                          if chunk else 1)
                if unmatched != blanks:
                    raise PageRestart()
            # Samples of one metric are contiguous on a TF Serving page: a run at a time.
            for sample_name, run in groupby(matches, key=_first):
                add = routes.get(sample_name, _MISSING)
                if add is _MISSING:
                    if _NAME.fullmatch(sample_name) is None:
                        raise PageRestart()
                    add = router.route(sample_name)
                if add is None:
                    skipped = sum(1 for _ in run)
                    families.skipped += skipped
                    skipped_here += skipped
                    if names is not None and sample_name not in names:
                        if len(names) < MAX_BLOCK_NAMES:
                            names[sample_name] = None
                        else:
                            taken = True
                else:
                    taken = True
                    add(run)
            self.done += line_count
            lines_here += line_count
            if self.expired is not None and self.expired():
                raise PageDeadline(self.done)
        return lines_here, skipped_here, taken


def _read_blocks(reader: _BlockReader, starts: list[tuple[int, str]],
                 unchanged: "UnchangedBlocks") -> None:
    """The page a block at a time: an unchanged block that goes nowhere is counted, a block
    whose sink reads blocks itself is handed to it, any other is read."""
    router, families = reader.router, reader.router.families
    seen: dict[bytes, tuple[int, int, tuple[str, ...]]] = {}
    for block_start, block_end, name in _blocks(starts, reader.end):
        decision = router.family(name) if name is not None else None
        sink = decision[1] if decision is not None else None
        if sink is not None and hasattr(sink, "take_block"):
            sink.take_block(decision[0], reader, block_start, block_end)
            continue
        if decision is not None:  # kept: read, nothing to remember
            reader.read(block_start, block_end)
            continue
        digest = unchanged.digest(reader.page, block_start, block_end)
        known = unchanged.known(digest, router)
        if known is not None:
            families.skipped += known[0]
            seen[digest] = known
            reader.skip(known[1])
            continue
        names: dict[str, None] = {}
        lines, skipped, taken = reader.read(block_start, block_end, names)
        if not taken:
            seen[digest] = (skipped, lines, tuple(names))
    unchanged.remember(seen)


# A page is read a block at a time (and its unchanged blocks remembered) only up to this many
# TYPE lines: TF Serving writes a few dozen; a page of hundreds of thousands is read whole, as
# one block, so what a scrape builds and keeps stays small (a few hundred KiB at most).
MAX_BLOCKS = 4096
# A block remembered by UnchangedBlocks lists its sample names (to check they still go nowhere);
# one with more distinct runs than this is simply read again each time.
MAX_BLOCK_NAMES = 64


class UnchangedBlocks:
    """The blocks of the last page (from one ``# TYPE`` line to the next) that were well
    formed and whose samples all went nowhere, by SHA-256 of their bytes: most of a TF Serving
    page (load-stage histograms, TF-core metrics) changes only when a model loads, so a scrape
    reads it once and afterwards only hashes it (in C, about 1.7 GB/s here). A block is
    skipped only while its sample names still go nowhere (the wanted families, and the TYPE
    lines that decide where a ``_bucket`` sample belongs, are the current page's). Holds the
    last page's blocks only, at most MAX_BLOCKS."""

    def __init__(self) -> None:
        self._blocks: dict[bytes, tuple[int, int, tuple[str, ...]]] = {}

    @staticmethod
    def digest(page: bytes, start: int, stop: int) -> bytes:
        return hashlib.sha256(memoryview(page)[start:stop]).digest()

    def known(self, digest: bytes, router: "_Router") -> tuple[int, int, tuple[str, ...]] | None:
        """The block's entry (samples, lines, sample names) when it can be skipped, else None:
        one lookup, so a concurrent scrape's ``remember`` cannot take it away halfway."""
        entry = self._blocks.get(digest)
        if entry is None:
            return None
        if any(router.routed(name) is not None for name in entry[2]):
            return None
        return entry

    def remember(self, blocks: dict[bytes, tuple[int, int, tuple[str, ...]]]) -> None:
        self._blocks = blocks


def _blocks(starts: list[tuple[int, str]], end: int) -> Iterator[tuple[int, int, str | None]]:
    """``[start, stop)`` and family name of the page's blocks: what precedes the first TYPE
    line (no name), then each TYPE line to the newline before the next (the newline belongs
    to neither)."""
    previous, previous_name = 0, None
    for start, name in starts:
        if start > previous or previous_name is not None:
            yield previous, start - 1, previous_name
        previous, previous_name = start, name
    yield previous, end, previous_name


def _check_ends(page) -> str | bytes:
    if not page:
        raise PageError("the page is empty")
    newline = "\n" if isinstance(page, str) else b"\n"
    if not page.endswith(newline):
        raise PageError("the page does not end with a newline (cut off?)")
    return newline


def _chunks(page, start: int, end: int, newline,
            done_lines: Callable[[], int] = lambda: 0) -> Iterator[str]:
    """``page[start:end]`` as text, a slice of about CHUNK_CHARS at a time, each cut after a
    whole line (the newline between two slices belongs to neither)."""
    while True:
        stop = page.find(newline, start + CHUNK_CHARS, end)
        if stop == -1:
            stop = end
        chunk = page[start:stop]
        if not isinstance(chunk, str):
            try:
                chunk = chunk.decode("utf-8")
            except UnicodeDecodeError as err:
                raise PageError(f"the page is not UTF-8 (after line {done_lines()}): "
                                f"{err.reason}") from None
        yield chunk
        if stop >= end:
            return
        start = stop + 1


def _type_lines(page, end: int, expired: Callable[[], bool] | None):
    """(position, name, type) of every ``# TYPE`` line; str.find is far faster than a
    multi-line regex over a page that is mostly samples."""
    is_text = isinstance(page, str)
    marker, newline = ("# TYPE ", "\n") if is_text else (b"# TYPE ", b"\n")
    position = page.find(marker, 0, end)
    seen = 0
    while position != -1:
        line_end = page.find(newline, position, end)
        line_end = end if line_end == -1 else line_end
        if position == 0 or page[position - 1:position] == newline:
            line = page[position:line_end]
            if not is_text:
                try:
                    line = line.decode("utf-8")
                except UnicodeDecodeError as err:
                    raise PageError(f"the page is not UTF-8: {err.reason}") from None
            parts = line.split(None, 3)
            if len(parts) >= 4:
                yield position, parts[2], parts[3].strip()
            seen += 1
            if not seen % CHECK_LINES and expired is not None and expired():
                raise PageDeadline(seen, f"parsing stopped at the scrape deadline after "
                                         f"{seen} TYPE lines")
        position = page.find(marker, line_end, end)


def _lines(page, end: int) -> Iterator[str]:
    """Every line of ``page[:end]``, split a slice at a time (never one list of all lines)."""
    newline = "\n" if isinstance(page, str) else b"\n"
    for chunk in _chunks(page, 0, end, newline):
        yield from chunk.split("\n")


def _parse_lines(page, wanted, expired: Callable[[], bool] | None = None,
                 end: int | None = None) -> Families:
    """The exact, line-by-line parser, over ``page[:end]`` (the page without its final
    newline; ``end`` defaults to the whole of ``page``)."""
    router = _Router(wanted)
    families = router.families
    routes = router.routes
    lines = _lines(page, len(page) if end is None else end)
    number = 0
    for line in lines:
        number += 1
        if not number % CHECK_LINES and expired is not None and expired():
            raise PageDeadline(number)
        if not line:
            continue
        if line[0] == "#":
            parts = line.split(None, 3)
            if len(parts) >= 4 and parts[1] == "TYPE":
                name, kind = parts[2], parts[3].strip()
                if kind not in _TYPES:
                    raise PageError(f"line {number}: unknown metric type {kind!r}")
                router.declare(name, kind)
            continue
        if '"' in line and _ends_inside_quotes(line):
            # A label value may hold raw newlines (TF Serving does not escape them): join the
            # following lines, a few at most.
            line, number = _join_continuation(lines, line, number)
        sample_name, label_text, value_text = _split_sample(line, number)
        add = routes.get(sample_name, _MISSING)
        if add is _MISSING:
            if _NAME.fullmatch(sample_name) is None:
                raise PageError(f"line {number}: invalid metric name {sample_name[:80]!r}")
            add = router.route(sample_name)
        if _VALUE.fullmatch(value_text) is None:
            raise PageError(f"line {number}: value {value_text[:40]!r} is not a number")
        if add is None:
            families.skipped += 1
        else:
            add(((sample_name, label_text, value_text),))
    return families


def _ends_inside_quotes(text: str) -> bool:
    return _QUOTES_CLOSED.fullmatch(text) is None


def _join_continuation(lines: Iterator[str], line: str, number: int) -> tuple[str, int]:
    start = number
    while _ends_inside_quotes(line):
        following = next(lines, None) if number - start < _MAX_CONTINUATION_LINES else None
        if following is None:
            raise PageError(f"line {start}: unterminated label value")
        line += "\n" + following
        number += 1
    return line, number
