"""Build the store's synchronous SQLAlchemy engines (one writer, a pool of readers) from a URL.

Every engine is created with ``hide_parameters=True``: SQLAlchemy otherwise appends the
statement's parameters (``[parameters: ...]``) to its error messages, and those carry password
hashes and tokens into ``StoreError`` messages, tracebacks and logs.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import URL, Connection, make_url
from sqlalchemy.exc import ArgumentError

from vareon_runtime.checks import check_counts, check_seconds
from vareon_runtime.errors import ConfigError

__all__ = ["POSTGRES_INSTALL", "SQLITE_SYNCHRONOUS", "Engines", "check_driver", "create_engines", "shown_url"]

SQLITE_SYNCHRONOUS = ("full", "normal")

POSTGRES_INSTALL = "pip install 'vareon-runtime[postgres]' (in a clone: pip install -e '.[postgres]')"
"""The command that installs the PostgreSQL driver (the ``postgres`` extra: psycopg 3)."""

# libpq's connection settings: a server that does not answer fails a connection attempt within
# seconds rather than the kernel's two minutes, and a connection whose server vanished without
# a word (a cable, a crashed VM) is found dead by TCP keepalives within about a minute instead
# of holding the single writer until the kernel gives up.
_POSTGRES_CONNECT = {
    "connect_timeout": 10,
    "keepalives": 1,
    "keepalives_idle": 30,
    "keepalives_interval": 10,
    "keepalives_count": 3,
}


def shown_url(url: str | URL) -> str:
    """``url`` as it may be shown: in messages, logs and reports, without its password."""
    return make_url(url).render_as_string(hide_password=True)


def check_driver(url: str | URL) -> None:
    """Fail, naming the fix, when ``url``'s database cannot be opened for want of its driver.

    SQLite's driver is in the standard library; PostgreSQL's, psycopg 3, comes with the
    ``postgres`` extra. Without this check a missing driver surfaces as a
    ``ModuleNotFoundError`` deep inside SQLAlchemy's dialect loading.

    Raises:
        ConfigError: the driver cannot be imported (the message says which and how to install
            it), or ``url`` is not a URL of a backend the store runs on.
    """
    try:
        parsed = make_url(url)
    except ArgumentError:
        # Not echoed: an unreadable URL cannot have its password hidden.
        raise ConfigError(
            "the database URL cannot be read; write it as sqlite:////path/to/vareon.db or"
            " postgresql+psycopg://user@host:5432/dbname"
        ) from None
    if parsed.get_backend_name() not in ("sqlite", "postgresql"):
        raise ConfigError(
            f"the store runs on SQLite or PostgreSQL, not {parsed.drivername}:// ({shown_url(parsed)})"
        )
    if parsed.drivername == "postgresql":
        parsed = parsed.set(drivername="postgresql+psycopg")
    try:
        dialect = parsed.get_dialect()
    except ArgumentError:  # an unknown backend or driver: create_engines says which are supported
        return
    if getattr(dialect, "is_async", False):
        raise ConfigError(
            f"{parsed.drivername}:// is an asyncio driver, which the store's worker threads cannot"
            f" use; write postgresql+psycopg:// ({shown_url(parsed)})"
        )
    try:
        dialect.import_dbapi()
    except ImportError as exc:
        module = getattr(exc, "name", None) or parsed.get_driver_name()
        fix = POSTGRES_INSTALL if parsed.get_driver_name() == "psycopg" else f"pip install {module}"
        raise ConfigError(
            f"the database {shown_url(parsed)} needs the Python driver {module!r}, which is not"
            f" installed ({exc}); install it with: {fix}"
        ) from None


@dataclass(frozen=True, slots=True)
class Engines:
    """The store's engines: ``writer`` holds the single write connection, ``reader`` the pool."""

    writer: Engine
    reader: Engine

    def dispose(self) -> None:
        """Close every pooled connection of both engines."""
        self.writer.dispose()
        self.reader.dispose()


