"""One rule for text that came from outside (error replies, file contents, gRPC details):
it is cut to a fixed size before it reaches a log line, a metric or an HTTP reply, so a
hostile or broken peer cannot grow them."""

from __future__ import annotations

# Enough for any real TF Serving error message (they are one sentence, sometimes with a
# path); a 10 MB error body becomes this many characters plus a note of how much was cut.
MAX_MESSAGE_CHARS = 1024


def clip_text(text: str, limit: int = MAX_MESSAGE_CHARS) -> str:
    """``text`` unchanged when short enough, else its head and the number of characters cut."""
    if len(text) <= limit:
        return text
    return f"{text[:limit]}... ({len(text) - limit} more characters)"
