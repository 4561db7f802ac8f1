"""The firmware version in a device's answer to its identify command (``M115``, ``*IDN?``)."""

from __future__ import annotations

import re
from collections.abc import Sequence

__all__ = ["MARLIN_FIRMWARE_PATTERN", "firmware_version"]

MARLIN_FIRMWARE_PATTERN = r"FIRMWARE_NAME:\s*(?P<version>.+?)(?=\s+[A-Z][A-Z_]*:|$)"
"""What an identify reply is searched for when the configuration names no ``firmwarePattern``:
Marlin's ``FIRMWARE_NAME:Marlin 2.1.2 (...) SOURCE_CODE_URL:...`` gives ``Marlin 2.1.2 (...)``.
A reply without it gives its first line (a SCPI ``*IDN?`` answer, for example)."""

_MARLIN = re.compile(MARLIN_FIRMWARE_PATTERN)
_FIRMWARE_MAX = 255  # the column's length


def firmware_version(reply: Sequence[str], pattern: str | None = None, reply_terminator: str | None = "ok") -> str | None:
    """The firmware version in the reply to an identify command, or None when there is none.

    Args:
        reply: the reply lines.
        pattern: a regular expression searched in each line; its group ``version`` (else the
            whole match) is the version. None: :data:`MARLIN_FIRMWARE_PATTERN`, else the first
            line that is not the reply terminator.
        reply_terminator: the line that ends a reply (not a version).
    """
    if pattern is not None:
        regex = re.compile(pattern)
        for line in reply:
            match = regex.search(line)
            if match is not None:
                found = match.groupdict().get("version") or match.group(0)
                return found.strip()[:_FIRMWARE_MAX] or None
        return None
    for line in reply:
        match = _MARLIN.search(line)
        if match is not None:
            return match.group("version").strip()[:_FIRMWARE_MAX] or None
    for line in reply:
        text = line.strip()
        if text and not (reply_terminator and text.startswith(reply_terminator)):
            return text[:_FIRMWARE_MAX]
    return None
