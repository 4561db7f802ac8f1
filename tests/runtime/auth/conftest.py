"""Fixtures of the auth tests: a configuration, a running store with an ``Auth``, its log."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
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
