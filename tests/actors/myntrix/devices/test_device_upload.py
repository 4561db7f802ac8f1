"""Uploads through the device actor, as jobs: G-code with flow control and a resend, chunks,
cancellation, a pulled plug, and what a busy device refuses meanwhile."""

from __future__ import annotations

from pathlib import Path

import pytest
import trio
from device_support import (
    MARLIN,
    SCPI,
    TIMEOUT,
    DeviceModuleRun,
    HeldLinks,
    start_device_module,
    status_events,
    until_status,
    write_gcode,
)

from actors.kit import Job, JobStatus
from actors.myntrix.devices import Devices
from actors.myntrix.devices.simulator import MarlinPrinter, PtySimulator, ScpiInstrument, TcpSimulator
from drivers.errors import LinkBrokenError, LinkClosedError
from vareon_runtime.bus import EventBus
from vareon_runtime.errors import ConflictError
from vareon_runtime.store import Store


GCODE = {"upload": {"mode": "gcode"}}  # line by line, without line numbers


@pytest.fixture
def printer() -> MarlinPrinter:
    return MarlinPrinter(busy_interval=0.05)


@pytest.fixture
async def marlin(nursery: trio.Nursery, tmp_path: Path, printer: MarlinPrinter) -> PtySimulator:
    simulator = PtySimulator(printer, tmp_path / "dev")
    await nursery.start(simulator.run)
    return simulator


async def finished(devices: Devices, job_id: str) -> Job:
    with trio.fail_after(TIMEOUT):
        while True:
            job = await devices.jobs.get(job_id)
            if job.status in (JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.CANCELLED):
                return job
            await trio.sleep(0.02)


async def running(devices: Devices, job_id: str, *, progress: int = 1) -> Job:
    with trio.fail_after(TIMEOUT):
        while True:
            job = await devices.jobs.get(job_id)
            if job.status is JobStatus.RUNNING and job.progress >= progress:
                return job
            assert job.status is not JobStatus.FAILED, job
            await trio.sleep(0.01)


async def test_gcode_goes_line_by_line_with_numbers_and_a_resend_and_the_job_completes(
    device_module: DeviceModuleRun, marlin: PtySimulator, printer: MarlinPrinter, tmp_path: Path
) -> None:
    devices = device_module.devices
    device = await devices.create({"name": "printer", "connectionString": marlin.connection_string, "configuration": MARLIN})
    commands = write_gcode(tmp_path / "part.gcode", 300)
    printer.corrupt_line(57)  # garbled once on the wire: the printer asks for it again
    with trio.fail_after(TIMEOUT):
        await devices.connect(device.id)
        job = await devices.upload(device.id, tmp_path / "part.gcode", "part.gcode", size=1, by="alice")
    assert (job.type, job.name) == ("device.upload", "upload part.gcode to printer")
    assert job.details is not None and job.details["deviceId"] == device.id
    done = await finished(devices, job.id)
    assert (done.status, done.progress) == (JobStatus.COMPLETED, 100), done.logs
    assert done.details is not None and done.details["linesSent"] == 300 and done.details["resends"] >= 1
    assert done.logs is not None and "uploaded by alice" in done.logs and "sent 300 lines" in done.logs
    # What the printer accepted is the file, in order, once each (after the identify and M110).
    assert printer.received[:2] == ["M115", "M110 N0"]
    assert printer.received[2:] == commands
    assert printer.resends_requested == 1
    assert not (tmp_path / "part.gcode").exists()  # the job's file went with it
    with trio.fail_after(TIMEOUT):  # the link is in step for the next command
        assert (await devices.command(device.id, "M105")).reply == ["ok T:21.3 /0.0 B:20.1 /0.0"]


async def test_a_busy_device_refuses_commands_and_disconnects_then_a_cancel_fails_the_job(
    device_module: DeviceModuleRun, marlin: PtySimulator, printer: MarlinPrinter, tmp_path: Path
) -> None:
    devices = device_module.devices
    device = await devices.create({"name": "printer", "connectionString": marlin.connection_string, "configuration": GCODE})
    path = tmp_path / "slow.gcode"
    path.write_text("".join("G4 P20\n" for _ in range(500)))  # 10 s of dwelling
    with trio.fail_after(TIMEOUT):
        await devices.connect(device.id)
        job = await devices.upload(device.id, path, "slow.gcode", size=path.stat().st_size, by="alice")
        await running(devices, job.id)
        with pytest.raises(ConflictError, match=f"busy uploading 'slow.gcode' \\(job {job.id}\\)"):
            await devices.command(device.id, "M105")
        with pytest.raises(ConflictError, match="busy uploading"):
            await devices.disconnect(device.id)
        with pytest.raises(ConflictError, match="busy uploading"):
            await devices.upload(device.id, path, "again.gcode", size=1, by="alice")
        with pytest.raises(ConflictError, match="busy uploading"):
            await devices.update(device.id, {"configuration": {"commandTimeout": 9}})
        assert (await devices.update(device.id, {"name": "busy printer"})).name == "busy printer"
        cancelled = await devices.cancel_upload(device.id, by="bob")
    assert cancelled.id == job.id and cancelled.status is JobStatus.CANCELLED
    assert cancelled.logs is not None and cancelled.logs.endswith("cancelled by bob")
    assert 0 < printer.received.count("G4 P20") < 500
    with pytest.raises(ConflictError, match="no upload is running"):
        await devices.cancel_upload(device.id, by="bob")
    with trio.fail_after(TIMEOUT):  # the line on the wire got its ok first: no stale reply
        assert (await devices.command(device.id, "M105")).reply == ["ok T:21.3 /0.0 B:20.1 /0.0"]
    # The refused second upload is on record too, failed with the reason.
    refused = [j for j in (await devices.jobs.list(type="device.upload")).items if j.id != job.id]
    assert len(refused) == 1 and refused[0].status is JobStatus.FAILED
    assert refused[0].logs is not None and "refused: " in refused[0].logs


