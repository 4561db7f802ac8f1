"""A database's tables as ``vareon db`` sees them: reflected, and read and written backend-neutrally.

The tables are whatever the migrations made (the kernel's and every installed component's), so
nothing here names a table. Each column gets a *kind* from its reflected type, the same on
SQLite and PostgreSQL for the same migration: ``json``, ``datetime``, ``bool``, ``float``,
``int``, ``text``, ``bytes`` or ``other``. Rows are read in primary-key order as *canonical*
values that compare equal whichever backend they came from:

- a timestamp is an aware UTC ``datetime`` (SQLite keeps naive UTC text, PostgreSQL answers in
  the session's time zone);
- a JSON column's value is a :class:`JsonValue` (its text parsed), and SQL NULL stays ``None``,
  so a JSON ``null`` and a missing value remain two things;
- booleans are ``bool`` (SQLite keeps 0 and 1), floats ``float``.

Text keys are ordered by code point on both backends (PostgreSQL's ``"C"`` collation; SQLite's
``BINARY`` is the same order), so two databases holding the same rows yield them in the same
order.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    Connection,
    DateTime,
    Float,
    Integer,
    LargeBinary,
    MetaData,
    Numeric,
    String,
    Table,
    Text,
    cast,
    func,
    insert,
    select,
    text,
)
from sqlalchemy import column as sql_column
from sqlalchemy import table as sql_table
from sqlalchemy.sql.elements import ColumnElement

__all__ = ["VERSION_TABLE", "Column", "JsonValue", "StoreSchema", "TableShape"]

VERSION_TABLE = "alembic_version"
"""Alembic's table of the revisions applied: made by the migrations, never copied as data."""


@dataclass(frozen=True, slots=True)
class JsonValue:
    """The value of a JSON column that is not SQL NULL (``value`` may be ``None``: JSON ``null``)."""

    value: Any


@dataclass(frozen=True, slots=True)
class Column:
    """One column: its name, kind, and whether a timestamp keeps its offset on this backend."""

    name: str
    kind: str
    aware: bool = False


@dataclass(frozen=True)
class TableShape:
    """One table: its columns (sorted by name) and the columns that order its rows."""

    name: str
    columns: tuple[Column, ...]
    key: tuple[str, ...]

    @property
    def signature(self) -> tuple[tuple[str, str], ...]:
        """The columns' names and kinds: equal for the same table on either backend."""
        return tuple((c.name, c.kind) for c in self.columns)


def _kind(type_: Any) -> str:
    # Boolean before Integer, Float before Numeric: the specific types derive from the general.
    for klass, kind in (
        (JSON, "json"),
        (DateTime, "datetime"),
        (Boolean, "bool"),
        (Float, "float"),
        (Integer, "int"),
        (Numeric, "other"),
        (String, "text"),
        (LargeBinary, "bytes"),
    ):
        if isinstance(type_, klass):
            return kind
    return "other"