def create_engines(
    url: str | URL,
    *,
    sqlite_synchronous: str = "full",
    read_pool_size: int = 4,
    busy_timeout: float = 5.0,
) -> Engines:
    """Create the writer and reader engines for ``url``.

    Args:
        url: ``sqlite:///path/to/file.db`` or ``postgresql+psycopg://user@host/db``
            (a bare ``postgresql://`` is taken to mean psycopg 3).
        sqlite_synchronous: ``"full"`` (durable across power loss) or ``"normal"`` (durable
            across a process crash, faster on slow flash).
        read_pool_size: number of reader connections.
        busy_timeout: seconds a SQLite connection waits for a lock before failing.

    Returns:
        The engines; nothing is connected yet.

    Raises:
        ValueError: an argument is out of range, the URL is not a file SQLite URL or names an
            unsupported backend.
        ConfigError: the URL's driver is not installed (PostgreSQL without the ``postgres``
            extra).
    """
    sync = sqlite_synchronous.lower()
    if sync not in SQLITE_SYNCHRONOUS:
        raise ValueError(
            f"sqlite_synchronous must be one of {SQLITE_SYNCHRONOUS}, not {sqlite_synchronous!r}"
        )
    check_counts({"read_pool_size": read_pool_size})
    check_seconds({"busy_timeout": busy_timeout})
    parsed = make_url(url)
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        return _sqlite_engines(parsed, sync, read_pool_size, busy_timeout)
    if backend == "postgresql":
        check_driver(parsed)
        return _postgresql_engines(parsed, read_pool_size)
    raise ValueError(
        f"the store supports sqlite:/// and postgresql+psycopg:// URLs, not {parsed.drivername}://"
    )


def _sqlite_engines(
    url: URL, synchronous: str, read_pool_size: int, busy_timeout: float
) -> Engines:
    database = url.database or ""
    if database in ("", ":memory:") or url.query.get("mode") == "memory":
        # Each connection to a memory database sees its own database: the readers would never
        # see what the writer wrote.
        raise ValueError(
            f"the store needs a SQLite file, not an in-memory database ({url!s}); "
            "use sqlite:///path/to/vareon.db"
        )
    if url.query.get("uri") != "true":
        Path(database).expanduser().parent.mkdir(parents=True, exist_ok=True)
    pragmas = (
        f"PRAGMA busy_timeout={int(busy_timeout * 1000)}",
        "PRAGMA journal_mode=WAL",
        f"PRAGMA synchronous={synchronous.upper()}",
        "PRAGMA foreign_keys=ON",
    )
    connect_args = {"check_same_thread": False, "timeout": busy_timeout}
    writer = create_engine(
        url, pool_size=1, max_overflow=0, connect_args=connect_args, hide_parameters=True
    )
    reader = create_engine(
        url,
        pool_size=read_pool_size,
        max_overflow=0,
        connect_args=connect_args,
        hide_parameters=True,
    )
    # The writer takes the write lock when its transaction begins (BEGIN IMMEDIATE): a
    # deferred transaction that upgrades to a write lock later fails at once with SQLITE_BUSY
    # in WAL mode instead of waiting busy_timeout. The readers may not write at all.
    _configure_sqlite(writer, pragmas, begin="BEGIN IMMEDIATE")
    _configure_sqlite(reader, (*pragmas, "PRAGMA query_only=ON"), begin="BEGIN")
    return Engines(writer=writer, reader=reader)


def _configure_sqlite(engine: Engine, pragmas: tuple[str, ...], *, begin: str) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, connection_record: Any) -> None:
        # Take transaction control away from the sqlite3 module (it would BEGIN lazily before
        # the first DML only, and never for SELECT); SQLAlchemy emits BEGIN below. It also lets
        # the PRAGMAs run outside a transaction, where they take effect.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        try:
            for pragma in pragmas:
                cursor.execute(pragma)
        finally:
            cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Connection) -> None:
        connection.exec_driver_sql(begin)


def _postgresql_engines(url: URL, read_pool_size: int) -> Engines:
    if url.drivername == "postgresql":
        url = url.set(drivername="postgresql+psycopg")
    # What the URL sets itself (?connect_timeout=3) wins over these defaults.
    connect = {key: value for key, value in _POSTGRES_CONNECT.items() if key not in url.query}
    # pre_ping: a server restart must cost one reconnect, not one failed write per connection.
    writer = create_engine(
        url,
        pool_size=1,
        max_overflow=0,
        pool_pre_ping=True,
        hide_parameters=True,
        connect_args=connect,
    )
    reader = create_engine(
        url,
        pool_size=read_pool_size,
        max_overflow=0,
        pool_pre_ping=True,
        hide_parameters=True,
        # Reads go through the reader pool only; a write slipped into read() fails loudly.
        connect_args={**connect, "options": "-c default_transaction_read_only=on"},
    )
    return Engines(writer=writer, reader=reader)
