"""Move a store to another database, verified: ``vareon db copy`` and ``vareon db verify``.

:func:`copy_store` copies every table of a stopped store (SQLite to PostgreSQL, or back) into an
empty database, and keeps the copy only once it is verified:

1. both databases are held exclusively (:class:`~vareon_runtime.store.lock.StoreLock`): a
   runtime running on either makes it refuse, and no runtime starts on either meanwhile;
2. the source is read in one snapshot, read-only; it is never migrated or written;
3. in **one transaction** on the target: a target with rows in any table is refused (naming
   them); the target is migrated, by the same Alembic revisions the store applies (the
   kernel's and every installed component's), to exactly the source's revisions; every table
   the migrations made is filled in foreign-key order, in batches, with progress; PostgreSQL
   sequences are set past the copied ids; then every table, Alembic's version table included,
   is read back from the target in key order and its row count and checksum compared with
   those of the rows copied (:mod:`~vareon_runtime.store.digest`); a table that differs is read
   again on both sides, in step, to find the first row where they part;
4. only if every table matches is the transaction committed. Otherwise it is rolled back, so
   the target is as it was (a SQLite target file the copy created is removed), and the report
   names each table that differs and where it first differs.

:func:`verify_stores` compares two databases at rest, both read in step: run it before
deleting the old SQLite file.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from itertools import zip_longest
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError, SQLAlchemyError

from vareon_runtime.checks import check_counts
from vareon_runtime.errors import StoreError
from vareon_runtime.store.digest import TableDigest, encode_row
from vareon_runtime.store.engine import check_driver, create_engines, shown_url
from vareon_runtime.store.lock import StoreLock
from vareon_runtime.store.revisions import current_revisions, upgrade_to
from vareon_runtime.store.schema import VERSION_TABLE, StoreSchema, TableShape

__all__ = ["Comparison", "Progress", "TableCheck", "copy_store", "sqlite_file", "verify_stores"]

logger = logging.getLogger("vareon.store")

Progress = Callable[[str, int, int], None]
"""Called as ``progress(table, rows_done, rows_total)``: at a table's start and after each batch."""


@dataclass(frozen=True)
class TableCheck:
    """One table on both sides: row counts, checksums, and where the rows first differ."""

    name: str
    source_rows: int
    target_rows: int
    source_checksum: str
    target_checksum: str
    difference: str | None = None

    @property
    def ok(self) -> bool:
        return self.source_rows == self.target_rows and self.source_checksum == self.target_checksum


@dataclass(frozen=True)
class Comparison:
    """Every table of a source compared with its target."""

    source: str
    target: str
    revisions: tuple[str, ...]
    tables: tuple[TableCheck, ...]

    @property
    def ok(self) -> bool:
        return all(table.ok for table in self.tables)

    @property
    def mismatched(self) -> list[TableCheck]:
        return [table for table in self.tables if not table.ok]

    @property
    def rows(self) -> int:
        """Rows in the source's data tables (Alembic's version table left out)."""
        return sum(t.source_rows for t in self.tables if t.name != VERSION_TABLE)