class StoreSchema:
    """The tables of one database, reflected from a connection, in foreign-key order.

    Args:
        connection: an open connection to the database.
    """

    def __init__(self, connection: Connection) -> None:
        metadata = MetaData()
        metadata.reflect(connection)
        self.dialect = connection.dialect.name
        self._tables: dict[str, Table] = {t.name: t for t in metadata.sorted_tables}
        self.shapes: dict[str, TableShape] = {name: self._shape(t) for name, t in self._tables.items()}

    @property
    def names(self) -> list[str]:
        """Every table's name, parents before the tables that refer to them."""
        return list(self._tables)

    @property
    def data_tables(self) -> list[str]:
        """The tables that hold data (all but Alembic's version table), in foreign-key order."""
        return [name for name in self._tables if name != VERSION_TABLE]

    def _shape(self, table: Table) -> TableShape:
        columns = tuple(
            Column(
                c.name,
                _kind(c.type),
                aware=isinstance(c.type, DateTime) and bool(c.type.timezone) and self.dialect != "sqlite",
            )
            for c in sorted(table.columns, key=lambda c: c.name)
        )
        key = tuple(c.name for c in table.primary_key.columns) or tuple(c.name for c in columns)
        return TableShape(table.name, columns, key)

    def count(self, connection: Connection, name: str) -> int:
        """The number of rows of table ``name``."""
        return int(connection.scalar(select(func.count()).select_from(self._tables[name])) or 0)

    def counts(self, connection: Connection) -> dict[str, int]:
        """Every table's row count, in foreign-key order."""
        return {name: self.count(connection, name) for name in self._tables}

    def rows(self, connection: Connection, name: str, *, batch: int) -> Iterator[list[tuple[Any, ...]]]:
        """The rows of table ``name`` in key order, as canonical values, ``batch`` rows at a time.

        Each row holds the values of :attr:`TableShape.columns` in that order (by name).
        """
        table = self._tables[name]
        shape = self.shapes[name]
        selected: list[ColumnElement[Any]] = []
        for column in shape.columns:
            if column.kind == "json":
                # The text as stored: SQL NULL and JSON null stay apart (the JSON type reads
                # both as None).
                selected.append(cast(table.c[column.name], Text).label(column.name))
            else:
                selected.append(table.c[column.name])
        order = [self._ordered(table.c[key]) for key in shape.key]
        statement = select(*selected).order_by(*order)
        # Options of this statement only: Connection.execution_options() would change the
        # connection itself (every later statement a server-side cursor on PostgreSQL).
        result = connection.execute(statement, execution_options={"stream_results": True, "yield_per": batch})
        readers = [_READERS.get(c.kind) for c in shape.columns]
        if not any(readers):  # every value is canonical as it comes
            for partition in result.partitions(batch):
                yield [tuple(row) for row in partition]
            return
        for partition in result.partitions(batch):
            yield [
                tuple(v if read is None or v is None else read(v) for read, v in zip(readers, row, strict=True))
                for row in partition
            ]

    def _ordered(self, column: Any) -> Any:
        if self.dialect == "postgresql" and _kind(column.type) == "text":
            return column.collate("C")
        return column

    def insert(self, connection: Connection, name: str, rows: Sequence[tuple[Any, ...]]) -> None:
        """Insert canonical ``rows`` (as :meth:`rows` yields them) into table ``name``."""
        if not rows:
            return
        table = self._tables[name]
        shape = self.shapes[name]
        columns = []
        for column in shape.columns:
            # A JSON column writes SQL NULL for None; JSON null comes as JSON.NULL.
            type_ = JSON(none_as_null=True) if column.kind == "json" else table.c[column.name].type
            columns.append(sql_column(column.name, type_))
        statement = insert(sql_table(name, *columns))
        names = [c.name for c in shape.columns]
        converters = [self._writer(c) for c in shape.columns]
        connection.execute(
            statement,
            [
                {n: convert(v) for n, convert, v in zip(names, converters, row, strict=True)}
                for row in rows
            ],
        )

    def _writer(self, column: Column) -> Any:
        if column.kind == "json":
            return _json_param
        if column.kind == "datetime":
            return _aware_param if column.aware else _naive_param
        return _same

    def reset_sequences(self, connection: Connection) -> list[str]:
        """Set every PostgreSQL sequence behind a column to the column's highest value.

        Rows copied with their ids leave a serial column's sequence at 1: the next insert would
        collide with a copied row. Returns the sequences set (none on SQLite, whose next rowid
        follows the highest one by itself).
        """
        if self.dialect != "postgresql":
            return []
        done = []
        for name, table in self._tables.items():
            for column in table.columns:
                sequence = connection.scalar(
                    text("SELECT pg_get_serial_sequence(quote_ident(:table), :column)"),
                    {"table": name, "column": column.name},
                )
                if sequence is None:
                    continue
                highest = connection.scalar(select(func.max(table.c[column.name])))
                # Empty: the next id is 1 (is_called false); else the one after the highest.
                value, called = (1, False) if highest is None else (highest, True)
                connection.execute(
                    text("SELECT setval(:sequence, :value, :called)"),
                    {"sequence": sequence, "value": value, "called": called},
                )
                done.append(sequence)
        return done


def _read_json(text_: str) -> JsonValue:
    return JsonValue(json.loads(text_))


def _read_datetime(value: Any) -> Any:
    if not isinstance(value, datetime):
        return value
    if value.tzinfo is None:
        return value.replace(tzinfo=timezone.utc)  # SQLite's text is UTC (UTCDateTime)
    return value.astimezone(timezone.utc)


# How a value read from either backend becomes canonical, by column kind (None: as it comes).
_READERS: dict[str, Callable[[Any], Any]] = {
    "json": _read_json,
    "datetime": _read_datetime,
    "bool": bool,
    "float": float,
}


def _json_param(value: Any) -> Any:
    if value is None:
        return None
    assert isinstance(value, JsonValue), "a JSON column's canonical value is a JsonValue"
    return JSON.NULL if value.value is None else value.value


def _aware_param(value: Any) -> Any:
    return value


def _naive_param(value: Any) -> Any:
    if isinstance(value, datetime) and value.tzinfo is not None:
        return value.astimezone(timezone.utc).replace(tzinfo=None)
    return value


def _same(value: Any) -> Any:
    return value
