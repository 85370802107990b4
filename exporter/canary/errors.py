"""The two ways a golden set can be unusable: the file itself, or its fit with a live model."""

from __future__ import annotations

from typing import Iterable


class GoldenError(ValueError):
    """Every problem found in a golden file (or in requests to merge); ``str()`` gives one per
    line, each naming the file, the field and, where it applies, the example index."""

    def __init__(self, problems: Iterable[str]) -> None:
        self.problems = list(problems)
        super().__init__("\n".join(self.problems))


class SchemaError(ValueError):
    """A request or reply cannot be mapped onto the golden set (aliases, shapes, dtypes); the
    message says what. The runner reports it as a canary failure with reason "schema"."""
