"""Fixtures shared by the whole test suite."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import pytest
from postgres_support import fresh_database


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A URL of an empty database: a SQLite file under tmp_path, or a fresh PostgreSQL database.

    The PostgreSQL variant creates ``vareon_test_<hex>`` on 127.0.0.1:5432 (user postgres) and
    drops it afterwards; it skips, saying why, when the server is unreachable.
    """
    if request.param == "sqlite":
        # A directory that does not exist yet: the store must create it.
        yield f"sqlite:///{tmp_path / 'data' / 'vareon.db'}"
        return
    yield from fresh_database()


class LogRecords(logging.Handler):
    """Every record logged under ``vareon`` during a test, in order (iterate it, or ask for the
    messages at or above a level). The suite runs with ``-p no:logging``, so there is no caplog."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def __iter__(self) -> Iterator[logging.LogRecord]:
        return iter(list(self.records))

    def messages(self, level: int = logging.DEBUG) -> list[str]:
        return [r.getMessage() for r in self.records if r.levelno >= level]


@pytest.fixture
def log_records() -> Iterator[LogRecords]:
    """The ``vareon`` log of the test (see :class:`LogRecords`)."""
    logger = logging.getLogger("vareon")
    handler = LogRecords()
    level = logger.level
    logger.setLevel(logging.DEBUG)
    logger.addHandler(handler)
    try:
        yield handler
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)


@pytest.fixture(autouse=True)
def _restore_root_logging() -> Iterator[None]:
    """Commands and tests may configure logging; leave the root logger as the test found it."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    for handler in list(root.handlers):
        if handler not in handlers:
            root.removeHandler(handler)
            handler.close()
    root.setLevel(level)
