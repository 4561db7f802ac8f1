"""The declarative ``Base`` every table derives from, and the kernel's own table ``events``.

Domain packages add their tables on this same ``Base`` (so one ``MetaData`` describes the whole
schema, and the migration test can compare it against the migrated database).
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from sqlalchemy import JSON, DateTime, Dialect, Index, Integer, MetaData, String, Text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator

from vareon_runtime.clock import utcnow

__all__ = ["NAMING_CONVENTION", "Base", "EventRecord", "UTCDateTime"]

# Deterministic constraint names, so migrations written by hand (and SQLite batch migrations,
# which recreate tables) can refer to constraints by name on every backend.
NAMING_CONVENTION: dict[str, str] = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_N_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    """Base class of every ORM table of the runtime and its domains."""

    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class UTCDateTime(TypeDecorator[datetime]):
    """A timestamp that is stored in UTC and always read back timezone-aware (UTC).

    SQLite has no timezone-aware type (it keeps text and returns naive datetimes), PostgreSQL
    returns the session's time zone; this type makes both hand back the same aware UTC value.
    Naive datetimes are refused rather than guessed at.
    """

    impl = DateTime
    cache_ok = True

    def __init__(self) -> None:
        super().__init__(timezone=True)

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError(
                f"expected a timezone-aware datetime, not the naive {value!r}; "
                "use vareon_runtime.clock.utcnow() or datetime.now(timezone.utc)"
            )
        value = value.astimezone(timezone.utc)
        if dialect.name == "sqlite":
            # SQLite's DATETIME storage format has no offset; the value is UTC by construction.
            return value.replace(tzinfo=None)
        return value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=timezone.utc)
        return value.astimezone(timezone.utc)


class EventRecord(Base):
    """One happening in the runtime's journal (an actor started, crashed, gave up, ...)."""

    __tablename__ = "events"
    __table_args__ = (Index("ix_events_source_time", "source", "time"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    time: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    # The actor's registry name, e.g. "agent/<uuid>" or "scheduler".
    source: Mapped[str] = mapped_column(String(255))
    kind: Mapped[str] = mapped_column(String(255))
    message: Mapped[str] = mapped_column(Text)
    # none_as_null: a missing detail is SQL NULL, not the JSON text 'null'.
    details: Mapped[Any | None] = mapped_column(JSON(none_as_null=True), nullable=True)

    def __repr__(self) -> str:
        return f"EventRecord(id={self.id!r}, source={self.source!r}, kind={self.kind!r})"
