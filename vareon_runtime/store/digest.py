"""Row counts and checksums of a table, over canonical rows (see :mod:`vareon_runtime.store.schema`).

A row is encoded as one line of JSON, its values in column-name order: timestamps as ISO 8601
in UTC with microseconds, a JSON column's value as ``{"json": ...}`` with its keys sorted (SQL
NULL as ``null``), bytes in hex. The checksum is SHA-256 over the lines in key order, so the
same rows give the same checksum whether SQLite or PostgreSQL held them, and a changed,
missing, extra or reordered row changes it.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, time, timezone
from decimal import Decimal
from typing import Any
from uuid import UUID

from vareon_runtime.store.schema import JsonValue

__all__ = ["TableDigest", "encode_row"]


def _plain(value: Any) -> Any:
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, JsonValue):
        return {"json": value.value}
    if isinstance(value, datetime):
        if value.tzinfo is not None:
            value = value.astimezone(timezone.utc)
        return {"time": value.replace(tzinfo=None).isoformat(timespec="microseconds")}
    if isinstance(value, (date, time)):
        return {"time": value.isoformat()}
    if isinstance(value, (bytes, bytearray, memoryview)):
        return {"bytes": bytes(value).hex()}
    if isinstance(value, Decimal):
        return {"decimal": str(value.normalize())}
    if isinstance(value, UUID):
        return str(value)
    return {"repr": repr(value)}


# One encoder for every row (json.dumps with options makes a new one per call); keys sorted, so a
# JSON value's key order (which PostgreSQL's json keeps as written) does not count.
_ENCODER = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False)
_AS_IS = frozenset({type(None), bool, int, float, str})


def encode_row(row: Sequence[Any]) -> bytes:
    """The row's line: what the checksum covers."""
    line = _ENCODER.encode([v if type(v) in _AS_IS else _plain(v) for v in row])
    return line.encode() + b"\n"


@dataclass
class TableDigest:
    """A running row count and checksum; :meth:`add` the encoded rows in key order."""

    rows: int = 0
    _hash: Any = field(default_factory=hashlib.sha256, repr=False)

    def add(self, line: bytes) -> None:
        self.rows += 1
        self._hash.update(line)

    @property
    def checksum(self) -> str:
        """The SHA-256 of every line added, in hex."""
        return str(self._hash.hexdigest())
