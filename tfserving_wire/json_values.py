"""Two rules of TF Serving's REST JSON (``util/json_tensor.cc``) that both sides apply.

- A binary value is ``{"b64": "..."}``, decoded by absl's ``Base64Unescape``, which accepts
  text without its ``=`` padding.
- A tensor's shape is read off the first element of each nesting level
  (``GetDenseTensorShape``); whether the rest is rectangular is checked while filling.
"""

from __future__ import annotations

import base64


def decode_b64(text: str) -> bytes:
    """Base64 as TF Serving accepts it; raises ``binascii.Error`` (a ValueError) otherwise."""
    text = text.strip()
    return base64.b64decode(text + "=" * (-len(text) % 4), validate=True)


def dense_shape(value, max_rank: int | None = None) -> list[int]:
    """Sizes along the first element of each nesting level of lists. With ``max_rank``, the
    walk stops one level past it, so that a caller can report the excess without walking a
    hostile document to its end."""
    shape: list[int] = []
    while isinstance(value, list) and (max_rank is None or len(shape) <= max_rank):
        shape.append(len(value))
        if not value:
            break
        value = value[0]
    return shape
