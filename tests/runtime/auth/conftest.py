"""Fixtures of the auth tests: a configuration, a running store with an ``Auth``, its log."""

from __future__ import annotations

import logging
import re
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import pytest
import trio

from vareon_runtime.auth import Auth
from vareon_runtime.config import Config, load_config
from vareon_runtime.store import Store

ConfigFactory = Callable[..., Config]


@pytest.fixture
def make_config(tmp_path: Path, database_url: str) -> ConfigFactory:
    """Build a configuration on the test's database, its data directory under tmp_path.

    Keyword arguments are VAREON_* overrides: ``make_config(AUTH_LOGIN_MAX_FAILURES="3")``.
    """

    def make(**env: str) -> Config:
        environ = {
            "VAREON_RUNTIME_DATA_DIR": str(tmp_path / "data"),
            "VAREON_DATABASE_URL": database_url,
            **{f"VAREON_{key}": value for key, value in env.items()},
        }
        return load_config(None, environ=environ)

    return make


@pytest.fixture
def config(make_config: ConfigFactory) -> Config:
    return make_config()


@pytest.fixture
async def store(config: Config) -> AsyncIterator[Store]:
    async with trio.open_nursery() as nursery:
        running: Store = await nursery.start(Store(config.database_url).run)
        try:
            yield running
        finally:
            await running.close()


@pytest.fixture
def auth(config: Config, store: Store) -> Auth:
    return Auth(config, store, environ={})


class LogRecords(logging.Handler):
    """Collects the records of the ``vareon.auth`` logger."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def messages(self, level: int = logging.DEBUG) -> list[str]:
        return [r.getMessage() for r in self.records if r.levelno >= level]

    def verification_token(self, username: str) -> str:
        for message in reversed(self.messages(logging.WARNING)):
            found = re.match(rf"email verification token for {re.escape(username)}: (\S+) ", message)
            if found:
                return found.group(1)
        raise AssertionError(f"no verification token for {username} in {self.messages()}")


@pytest.fixture
def auth_log() -> Iterator[LogRecords]:
    logger = logging.getLogger("vareon.auth")
    handler = LogRecords()
    level = logger.level
    logger.setLevel(logging.DEBUG)
    logger.addHandler(handler)
    try:
        yield handler
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
