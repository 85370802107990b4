"""What the per-scrape sinks and their specs build on: the ``_Sink`` base the page parser
calls (a restart of the parse restarts the scrape's conversion) and the stand-in cache of specs
that cache nothing. Separate so that the counter, histogram and pass-through modules share them
without importing one another.
"""

from __future__ import annotations


class _NoCache(dict):
    def put(self, key, value, size) -> bool:
        return False

    def settle(self, hits: int) -> None:
        pass


_NO_CACHE = _NoCache()


class _Sink:
    """Base of the per-scrape sinks the parser hands samples to (``parse_page``)."""

    def __init__(self, conversion: "_Conversion") -> None:
        self.conversion = conversion
        self.generation = conversion.generation

    def clear(self) -> None:
        self.conversion.restart(self.generation)
