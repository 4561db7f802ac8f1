"""Fixtures of the web tests: a real runtime with the web front (and the domains a module asks
for with ``front_components``), users of each role.

The runtime runs in the test's nursery on a fresh data directory (SQLite), its Hypercorn bound to
port 0 on 127.0.0.1; ``client`` talks to it over the loopback with httpx, ``test_client`` goes
through Quart's test client (no sockets) for the many small cases.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
import trio
from quart.testing import QuartClient
from web_support import PASSWORD, START_TIMEOUT, Account, Front, start_front

from vareon_runtime.auth import Role
from vareon_runtime.component import Component


@pytest.fixture
def front_environ() -> dict[str, str]:
    """Extra VAREON_* variables for the ``front`` fixture (override in a test module)."""
    return {}


@pytest.fixture
def front_components() -> tuple[Component, ...]:
    """Domain components the ``front`` fixture runs beside the web front (override in a module)."""
    return ()


@pytest.fixture
async def front(
    nursery: trio.Nursery,
    tmp_path: Path,
    front_environ: dict[str, str],
    front_components: tuple[Component, ...],
) -> AsyncIterator[Front]:
    """A running runtime with the web front (and ``front_components``); stopped after the test."""
    front = await start_front(nursery, tmp_path / "data", front_environ, components=front_components)
    yield front
    await front.stop()


@pytest.fixture
def base_url(front: Front) -> str:
    return front.base_url


@pytest.fixture
async def client(base_url: str) -> AsyncIterator[httpx.AsyncClient]:
    """An httpx client against the live Hypercorn (httpx runs on trio)."""
    async with httpx.AsyncClient(base_url=base_url, timeout=10.0) as http:
        yield http


@pytest.fixture
def test_client(front: Front) -> QuartClient:
    """Quart's test client of the running runtime's app (no sockets)."""
    return front.app.test_client()


@pytest.fixture
async def accounts(front: Front) -> dict[Role, Account]:
    """One verified user per role, each with a fresh access token."""
    made: dict[Role, Account] = {}
    with trio.fail_after(START_TIMEOUT):
        for role in Role:
            name = f"{role.value}-user"
            await front.ctx.auth.create_user(name, f"{name}@example.com", PASSWORD, role)
            pair = await front.ctx.auth.login(name, PASSWORD, None)
            made[role] = Account(name, role, pair.access_token)
    return made


