"""The ``devices`` table on SQLite and PostgreSQL: its migration matches its model, the face's
reads and writes work on both, and what a device receives becomes telemetry rows."""

from __future__ import annotations

from typing import Any

import pytest
import trio
from device_support import TIMEOUT, start_device_module
from sqlalchemy import func, inspect, select
from sqlalchemy.orm import Session

from actors.myntrix.devices import DeviceStatus, LineSplitter
from actors.myntrix.devices.simulator import MarlinPrinter, PtySimulator
from vareon_runtime.bus import EventBus
from vareon_runtime.errors import NotFoundError
from vareon_runtime.store import Base, Store, TelemetryRecord


def only_devices(obj: Any, name: str | None, type_: str, reflected: bool, compare_to: Any) -> bool:
    """Compare the devices table (and its indexes) alone: other branches have their own tests."""
    table = obj if type_ == "table" else getattr(obj, "table", None)
    return table is not None and table.name == "devices"


async def test_the_migration_matches_the_model_and_the_face_works(nursery: trio.Nursery, database_url: str) -> None:
    def schema(session: Session) -> dict[str, Any]:
        from alembic.autogenerate import compare_metadata
        from alembic.migration import MigrationContext

        connection = session.connection()
        context = MigrationContext.configure(connection, opts={"include_object": only_devices})
        return {
            "indexes": {index["name"] for index in inspect(connection).get_indexes("devices")},
            "diff": [repr(diff) for diff in compare_metadata(context, Base.metadata)],
        }

    with trio.fail_after(TIMEOUT):
        store: Store = await nursery.start(Store(database_url).run)
        try:
            found = await store.read(schema)
            assert found["diff"] == []
            assert found["indexes"] == {"ix_devices_status"}
            bus = EventBus()
            announced = bus.subscribe("device.*")
            run = await start_device_module(nursery, store, bus)
            devices = run.devices
            first = await devices.create({"name": "a", "connectionString": "loop://"})
            second = await devices.create(
                {"name": "b", "type": "sensor", "connectionString": "tcp://127.0.0.1:9", "configuration": {"encoding": "latin-1"}}
            )
            page = await devices.list(limit=1)
            assert (page.total, [d.id for d in page.items]) == (2, [first.id])
            assert [d.id for d in (await devices.list(offset=1)).items] == [second.id]
            assert (await devices.list(status="connected")).total == 0
            changed = await devices.update(second.id, {"name": "b2", "configuration": {"encoding": "utf-8"}})
            assert (changed.name, changed.type, changed.configuration.encoding) == ("b2", "sensor", "utf-8")
            await devices.delete(first.id)
            with pytest.raises(NotFoundError):
                await devices.get(first.id)
            assert (await devices.list()).total == 1
            # Each change is announced as the API shows it, so the scene and dashboards follow.
            events = [announced.receive_nowait() for _ in range(announced.queued)]
            changes = [(e.topic, e.data.get("name")) for e in events if not e.topic.endswith(".status")]
            assert changes == [
                (f"device.{first.id}.created", "a"),
                (f"device.{second.id}.created", "b"),
                (f"device.{second.id}.updated", "b2"),
                (f"device.{first.id}.deleted", None),
            ]
            announced.close()
            await run.stop()
        finally:
            await store.close()


async def test_temperature_reports_become_telemetry_rows(
    nursery: trio.Nursery, store: Store, tmp_path: Any
) -> None:
    printer = MarlinPrinter()
    marlin = PtySimulator(printer, tmp_path / "dev")
    await nursery.start(marlin.run)
    run = await start_device_module(nursery, store, EventBus())
    configuration = {"telemetry": {"format": "kv", "separator": ":", "metricPrefix": "printer."}}
    device = await run.devices.create({"name": "p", "connectionString": marlin.connection_string, "configuration": configuration})

    def rows(session: Session) -> dict[str, int]:
        found = session.execute(
            select(TelemetryRecord.metric_name, func.count())
            .where(TelemetryRecord.device_id == device.id)
            .group_by(TelemetryRecord.metric_name)
        ).all()
        return {name: count for name, count in found}

    try:
        with trio.fail_after(TIMEOUT):
            assert (await run.devices.connect(device.id)).status is DeviceStatus.CONNECTED
            for _ in range(3):
                await marlin.emit(printer.report())
            while (await store.read(rows)).get("printer.T", 0) < 3:
                await trio.sleep(0.05)
        assert set(await store.read(rows)) == {"printer.T", "printer.T.target", "printer.B", "printer.B.target", "printer.@", "printer.B@"}
    finally:
        await run.stop()


def test_received_bytes_split_into_lines_whatever_ends_them() -> None:
    splitter = LineSplitter("utf-8", 16, lone_cr=False)
    assert splitter.feed(b"ok\r") == []  # maybe the first half of \r\n
    assert splitter.feed(b"\nT:21.3\rB:20") == ["ok", "T:21.3"]
    assert splitter.feed(b".1\n\n   \r\n") == ["B:20.1"]  # blank lines are skipped
    assert splitter.feed(b"\xc3") == [] and splitter.feed(b"\xa9t\xff\n") == ["\u00e9t\ufffd"]
    assert splitter.feed(b"x" * 20) == ["x" * 20]  # a line past max_line is cut, not held forever
    lone = LineSplitter("latin-1", 100, lone_cr=True)
    assert lone.feed(b"1.4\r") == ["1.4"] and lone.feed(b"\xe9\r") == ["\u00e9"]
