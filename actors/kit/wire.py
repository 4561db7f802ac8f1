"""Wire shapes every domain builds on: camelCase and snake_case models, timestamps, pages.

The seeds fix the case of each domain's wire: Myntrix is camelCase (``lastRun``), Neosyntis,
Arcana, Cognisys and LogiData are snake_case. A domain's schemas derive from
:class:`CamelModel` or :class:`SnakeModel`; both read either spelling of a field and refuse
unknown ones, and read a table's row directly (``Agent.model_validate(record)``: its columns
are the fields, its stored states the enum's words).

Times: :data:`Timestamp` goes out as ISO 8601 in UTC with a ``Z``. :data:`LocalTimestamp` keeps
the zone it carries (a task's next fire time in Europe/Berlin is ``+01:00``), but a UTC time is
still written with a ``Z``, the one spelling of UTC on the whole wire.

A name a user gives (an agent's, a device's, a task's) is a :data:`Name`: 1-255 characters
and no control character, so it cannot forge a line in the log or a terminal.

A list answers a :class:`Page`: the items and how many match in all (the ``X-Total-Count``
header).
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Annotated, Generic, NamedTuple, TypeVar
from zoneinfo import ZoneInfo

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, PlainSerializer, WithJsonSchema
from pydantic.alias_generators import to_camel

from vareon_runtime.clock import isoformat
from vareon_runtime.logs import CONTROL_CHARACTERS

__all__ = ["CamelModel", "LocalTimestamp", "Name", "Page", "SnakeModel", "Timestamp", "local_isoformat"]

T = TypeVar("T")

def _printable(value: str) -> str:
    found = CONTROL_CHARACTERS.search(value)
    if found:
        raise ValueError(
            f"must not hold control characters (a newline, a tab, NUL); found {found.group()!r}"
            f" at position {found.start()}"
        )
    return value


Name = Annotated[
    str,
    Field(
        min_length=1,
        max_length=255,
        json_schema_extra={"pattern": "^[^\\u0000-\\u001f\\u007f-\\u009f\\u2028\\u2029]+$"},
    ),
    AfterValidator(_printable),
]
"""A name a user gives: 1-255 characters, no control character (422 otherwise)."""

_UTC_NAMES = frozenset({"UTC", "Etc/UTC", "Etc/UCT", "UCT", "Etc/Universal", "Universal", "Etc/Zulu", "Zulu"})


def local_isoformat(moment: datetime) -> str:
    """``moment`` as ISO 8601 with its own offset; in UTC (or a naive time, taken as UTC) with ``Z``."""
    zone = moment.tzinfo
    if zone is None or zone is timezone.utc or (isinstance(zone, ZoneInfo) and zone.key in _UTC_NAMES):
        return isoformat(moment)
    return moment.isoformat()


Timestamp = Annotated[
    datetime,
    PlainSerializer(isoformat, return_type=str, when_used="json"),
    WithJsonSchema({"type": "string", "format": "date-time"}),
]
"""A datetime sent as ISO 8601 UTC with a ``Z`` suffix."""

LocalTimestamp = Annotated[
    datetime,
    PlainSerializer(local_isoformat, return_type=str, when_used="json"),
    WithJsonSchema({"type": "string", "format": "date-time"}),
]
"""A datetime sent as ISO 8601 with its own zone's offset (``Z`` when that zone is UTC)."""


class CamelModel(BaseModel):
    """A wire shape in camelCase (Myntrix): ``lastRun`` out, ``lastRun`` or ``last_run`` in."""

    model_config = ConfigDict(
        alias_generator=to_camel, validate_by_name=True, validate_by_alias=True, extra="forbid", from_attributes=True
    )


class SnakeModel(BaseModel):
    """A wire shape in snake_case (Neosyntis, Arcana, Cognisys, LogiData)."""

    model_config = ConfigDict(extra="forbid", from_attributes=True)


class Page(NamedTuple, Generic[T]):
    """A page of a list and how many match in all (for ``X-Total-Count``)."""

    items: list[T]
    total: int
