"""``vareon db check``: where a store stands: revision, pending migrations, rows, size, in use.

Read only, on either backend, and safe beside a running runtime: it neither migrates nor writes,
and it reads every count in one snapshot.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import Connection, text
from sqlalchemy.exc import SQLAlchemyError

from vareon_runtime.errors import StoreError
from vareon_runtime.store.copy import sqlite_file
from vareon_runtime.store.engine import check_driver, create_engines, shown_url
from vareon_runtime.store.lock import StoreLock
from vareon_runtime.store.revisions import Revisions, revisions
from vareon_runtime.store.schema import StoreSchema

__all__ = ["StoreCheck", "check_store"]


@dataclass(frozen=True)
class StoreCheck:
    """What ``vareon db check`` reports about one store.

    Attributes:
        url: the store's URL, without its password.
        backend: ``SQLite 3.45.1`` or ``PostgreSQL 15.20``.
        revisions: its revisions against this installation's migrations.
        tables: each table's rows, in foreign-key order (Alembic's version table included).
        size: bytes the store takes: the SQLite file and its WAL, or ``pg_database_size``.
        size_detail: how ``size`` was measured.
        in_use: whether a runtime or another command has it open now.
    """

    url: str
    backend: str
    revisions: Revisions
    tables: tuple[tuple[str, int], ...]
    size: int
    size_detail: str
    in_use: bool

    def lines(self) -> list[str]:
        """The report as ``vareon db check`` prints it."""
        r = self.revisions
        revision = r.named(r.current) if r.current else "none (the runtime has not started on it yet)"
        if r.pending:
            pending = f"{len(r.pending)}: {r.named(r.pending)} (applied when the runtime next starts)"
        else:
            pending = "none"
        lines = [
            f"store      {self.url}",
            f"backend    {self.backend}",
            f"in use     {'yes: a runtime or a vareon command has it open' if self.in_use else 'no'}",
            f"revision   {revision}",
            f"pending    {pending}",
        ]
        if r.unknown:
            lines.append(
                f"unknown    {', '.join(r.unknown)}: not in this installation (a newer vareon-runtime"
                " migrated it; upgrade before running on it)"
            )
        lines.append(f"size       {human_size(self.size)} ({self.size_detail})")
        width = max((len(name) for name, _ in self.tables), default=5)
        lines.append(f"{'table':<{width}}  {'rows':>10}")
        lines.extend(f"{name:<{width}}  {rows:>10}" for name, rows in self.tables)
        total = sum(rows for name, rows in self.tables if name != "alembic_version")
        lines.append(f"{'total':<{width}}  {total:>10}")
        return lines


def human_size(size: int) -> str:
    """``size`` bytes in binary units: ``512 B``, ``1.5 KiB``, ``12.3 MiB``."""
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{int(value)} B" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")


def check_store(url: str) -> StoreCheck:
    """Report on the store at ``url`` without changing it.

    Raises:
        StoreError: there is no SQLite file at the URL, or the database cannot be opened.
        ConfigError: the database's driver is not installed.
    """
    check_driver(url)
    path = sqlite_file(url)
    if path is not None and not path.is_file():
        raise StoreError(
            f"there is no SQLite database at {path} ({shown_url(url)}); the runtime creates it when"
            " it first starts"
        )
    in_use = StoreLock(url).in_use()
    engines = create_engines(url)
    try:
        with engines.reader.connect() as connection, connection.begin():
            state = revisions(connection)
            schema = StoreSchema(connection)
            tables = tuple(schema.counts(connection).items())
            if path is not None:
                backend = f"SQLite {sqlite3.sqlite_version}"
                size, detail = _sqlite_size(path)
            else:
                backend = f"PostgreSQL {connection.scalar(text('SHOW server_version'))}"
                size, detail = _postgres_size(connection)
    except SQLAlchemyError as exc:
        raise StoreError(f"cannot read {shown_url(url)}: {exc}") from exc
    finally:
        engines.dispose()
    return StoreCheck(shown_url(url), backend, state, tables, size, detail, in_use)


def _sqlite_size(path: Path) -> tuple[int, str]:
    wal = path.with_name(path.name + "-wal")
    main = path.stat().st_size
    log = wal.stat().st_size if wal.exists() else 0
    return main + log, f"{path.name} {human_size(main)} + WAL {human_size(log)}"


def _postgres_size(connection: Connection) -> tuple[int, str]:
    size = int(connection.scalar(text("SELECT pg_database_size(current_database())")) or 0)
    name = connection.scalar(text("SELECT current_database()"))
    return size, f"pg_database_size of {name}"