async def test_a_pulled_plug_fails_the_upload_with_the_reason(
    device_module: DeviceModuleRun, marlin: PtySimulator, tmp_path: Path
) -> None:
    devices = device_module.devices
    device = await devices.create({"name": "printer", "connectionString": marlin.connection_string, "configuration": GCODE})
    path = tmp_path / "slow.gcode"
    path.write_text("".join("G4 P20\n" for _ in range(500)))
    with trio.fail_after(TIMEOUT):
        await devices.connect(device.id)
        job = await devices.upload(device.id, path, "slow.gcode", size=1, by="alice")
        await running(devices, job.id)
        await marlin.unplug()
    failed = await finished(devices, job.id)
    assert failed.status is JobStatus.FAILED
    assert failed.logs is not None and f"failed: the link dropped: {marlin.path} at 115200 baud 8N1 went away" in failed.logs


@pytest.mark.parametrize("first", ["the reader", "the upload's write"])
async def test_a_pulled_plug_reads_as_the_break_whoever_notices_it_first(
    nursery: trio.Nursery, store: Store, device_bus: EventBus, marlin: PtySimulator, tmp_path: Path, first: str
) -> None:
    # The race of a pulled plug, played in a fixed order: the upload's next line is held before
    # the wire while the plug is pulled. Either the reader sees the break, the session closes the
    # link, and the held line then meets our close; or the reads are held too, and the line is
    # what meets the break. Either way the job and the device say what broke, in its words.
    held = HeldLinks()
    run = await start_device_module(nursery, store, device_bus, links=held.registry)
    try:
        devices = run.devices
        device = await devices.create({"name": "printer", "connectionString": marlin.connection_string, "configuration": GCODE})
        path = tmp_path / "slow.gcode"
        path.write_text("".join("G4 P20\n" for _ in range(500)))
        with status_events(device_bus, device.id) as events, trio.fail_after(TIMEOUT):
            await devices.connect(device.id)
            job = await devices.upload(device.id, path, "slow.gcode", size=1, by="alice")
            await running(devices, job.id)
            link = held.opened[-1]
            link.hold_sends()
            await link.send_waiting.wait()
            if first == "the reader":
                await marlin.unplug()
                dropped = await until_status(events, lambda data: data["status"] == "disconnected")
            else:
                link.hold_reads()
                await marlin.unplug()
            link.release_sends()
            if first != "the reader":
                dropped = await until_status(events, lambda data: data["status"] == "disconnected")
        failed = await finished(devices, job.id)
        noticed, break_ = link.failures[0]
        assert noticed == ("receive" if first == "the reader" else "send")
        assert isinstance(break_, LinkBrokenError) and str(break_).startswith(f"{marlin.path} at 115200 baud 8N1 went away")
        if first == "the reader":
            # The held line met the link the session had closed: our close, not news.
            assert [(what, type(error)) for what, error in link.failures[1:]] == [("send", LinkClosedError)]
        assert failed.status is JobStatus.FAILED
        assert failed.logs is not None and failed.logs.splitlines()[-1] == f"failed: the link dropped: {break_}"
        assert dropped["lastError"] == f"the link dropped: {break_}"
    finally:
        await run.stop()


async def test_a_file_goes_in_chunks_to_a_device_without_a_line_protocol(
    nursery: trio.Nursery, device_module: DeviceModuleRun, tmp_path: Path
) -> None:
    instrument = ScpiInstrument()
    scpi = TcpSimulator(instrument)
    await nursery.start(scpi.run)
    devices = device_module.devices
    device = await devices.create(
        {"name": "meter", "connectionString": scpi.connection_string, "configuration": {**SCPI, "upload": {"chunkSize": 7}}}
    )
    lines = [f"CONF:VOLT {n}" for n in range(40)]
    path = tmp_path / "setup.scpi"
    path.write_text("\n".join(lines) + "\n")
    size = path.stat().st_size
    with trio.fail_after(TIMEOUT):
        await devices.connect(device.id)
        job = await devices.upload(device.id, path, "setup.scpi", size=path.stat().st_size, by="alice")
    done = await finished(devices, job.id)
    assert (done.status, done.progress) == (JobStatus.COMPLETED, 100), done.logs
    assert done.details is not None and done.details["bytesSent"] == size
    with trio.fail_after(TIMEOUT):
        while instrument.received[1:] != lines:
            await trio.sleep(0.01)


async def test_upload_to_a_disconnected_device_is_refused(device_module: DeviceModuleRun, tmp_path: Path) -> None:
    devices = device_module.devices
    device = await devices.create({"name": "spare", "connectionString": "loop://"})
    path = tmp_path / "x.gcode"
    path.write_text("G28\n")
    with pytest.raises(ConflictError, match="'spare' is disconnected, not connected; connect it before uploading"):
        await devices.upload(device.id, path, "x.gcode", size=4, by="alice")
    assert (await devices.jobs.list(type="device.upload")).total == 0
