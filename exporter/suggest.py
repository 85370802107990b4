"""The one "did you mean" of the project: config keys, flags, golden file keys and aliases."""

from __future__ import annotations

import difflib
from typing import Sequence


def suggestion(name: str, valid: Sequence[str], listing: str = "valid keys") -> str:
    """' (did you mean "x"?)' for a near miss, else ' (<listing>: a, b, c)'."""
    close = difflib.get_close_matches(name, list(valid), n=1, cutoff=0.6)
    return f' (did you mean "{close[0]}"?)' if close else f" ({listing}: {', '.join(valid)})"
