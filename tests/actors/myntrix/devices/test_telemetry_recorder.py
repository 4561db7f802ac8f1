"""The telemetry recorder: batched writes, flush at N samples and on stop, losses counted, pruning."""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
import trio
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from actors.myntrix.devices.configuration import TelemetrySettings
from actors.myntrix.devices.recorder import TelemetryRecorder
from actors.myntrix.devices.telemetry import DeviceStream
from vareon_runtime.bus import EventBus
from vareon_runtime.clock import utcnow
from vareon_runtime.store import Store, TelemetryRecord

TIMEOUT = 30
KV = TelemetrySettings.model_validate({"format": "kv"})


@asynccontextmanager
async def running(url: str) -> AsyncIterator[Store]:
    async with trio.open_nursery() as nursery:
        store: Store = await nursery.start(Store(url, sqlite_synchronous="normal").run)
        try:
            yield store
        finally:
            await store.close()


@asynccontextmanager
async def recording(store: Store, bus: EventBus, **options: Any) -> AsyncIterator[TelemetryRecorder]:
    """Run a recorder for the block, then stop it (which writes what it holds)."""
    options.setdefault("flush_interval", 3600.0)
    options.setdefault("keep_days", 0)
    recorder = TelemetryRecorder(store, bus, **options)
    async with trio.open_nursery() as nursery:
        await nursery.start(recorder.run)
        try:
            yield recorder
        finally:
            recorder.stop()


def rows(session: Session) -> list[tuple[Any, ...]]:
    query = select(
        TelemetryRecord.source,
        TelemetryRecord.device_id,
        TelemetryRecord.metric_name,
        TelemetryRecord.value,
        TelemetryRecord.timestamp,
    ).order_by(TelemetryRecord.id)
    return [tuple(row) for row in session.execute(query).all()]


def count(session: Session) -> int:
    return session.scalar(select(func.count()).select_from(TelemetryRecord)) or 0


async def wait_for(predicate: Any) -> None:
    while not predicate():
        await trio.sleep(0.005)


async def test_samples_are_written_in_one_batch(database_url: str) -> None:
    bus = EventBus()
    stream = DeviceStream("dev-1", KV, bus)
    at = utcnow()
    with trio.fail_after(TIMEOUT):
        async with running(database_url) as store:
            async with recording(store, bus, flush_interval=0.05) as recorder:
                for n in range(200):
                    stream.received([f"seq={n} t=21.5", "ok"], at)
                stream.sent("M105", at)  # an echo carries no samples
                await wait_for(lambda: recorder.stats["written"] == 400)
                stats = recorder.stats
            written = await store.read(rows)
    # Published without a checkpoint in between: the recorder took them all and wrote them at once.
    assert stats["flushes"] == 1 and stats["events"] == 200 and stats["pending"] == 0
    assert len(written) == 400
    assert written[0] == ("device", "dev-1", "seq", 0.0, at)
    assert written[-1][2:4] == ("t", 21.5)


async def test_batch_max_writes_without_waiting_for_the_interval(database_url: str) -> None:
    bus = EventBus()
    stream = DeviceStream("d", KV, bus)
    with trio.fail_after(TIMEOUT):
        async with running(database_url) as store:
            # An hour's interval: only reaching batch_max can make this write happen.
            async with recording(store, bus, batch_max=100, max_pending=1000) as recorder:
                for n in range(50):
                    stream.received([f"a={n} b={n}"], utcnow())
                    await trio.sleep(0)
                await wait_for(lambda: recorder.stats["written"] == 100)
                assert recorder.stats["pending"] == 0
                assert await store.read(count) == 100


