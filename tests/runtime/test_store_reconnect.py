"""PostgreSQL going away under a running runtime: what was not acknowledged is refused with 503,
what was acknowledged is kept, and the runtime reconnects by itself once the server is back.

The server is a cluster of the test's own (``initdb``/``pg_ctl`` as the postgres user), never the
shared one: the test stops and starts it.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio
from postgres_support import ThrowawayCluster, fresh_database, throwaway_cluster
from sqlalchemy import func, select, text
from sqlalchemy.orm import Session

from vareon_runtime.auth import Role
from vareon_runtime.errors import StoreError
from vareon_runtime.store import EventRecord, Store

sys.path.append(str(Path(__file__).resolve().parents[1] / "web"))
from web_support import DEVICES, PASSWORD, START_TIMEOUT, error_of, start_front

pytestmark = pytest.mark.postgres

TIMEOUT = 60.0
DEVICES_PATH = "/api/myntrix/devices"


@pytest.fixture
def cluster() -> Iterator[ThrowawayCluster]:
    yield from throwaway_cluster()


@pytest.fixture
def postgres_url() -> Iterator[str]:
    yield from fresh_database()


def _device(name: str) -> dict[str, Any]:
    return {"name": name, "type": "sensor", "connectionString": "tcp://127.0.0.1:9"}


async def test_a_server_restart_refuses_what_was_not_acknowledged_and_the_runtime_reconnects(
    nursery: trio.Nursery, tmp_path: Path, cluster: ThrowawayCluster
) -> None:
    front = await start_front(
        nursery, tmp_path / "data", {"VAREON_DATABASE_URL": cluster.url}, components=DEVICES
    )
    with trio.fail_after(START_TIMEOUT):
        await front.ctx.auth.create_user("admin", "admin@example.com", PASSWORD, Role.ADMIN)
        token = (await front.ctx.auth.login("admin", PASSWORD, None)).access_token
    headers = {"Authorization": f"Bearer {token}"}
    async with httpx.AsyncClient(base_url=front.base_url, timeout=TIMEOUT) as client:
        with trio.fail_after(TIMEOUT):
            before = await client.post(DEVICES_PATH, json=_device("acknowledged"), headers=headers)
            assert before.status_code == 201, before.text

            await trio.to_thread.run_sync(cluster.stop)
            refused = await client.post(DEVICES_PATH, json=_device("refused"), headers=headers)
            assert refused.status_code == 503, refused.text
            error = error_of(refused.json())
            assert error["code"] == "unavailable"
            assert "database is unavailable" in str(error["message"])

            # The same runtime, not restarted: once the server is back the next write goes
            # through on its first try (the pool replaced the connections the restart broke).
            await trio.to_thread.run_sync(cluster.start)
            after = await client.post(DEVICES_PATH, json=_device("after the restart"), headers=headers)
            assert after.status_code == 201, after.text

            listed = await client.get(DEVICES_PATH, headers=headers)
            assert listed.status_code == 200, listed.text
            assert sorted(d["name"] for d in listed.json()) == ["acknowledged", "after the restart"]
    await front.stop()


def _add_event(session: Session) -> int:
    record = EventRecord(source="test", kind="note", message="kept")
    session.add(record)
    session.flush()
    return record.id


def _count_events(session: Session) -> int:
    return int(session.scalar(select(func.count()).select_from(EventRecord)) or 0)


async def test_a_write_whose_connection_breaks_before_commit_is_run_again_once(postgres_url: str) -> None:
    """The server ends the writer's session mid-transaction (as a restart does): nothing was
    committed, so the store runs the batch again on a new connection and the caller never
    sees the break."""
    calls = 0

    def breaks_its_connection_once(session: Session) -> int:
        nonlocal calls
        calls += 1
        if calls == 1:
            session.execute(text("SELECT pg_terminate_backend(pg_backend_pid())"))
        return _add_event(session)

    with trio.fail_after(TIMEOUT):
        async with trio.open_nursery() as nursery:
            store: Store = await nursery.start(Store(postgres_url).run)
            try:
                await store.write(breaks_its_connection_once)
                assert calls == 2
                assert await store.read(_count_events) == 1
                assert store.stats["failed"] == 0
            finally:
                await store.close()


async def test_a_write_while_the_server_is_down_names_the_reason_and_the_store_carries_on(
    cluster: ThrowawayCluster,
) -> None:
    with trio.fail_after(TIMEOUT):
        async with trio.open_nursery() as nursery:
            store: Store = await nursery.start(Store(cluster.url).run)
            try:
                await store.write(_add_event)
                await trio.to_thread.run_sync(cluster.stop)
                with pytest.raises(StoreError) as refused:
                    await store.write(_add_event)
                message = str(refused.value)
                assert "was not done (no transaction could begin: the database is unreachable" in message
                assert "Connection refused" in message or "connection failed" in message

                await trio.to_thread.run_sync(cluster.start)
                await store.write(_add_event)
                assert await store.read(_count_events) == 2  # the refused write is not there
            finally:
                await store.close()
