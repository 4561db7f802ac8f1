"""Wall-clock time for records.

Durations and deadlines come from ``trio.current_time()`` so tests can use ``autojump_clock``;
timestamps written to the database or sent on the wire come from here, always timezone-aware UTC.
"""

from __future__ import annotations

from datetime import datetime, timezone

__all__ = ["isoformat", "utcnow"]


def utcnow() -> datetime:
    """Return the current time as an aware UTC datetime."""
    return datetime.now(timezone.utc)


def isoformat(moment: datetime) -> str:
    """Return ``moment`` as ISO 8601 in UTC with a ``Z`` suffix (the wire format)."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return moment.astimezone(timezone.utc).isoformat().replace("+00:00", "Z")