async def test_one_write_takes_at_most_batch_max(database_url: str) -> None:
    bus = EventBus()
    big = [{"metric": "m", "value": float(n)} for n in range(230)]
    with trio.fail_after(TIMEOUT):
        async with running(database_url) as store:
            async with recording(store, bus, batch_max=100, max_pending=1000) as recorder:
                bus.publish("telemetry.device.d", {"time": utcnow(), "samples": [{"metric": "first", "value": 0.0}]})
                bus.publish("telemetry.device.d", {"time": utcnow(), "samples": big})  # cut across writes
                await wait_for(lambda: recorder.stats["written"] == 200)
                assert recorder.stats["flushes"] == 2  # 100 + 100; the last 31 wait for the interval
                assert recorder.stats["pending"] == 31
            assert recorder.stats["flushes"] == 3 and recorder.stats["written"] == 231  # at stop
            values = [row[3] for row in await store.read(rows)]
    assert values == [0.0, *range(230)]


async def test_stop_writes_what_is_held(database_url: str) -> None:
    bus = EventBus()
    stream = DeviceStream("d", KV, bus)
    with trio.fail_after(TIMEOUT):
        async with running(database_url) as store:
            async with recording(store, bus) as recorder:
                stream.received(["x=1 y=2"], utcnow())
                await wait_for(lambda: recorder.stats["pending"] == 2)
                stream.received(["z=3"], utcnow())  # still on the bus when the stop comes
            assert recorder.stats["written"] == 3 and recorder.stats["dropped_samples"] == 0
            assert [row[2] for row in await store.read(rows)] == ["x", "y", "z"]
            assert bus.subscriber_count == 0


async def test_other_sources_and_bad_samples(database_url: str) -> None:
    bus = EventBus()
    at = datetime(2025, 1, 1, tzinfo=timezone.utc)
    samples = [
        {"metric": "ok", "value": 1},
        {"metric": "nan", "value": float("nan")},
        {"metric": 5, "value": 1.0},
        {"metric": "text", "value": "3"},
        {"metric": "long" * 100, "value": 1.0},
        "not a sample",
    ]
    with trio.fail_after(TIMEOUT):
        async with running(database_url) as store:
            async with recording(store, bus) as recorder:
                bus.publish("telemetry.agent.a1", {"time": at, "samples": samples, "deviceId": "ignored"})
                bus.publish("telemetry.device.d", {"samples": "not a list"})
                bus.publish("telemetry.device.d", "not a dict")
                await wait_for(lambda: recorder.stats["events"] == 1)
            assert recorder.stats["rejected_samples"] == 5
            assert await store.read(rows) == [("agent", None, "ok", 1.0, at)]


async def test_losses_on_the_bus_are_counted_and_logged(database_url: str, log_records: Any) -> None:
    bus = EventBus()
    stream = DeviceStream("d", KV, bus)
    with trio.fail_after(TIMEOUT):
        async with running(database_url) as store:
            async with recording(store, bus, queue_size=4) as recorder:
                # No checkpoint: the recorder cannot run, its queue keeps the newest 4 events.
                for n in range(10):
                    stream.received([f"n={n}"], utcnow())
                await wait_for(lambda: recorder.stats["events"] == 4)
                assert recorder.stats["lost_events"] == 6
            assert [row[3] for row in await store.read(rows)] == [6.0, 7.0, 8.0, 9.0]
    warnings = log_records.messages(logging.WARNING)
    assert any("6 events lost" in message for message in warnings), warnings


async def test_past_max_pending_the_oldest_samples_are_shed(database_url: str, log_records: Any) -> None:
    bus = EventBus()
    stream = DeviceStream("d", KV, bus)
    with trio.fail_after(TIMEOUT):
        async with running(database_url) as store:
            async with recording(store, bus, batch_max=10, max_pending=10) as recorder:
                # Taken at once (no checkpoint): 15 samples wait where 10 may.
                for n in range(3):
                    stream.received([f"a={n} b={n} c={n} d={n} e={n}"], utcnow())
                await wait_for(lambda: recorder.stats["written"] == 10)
                stats = recorder.stats
            assert (stats["shed_samples"], stats["lost_events"], stats["events"]) == (5, 0, 3)
            assert sorted({row[3] for row in await store.read(rows)}) == [1.0, 2.0]  # the newest kept
    warnings = log_records.messages(logging.WARNING)
    assert any("5 samples shed" in message for message in warnings), warnings