def sqlite_file(url: str) -> Path | None:
    """The database file of a SQLite URL, None for another backend."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite":
        return None
    database = parsed.database or ""
    if parsed.query.get("uri") == "true":
        database = database.removeprefix("file:").split("?", 1)[0]
    return Path(database).expanduser()


def copy_store(
    source: str,
    target: str,
    *,
    batch_size: int = 1000,
    progress: Progress | None = None,
    extra: Sequence[str] = (),
) -> Comparison:
    """Copy the store at ``source`` into the empty database at ``target``, verified.

    Args:
        source: the store's URL (it is only read).
        target: an empty database: a PostgreSQL database with no rows (no tables, or the
            store's tables empty), or a SQLite file that does not exist yet.
        batch_size: rows read and inserted at a time.
        progress: told about each table's progress.
        extra: packages of revisions besides the kernel's and the installed components'.

    Returns:
        The comparison of every table. The copy is committed only when it is ``ok``; otherwise
        the target was rolled back to what it was.

    Raises:
        StoreInUseError: a runtime or another command has either database open.
        StoreError: the source holds no store or does not exist, the target is not empty or
            cannot be brought to the source's revisions, or a row could not be written (the
            target is then as it was).
        ConfigError: a database's driver is not installed.
    """
    check_counts({"batch_size": batch_size})
    check_driver(source)
    check_driver(target)
    _refuse_same(source, target)
    _require_file(source)
    target_file = sqlite_file(target)
    created = target_file is not None and not target_file.exists()
    if target_file is not None:
        target_file.parent.mkdir(parents=True, exist_ok=True)
    try:
        with StoreLock(source) as source_lock, StoreLock(target) as target_lock:
            source_lock.hold_exclusive()
            _opening(target, target_lock.hold_exclusive)
            comparison = _with_engines(
                source, target, lambda s, t: _copy(s.reader, t.writer, source, target, batch_size, progress, extra)
            )
    except BaseException:
        if created:
            _remove_sqlite(target_file)
        raise
    if created and not comparison.ok:
        _remove_sqlite(target_file)
    return comparison


def verify_stores(source: str, target: str, *, batch_size: int = 1000) -> Comparison:
    """Compare every table of two stores at rest: row counts, checksums, first difference.

    Raises:
        StoreInUseError: a runtime or another command has either database open.
        StoreError: either holds no store, or their tables differ in shape.
    """
    check_counts({"batch_size": batch_size})
    check_driver(source)
    check_driver(target)
    _refuse_same(source, target)
    _require_file(source)
    _require_file(target)
    with StoreLock(source) as source_lock, StoreLock(target) as target_lock:
        source_lock.hold_exclusive()
        _opening(target, target_lock.hold_exclusive)
        return _with_engines(source, target, lambda s, t: _verify(s.reader, t.reader, source, target, batch_size))


# -- the two passes ------------------------------------------------------------------------


def _copy(
    source_engine: Engine,
    target_engine: Engine,
    source: str,
    target: str,
    batch_size: int,
    progress: Progress | None,
    extra: Sequence[str],
) -> Comparison:
    with _snapshot(source_engine) as src:
        revisions = _store_revisions(src, source)
        source_schema = StoreSchema(src)
        totals = source_schema.counts(src)
        with target_engine.connect() as dst:
            sqlite_target = dst.dialect.name == "sqlite"
            raw: Any = dst.connection.dbapi_connection
            if sqlite_target:
                # As the store's migrations do: batch migrations recreate tables, and rows go in
                # table by table; the foreign keys are checked once, before COMMIT.
                raw.execute("PRAGMA foreign_keys=OFF")
            try:
                transaction = dst.begin()
                try:
                    comparison = _fill(
                        src, source_schema, dst, revisions, totals, source, target, batch_size, progress, extra
                    )
                except BaseException:
                    transaction.rollback()
                    raise
                if comparison.ok:
                    transaction.commit()
                else:
                    transaction.rollback()
                    logger.warning("copy of %s to %s rolled back: %s differ", source, target,
                                   ", ".join(t.name for t in comparison.mismatched))
            finally:
                if sqlite_target:
                    raw.execute("PRAGMA foreign_keys=ON")
    return comparison


def _fill(
    src: Connection,
    source_schema: StoreSchema,
    dst: Connection,
    revisions: tuple[str, ...],
    totals: dict[str, int],
    source: str,
    target: str,
    batch_size: int,
    progress: Progress | None,
    extra: Sequence[str],
) -> Comparison:
    shown_target = shown_url(target)
    before = StoreSchema(dst)
    occupied = {name: n for name in before.data_tables if (n := before.count(dst, name))}
    if occupied:
        listed = ", ".join(f"{name} ({n} rows)" for name, n in occupied.items())
        raise StoreError(
            f"the target {shown_target} is not empty: {listed}; copy into an empty database"
            " (create a new one, e.g. `createdb vareon`), nothing was changed"
        )
    upgrade_to(dst, revisions, extra)
    reached = current_revisions(dst)
    if reached != revisions:
        raise StoreError(
            f"the target {shown_target} is at revisions {', '.join(reached)}, not the source's"
            f" {', '.join(revisions)}: it was migrated further before; copy into an empty database"
            " (a new one, or drop its tables), nothing was changed"
        )
    target_schema = StoreSchema(dst)
    _require_same_tables(source_schema, target_schema, shown_url(source), shown_target)
    order = [name for name in target_schema.data_tables if name in source_schema.shapes]
    # The source's side of the comparison is taken from the rows as they are copied: the source
    # is read once more only for a table whose checksums differ, to say where.
    copied = {VERSION_TABLE: _digest(source_schema, src, VERSION_TABLE, batch_size)}
    for name in order:
        total, done = totals[name], 0
        digest = copied[name] = TableDigest()
        if progress is not None:
            progress(name, 0, total)
        try:
            for rows in source_schema.rows(src, name, batch=batch_size):
                target_schema.insert(dst, name, rows)
                for row in rows:
                    digest.add(encode_row(row))
                done += len(rows)
                if progress is not None:
                    progress(name, done, total)
        except SQLAlchemyError as exc:
            raise StoreError(
                f"copying table {name} into {shown_target} failed after {done} of {total} rows:"
                f" {_reason(exc)}; the target was rolled back to what it was, the source was not"
                " changed"
            ) from exc
    target_schema.reset_sequences(dst)
    if dst.dialect.name == "sqlite":
        broken = dst.exec_driver_sql("PRAGMA foreign_key_check").all()
        if broken:
            tables = sorted({str(row[0]) for row in broken})
            raise StoreError(
                f"the source's rows break foreign keys in {', '.join(tables)} ({len(broken)} rows);"
                " the target was rolled back to what it was, the source was not changed"
            )
    checks = []
    for name in [VERSION_TABLE, *order]:
        before, after = copied[name], _digest(target_schema, dst, name, batch_size)
        if (before.rows, before.checksum) == (after.rows, after.checksum):
            checks.append(TableCheck(name, before.rows, after.rows, before.checksum, after.checksum))
        else:
            checks.append(_compare(src, source_schema, dst, target_schema, name, batch_size))
    if dst.dialect.name == "postgresql" and all(check.ok for check in checks):
        dst.exec_driver_sql("ANALYZE")  # the planner's statistics for the tables just filled
    return Comparison(shown_url(source), shown_target, revisions, tuple(checks))


def _verify(source_engine: Engine, target_engine: Engine, source: str, target: str, batch_size: int) -> Comparison:
    with _snapshot(source_engine) as src, _snapshot(target_engine) as dst:
        revisions = _store_revisions(src, source)
        _store_revisions(dst, target)
        source_schema, target_schema = StoreSchema(src), StoreSchema(dst)
        _require_same_tables(source_schema, target_schema, shown_url(source), shown_url(target))
        names = [VERSION_TABLE, *(n for n in target_schema.data_tables if n in source_schema.shapes)]
        checks = [_compare(src, source_schema, dst, target_schema, name, batch_size) for name in names]
        for name in target_schema.data_tables:
            if name not in source_schema.shapes:  # only in the target: all its rows are extra
                rows = target_schema.count(dst, name)
                if rows:
                    checks.append(TableCheck(name, 0, rows, "", "", "the table is not in the source"))
        return Comparison(shown_url(source), shown_url(target), revisions, tuple(checks))


def _compare(
    src: Connection, source_schema: StoreSchema, dst: Connection, target_schema: StoreSchema, name: str, batch: int
) -> TableCheck:
    """Read ``name`` on both sides in key order, in step: counts, checksums, first difference."""
    shape = target_schema.shapes[name]
    left_digest, right_digest = TableDigest(), TableDigest()
    difference: str | None = None
    pairs = zip_longest(_lines(source_schema, src, name, batch), _lines(target_schema, dst, name, batch))
    for left, right in pairs:
        if left is not None:
            left_digest.add(left[1])
        if right is not None:
            right_digest.add(right[1])
        if difference is None and (left is None or right is None or left[1] != right[1]):
            difference = _difference(shape, left, right)
    return TableCheck(
        name, left_digest.rows, right_digest.rows, left_digest.checksum, right_digest.checksum, difference
    )


def _digest(schema: StoreSchema, connection: Connection, name: str, batch: int) -> TableDigest:
    digest = TableDigest()
    for rows in schema.rows(connection, name, batch=batch):
        for row in rows:
            digest.add(encode_row(row))
    return digest


def _lines(
    schema: StoreSchema, connection: Connection, name: str, batch: int
) -> Iterator[tuple[tuple[Any, ...], bytes]]:
    for rows in schema.rows(connection, name, batch=batch):
        for row in rows:
            yield row, encode_row(row)


def _difference(
    shape: TableShape, left: tuple[tuple[Any, ...], bytes] | None, right: tuple[tuple[Any, ...], bytes] | None
) -> str:
    """Where two streams first part, by key and column names only (values may be secrets)."""
    names = [c.name for c in shape.columns]

    def key(row: tuple[Any, ...]) -> str:
        return ", ".join(f"{k}={row[names.index(k)]!r}" for k in shape.key)

    if right is None:
        assert left is not None
        return f"the target lacks the row {key(left[0])}"
    if left is None:
        return f"the target has an extra row {key(right[0])}"
    if key(left[0]) != key(right[0]):
        return f"the source's row {key(left[0])} meets the target's row {key(right[0])}"
    columns = [n for n, a, b in zip(names, left[0], right[0], strict=True) if encode_row([a]) != encode_row([b])]
    return f"the row {key(left[0])} differs in {', '.join(columns)}"


# -- opening -------------------------------------------------------------------------------


def _with_engines(source: str, target: str, work: Callable[[Any, Any], Comparison]) -> Comparison:
    source_engines = create_engines(source)
    try:
        target_engines = create_engines(target)
        try:
            return work(source_engines, target_engines)
        except DBAPIError as exc:
            raise StoreError(f"the database failed: {_reason(exc)}") from exc
        finally:
            target_engines.dispose()
    finally:
        source_engines.dispose()


class _snapshot:
    """A connection in one read transaction: every table read as of the same moment."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    def __enter__(self) -> Connection:
        connection = self._engine.connect()
        if connection.dialect.name == "postgresql":
            connection = connection.execution_options(isolation_level="REPEATABLE READ")
        self._connection = connection
        self._transaction = connection.begin()
        return connection

    def __exit__(self, *exc_info: object) -> None:
        try:
            self._transaction.rollback()  # nothing was written: ending the snapshot
        finally:
            self._connection.close()


