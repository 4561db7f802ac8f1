"""Fixtures of the actors' tests: a real store on a temporary SQLite file."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import trio

from vareon_runtime.store import Store


@pytest.fixture
async def store(nursery: trio.Nursery, tmp_path: Path) -> AsyncIterator[Store]:
    store: Store = await nursery.start(
        Store(f"sqlite:///{tmp_path / 'data' / 'vareon.db'}", sqlite_synchronous="normal").run
    )
    yield store
    await store.close()