async def test_a_failed_write_is_retried_then_dropped_and_counted(tmp_path: Path) -> None:
    path = tmp_path / "data" / "vareon.db"
    bus = EventBus()
    stream = DeviceStream("d", KV, bus)

    def rename(old: str, new: str) -> None:
        with sqlite3.connect(path) as db:
            db.execute(f"ALTER TABLE {old} RENAME TO {new}")

    with trio.fail_after(TIMEOUT):
        async with running(f"sqlite:///{path}") as store:
            async with recording(store, bus) as recorder:
                stream.received(["a=1"], utcnow())
                await wait_for(lambda: recorder.stats["pending"] == 1)
                rename("telemetry", "telemetry_away")  # the database refuses the next writes
                assert await recorder.flush() is False
                assert recorder.stats["pending"] == 1  # kept for the next try
                rename("telemetry_away", "telemetry")
                assert await recorder.flush() is True
                assert recorder.stats["written"] == 1

                stream.received(["b=2"], utcnow())
                await wait_for(lambda: recorder.stats["pending"] == 1)
                rename("telemetry", "telemetry_away")
                assert [await recorder.flush() for _ in range(3)] == [False, False, False]
                rename("telemetry_away", "telemetry")
                stats = recorder.stats
            assert (stats["write_failures"], stats["dropped_samples"], stats["pending"]) == (4, 1, 0)
            assert [row[2] for row in await store.read(rows)] == ["a"]


async def test_prune_deletes_old_rows_in_small_batches(database_url: str) -> None:
    bus = EventBus()
    now = utcnow()
    old = now - timedelta(days=8)
    with trio.fail_after(TIMEOUT):
        async with running(database_url) as store:
            async with recording(store, bus, keep_days=7, prune_batch=4, prune_interval=3600) as recorder:
                await wait_for(lambda: store.stats["committed"] >= 1)  # the prune at start (nothing old)
                bus.publish("telemetry.device.d", {"time": old, "samples": [{"metric": "m", "value": float(n)} for n in range(10)]})
                bus.publish("telemetry.device.d", {"time": now, "samples": [{"metric": "m", "value": 99.0}]})
                await wait_for(lambda: recorder.stats["events"] == 2)
                assert await recorder.flush()
                before = store.stats["committed"]
                assert await recorder.prune(now=now) == 10
                # 4 + 4 + 2: three deletes, each its own write.
                assert store.stats["committed"] - before == 3
                assert recorder.stats["pruned"] == 10
                assert [row[3] for row in await store.read(rows)] == [99.0]
                # A prune finds nothing more.
                assert await recorder.prune(now=now) == 0


async def test_keep_days_zero_keeps_everything(database_url: str) -> None:
    bus = EventBus()
    with trio.fail_after(TIMEOUT):
        async with running(database_url) as store:
            async with recording(store, bus, keep_days=0) as recorder:
                bus.publish("telemetry.device.d", {"time": utcnow() - timedelta(days=3650), "samples": [{"metric": "m", "value": 1.0}]})
                await wait_for(lambda: recorder.stats["events"] == 1)
                assert await recorder.flush()
                assert await recorder.prune() == 0
                assert await store.read(count) == 1


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"flush_interval": 0}, "flush_interval must be a positive number of seconds, not 0"),
        ({"keep_days": -1}, "keep_days must be 0"),
        ({"batch_max": 0}, "batch_max must be at least 1"),
        ({"batch_max": 10, "max_pending": 5}, r"max_pending \(5\) must be at least batch_max \(10\)"),
    ],
)
def test_bad_settings_are_refused(options: dict[str, Any], message: str) -> None:
    arguments: dict[str, Any] = {"flush_interval": 1.0, "keep_days": 1.0, **options}
    with pytest.raises(ValueError, match=message):
        TelemetryRecorder(None, EventBus(), **arguments)  # type: ignore[arg-type]
