"""Who has a store's database open: a shared hold for every ``Store``, an exclusive one for moving it.

Every running ``Store`` (the runtime's, and the one ``vareon user ...`` opens) holds its
database *shared*; ``vareon db copy`` and ``vareon db verify`` hold both databases
*exclusively*. So a copy refuses while a runtime runs on its source or its target, and a runtime
refuses to start while a copy moves its database (docs/decisions/0026-moving-the-store.md).

- SQLite: ``flock`` on ``<database>.lock`` beside the database file. The kernel drops the lock
  with the process, ``kill -9`` and power loss included, so it never goes stale; the file itself
  stays (deleting a lock file races with whoever opens it next). The database file is not locked
  itself: closing any descriptor of a file drops the POSIX locks SQLite holds on it.
- PostgreSQL: a session-level advisory lock (key :data:`ADVISORY_KEY`) in that database, on a
  connection of its own. The server drops it with the session; a server restart drops it too,
  and a runtime takes it again only when it next starts (the decision says why that is enough).
"""

from __future__ import annotations

import fcntl
import os
import time
from pathlib import Path
from typing import Self

from sqlalchemy import Connection, Engine, create_engine, text
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.pool import NullPool

from vareon_runtime.errors import StoreError
from vareon_runtime.store.engine import check_driver, shown_url

__all__ = ["ADVISORY_KEY", "StoreInUseError", "StoreLock", "lock_path"]

ADVISORY_KEY = int.from_bytes(b"vareonDB", "big")
"""The PostgreSQL advisory lock key of a Vareon store (``pg_locks``: classid/objid halves)."""

# How often a waiting shared hold tries again: `vareon db check` probes with a momentary
# exclusive hold, which must not make a runtime starting at that moment fail.
_RETRY = 0.05


class StoreInUseError(StoreError):
    """The database is held by someone else in a way that excludes what was asked."""


def lock_path(database: str | Path) -> Path:
    """The lock file of the SQLite database file ``database``: ``<database>.lock`` beside it."""
    path = Path(database).expanduser()
    return path.with_name(path.name + ".lock")


class StoreLock:
    """A hold on one database: shared (a running store) or exclusive (moving it).

    Args:
        url: the database's URL (``sqlite:///...`` or ``postgresql+psycopg://...``).
    """

    def __init__(self, url: str | URL) -> None:
        self._url = make_url(url)
        self._shown = shown_url(self._url)
        self._backend = self._url.get_backend_name()
        self._fd: int | None = None
        self._engine: Engine | None = None
        self._connection: Connection | None = None
        self.held: str | None = None
        """``"shared"`` or ``"exclusive"`` while held, else None."""

    @property
    def where(self) -> str:
        """What is locked, for messages: the lock file, or the advisory lock and its database."""
        if self._backend == "sqlite":
            return f"the lock file {self._lock_file()}"
        return f"PostgreSQL advisory lock {ADVISORY_KEY} in {self._shown}"

    def hold_shared(self, *, wait: float) -> None:
        """Hold the database shared, waiting up to ``wait`` seconds for an exclusive holder.

        Raises:
            StoreInUseError: a `vareon db` command holds it exclusively.
            StoreError: the lock could not be taken at all (the database is unreachable).
        """
        deadline = time.monotonic() + wait
        while not self._try("shared"):
            if time.monotonic() >= deadline:
                self.release()
                raise StoreInUseError(
                    f"{self._shown} is being moved or verified by a `vareon db` command (it holds"
                    f" {self.where}); start the runtime once that command has finished"
                )
            time.sleep(_RETRY)

    def hold_exclusive(self) -> None:
        """Hold the database exclusively, or fail at once if anyone else has it open.

        Raises:
            StoreInUseError: a runtime or another `vareon` command has it open.
            StoreError: the lock could not be taken at all (the database is unreachable).
        """
        if not self._try("exclusive"):
            self.release()
            raise StoreInUseError(
                f"{self._shown} is open in a running runtime or another `vareon` command (it holds"
                f" {self.where}); stop the runtime first (Ctrl-C, or `systemctl stop vareon`),"
                " then run this again"
            )

    def in_use(self) -> bool:
        """Whether someone else has the database open now (a momentary exclusive probe)."""
        if self._backend == "sqlite" and not self._lock_file().parent.is_dir():
            return False
        try:
            return not self._try("exclusive")
        finally:
            self.release()

    def release(self) -> None:
        """Let go of the hold (closing the lock file or the lock's connection). Idempotent."""
        self.held = None
        if self._fd is not None:
            fd, self._fd = self._fd, None
            os.close(fd)  # drops the flock
        if self._connection is not None:
            connection, self._connection = self._connection, None
            try:
                connection.close()  # the session ends: the server drops its advisory locks
            except SQLAlchemyError:
                pass  # the connection was already gone, and its locks with it
        if self._engine is not None:
            engine, self._engine = self._engine, None
            engine.dispose()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.release()

    # -- the two backends ----------------------------------------------------------------

    def _try(self, mode: str) -> bool:
        if self._backend == "sqlite":
            held = self._try_flock(mode)
        elif self._backend == "postgresql":
            held = self._try_advisory(mode)
        else:  # create_engines refuses other backends; nothing to lock
            held = True
        if held:
            self.held = mode
        return held

    def _lock_file(self) -> Path:
        database = self._url.database or ""
        if self._url.query.get("uri") == "true":  # file:/path/vareon.db?mode=rwc
            database = database.removeprefix("file:").split("?", 1)[0]
        return lock_path(database)

    def _try_flock(self, mode: str) -> bool:
        if self._fd is None:
            path = self._lock_file()
            try:
                self._fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
            except OSError as exc:
                raise StoreError(f"cannot open {path}, the lock file of {self._shown}: {exc}") from exc
        operation = fcntl.LOCK_SH if mode == "shared" else fcntl.LOCK_EX
        try:
            fcntl.flock(self._fd, operation | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        return True

    def _try_advisory(self, mode: str) -> bool:
        try:
            if self._connection is None:
                check_driver(self._url)
                url = self._url
                if url.drivername == "postgresql":
                    url = url.set(drivername="postgresql+psycopg")
                self._engine = create_engine(
                    url,
                    poolclass=NullPool,
                    hide_parameters=True,
                    connect_args={"connect_timeout": 10, "application_name": "vareon store lock"},
                )
                self._connection = self._engine.connect().execution_options(isolation_level="AUTOCOMMIT")
            function = "pg_try_advisory_lock_shared" if mode == "shared" else "pg_try_advisory_lock"
            held = self._connection.scalar(text(f"SELECT {function}(:key)"), {"key": ADVISORY_KEY})
        except SQLAlchemyError as exc:
            self.release()
            raise StoreError(f"cannot open the database {self._shown}: {_reason(exc)}") from exc
        return bool(held)


def _reason(exc: SQLAlchemyError) -> str:
    orig = getattr(exc, "orig", None)
    return f"{type(orig).__name__}: {str(orig).strip()}" if orig is not None else f"{type(exc).__name__}: {exc}"