def _store_revisions(connection: Connection, url: str) -> tuple[str, ...]:
    revisions = current_revisions(connection)
    if not revisions:
        raise StoreError(
            f"{shown_url(url)} holds no Vareon store (it has no alembic_version): nothing to compare"
            " or copy; is it the right database?"
        )
    return revisions


def _require_same_tables(source: StoreSchema, target: StoreSchema, source_url: str, target_url: str) -> None:
    missing = [name for name in source.data_tables if name not in target.shapes]
    if missing:
        raise StoreError(
            f"{target_url} has no table {', '.join(missing)} of {source_url}: their migrations are"
            " not installed here (is a component missing? `pip install` it), nothing was copied"
        )
    differ = [
        name for name in source.data_tables if source.shapes[name].signature != target.shapes[name].signature
    ]
    if differ:
        raise StoreError(
            f"the columns of {', '.join(differ)} differ between {source_url} and {target_url}"
            " although both are at the same revisions; was a table changed by hand?"
        )


def _refuse_same(source: str, target: str) -> None:
    source_file, target_file = sqlite_file(source), sqlite_file(target)
    if source_file is not None and target_file is not None:
        same = source_file.resolve() == target_file.resolve()
    else:
        same = shown_url(source) == shown_url(target)
    if same:
        raise StoreError(f"the source and the target are the same database ({shown_url(source)})")


def _require_file(url: str) -> None:
    path = sqlite_file(url)
    if path is not None and not path.is_file():
        raise StoreError(f"there is no SQLite database at {path} ({shown_url(url)}); check the path")


def _opening(url: str, hold: Callable[[], None]) -> None:
    """Hold the target, saying how to create a PostgreSQL database that does not exist."""
    try:
        hold()
    except StoreError as exc:
        if "does not exist" in str(exc) and make_url(url).get_backend_name() == "postgresql":
            parsed = make_url(url)
            raise StoreError(
                f"{exc}; create it first: createdb -h {parsed.host or 'localhost'}"
                f" -U {parsed.username or 'postgres'} {parsed.database}"
            ) from exc
        raise


def _remove_sqlite(path: Path | None) -> None:
    if path is None:
        return
    for leftover in (path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
        leftover.unlink(missing_ok=True)


def _reason(exc: SQLAlchemyError) -> str:
    orig = getattr(exc, "orig", None)
    if orig is not None:
        return f"{type(orig).__name__}: {str(orig).strip()}"
    return f"{type(exc).__name__}: {exc}"

