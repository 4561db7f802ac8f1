"""Fixtures of the drivers' tests."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import trio
from process_support import TIMEOUT, Leftovers

from drivers import OSProcess


@pytest.fixture
async def leftovers() -> AsyncIterator[Leftovers]:
    """A token for the test's command lines; whatever carries it (or was tracked) when the test
    ends is killed and reaped."""
    found = Leftovers()
    yield found
    await found.sweep()


@pytest.fixture
async def processes(leftovers: Leftovers) -> AsyncIterator[list[OSProcess]]:
    """Processes a test starts; each is stopped and reaped afterwards (before the sweep of
    :func:`leftovers`)."""
    made: list[OSProcess] = []
    yield made
    with trio.fail_after(TIMEOUT):
        for proc in made:
            await proc.stop(0)
            await proc.aclose()
