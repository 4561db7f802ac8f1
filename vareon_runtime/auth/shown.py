"""``shown``: a value as an error message quotes it, its ``repr`` cut to a readable length.

Messages say what came (STYLE.md), but a client may send a megabyte where a name belongs: the
kernel's account checks and the web front's WebSocket errors quote through this one helper.
``repr`` also escapes what would break a log line or a JSON body (newlines, lone surrogates).
"""

from __future__ import annotations

__all__ = ["SHOWN_LIMIT", "shown"]

SHOWN_LIMIT = 80
"""The most characters of a value an error message quotes."""


def shown(value: object, limit: int = SHOWN_LIMIT) -> str:
    """Return ``repr(value)``, cut to ``limit`` characters with ``...`` when longer."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."
