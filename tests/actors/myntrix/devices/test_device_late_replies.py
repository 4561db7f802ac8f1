"""A reply that comes after its command timed out, over a real pty: it is not taken for the next
command's reply, a reply that never comes holds the next command up only for a grace, and a new
link owes nothing."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import trio
import trio.testing
from device_support import MARLIN, TIMEOUT, DeviceModuleRun, status_events, until_status

from actors.myntrix.devices import CommandTicket, Devices, SendCommand, telemetry_topic
from actors.myntrix.devices.simulator import MarlinPrinter, PtySimulator, Reply
from vareon_runtime.bus import EventBus, Overflow
from vareon_runtime.errors import UpstreamTimeoutError

TEMPERATURES = ["ok T:21.3 /0.0 B:20.1 /0.0"]  # the simulated printer's own reply to M105


class LatePrinter(MarlinPrinter):
    """A printer that homes (``G28``) until the test says it is done, then answers ``ok``."""

    def __init__(self) -> None:
        super().__init__(busy_interval=0.05)
        self.homing = trio.Event()
        self.homed = trio.Event()

    async def handle(self, line: str, reply: Reply) -> None:
        if line.strip() == "G28" and not self.homed.is_set():
            self.homing.set()
            await self.homed.wait()  # the next line waits meanwhile, as on a real printer
        await super().handle(line, reply)


@pytest.fixture
def printer() -> LatePrinter:
    return LatePrinter()


@pytest.fixture
async def marlin(nursery: trio.Nursery, tmp_path: Path, printer: LatePrinter) -> PtySimulator:
    simulator = PtySimulator(printer, tmp_path / "dev")
    await nursery.start(simulator.run)
    return simulator


async def connected_printer(devices: Devices, marlin: PtySimulator, command_timeout: float) -> str:
    """A connected printer whose owed replies wait ``command_timeout`` seconds (the grace)."""
    configuration = {**MARLIN, "commandTimeout": command_timeout}
    device = await devices.create({"name": "printer", "connectionString": marlin.connection_string, "configuration": configuration})
    with trio.fail_after(TIMEOUT):
        await devices.connect(device.id)
    return device.id


async def test_a_late_ok_is_logged_and_the_next_command_gets_its_own_reply(
    device_module: DeviceModuleRun, device_bus: EventBus, marlin: PtySimulator, printer: LatePrinter
) -> None:
    devices = device_module.devices
    # A grace far beyond the test's bound: the late reply must pay its debt, not outwait it.
    device_id = await connected_printer(devices, marlin, command_timeout=600)
    with device_bus.subscribe(telemetry_topic(device_id), queue_size=1024) as log:
        with trio.fail_after(TIMEOUT):
            with pytest.raises(UpstreamTimeoutError, match="did not finish its reply to 'G28' within 0.5s"):
                await devices.command(device_id, "G28", timeout=0.5)
        assert printer.homing.is_set() and not printer.homed.is_set()  # still homing: its ok is owed

        # Queued straight at the actor, so that once every task waits, M105 waits behind the owed
        # ok (were the ok not owed, M105 would be on the wire by then, waiting for any ok).
        ref = devices.actors.supervisor.ref(f"device/{device_id}")
        with trio.fail_after(TIMEOUT):
            ticket: CommandTicket = await ref.ask(SendCommand(command="M105"))
            await trio.testing.wait_all_tasks_blocked()
        assert not ticket.done
        printer.homed.set()  # G28 ends: its ok comes now, late
        with trio.fail_after(TIMEOUT):
            reply = await ticket.reply()
        assert reply.reply == TEMPERATURES and reply.ok
        assert printer.received[1:] == ["G28", "M105"]
        # The late ok went to the device's log, after G28 and before M105 was sent.
        events: list[dict[str, Any]] = []
        while True:
            try:
                item = log.receive_nowait()
            except trio.WouldBlock:
                break
            assert not isinstance(item, Overflow)
            events.append(item.data)
    sent = [event["sent"] for event in events if "sent" in event]
    lines = [(index, line) for index, event in enumerate(events) for line in event.get("lines", [])]
    late_ok = next(index for index, line in lines if line == "ok")
    m105_sent = next(index for index, event in enumerate(events) if event.get("sent") == "M105")
    assert sent == ["G28", "M105"]
    assert late_ok < m105_sent
    with trio.fail_after(TIMEOUT):  # the link is in step afterwards
        assert (await devices.command(device_id, "M105")).reply == TEMPERATURES


async def test_a_dropped_command_holds_the_next_one_up_only_for_the_grace(
    device_module: DeviceModuleRun, marlin: PtySimulator, printer: LatePrinter
) -> None:
    devices = device_module.devices
    device_id = await connected_printer(devices, marlin, command_timeout=1.0)
    printer.muted = True  # a hung printer: G28 is lost, its ok never comes
    with trio.fail_after(TIMEOUT):
        with pytest.raises(UpstreamTimeoutError):
            await devices.command(device_id, "G28", timeout=0.5)
    printer.muted = False
    with trio.fail_after(TIMEOUT):
        reply = await devices.command(device_id, "M105")
    assert reply.reply == TEMPERATURES  # its own ok, not swallowed as G28's
    assert "G28" not in printer.received


async def test_a_new_link_owes_nothing(
    device_module: DeviceModuleRun, device_bus: EventBus, marlin: PtySimulator, printer: LatePrinter
) -> None:
    devices = device_module.devices
    # The grace outlasts the test's bound: only a reconnect can forget the debt in time.
    device_id = await connected_printer(devices, marlin, command_timeout=600)
    printer.muted = True
    with trio.fail_after(TIMEOUT):
        with pytest.raises(UpstreamTimeoutError):
            await devices.command(device_id, "G28", timeout=0.5)
    printer.muted = False
    with status_events(device_bus, device_id) as events, trio.fail_after(TIMEOUT):
        await marlin.unplug()
        await until_status(events, lambda data: data["status"] == "disconnected")
        await marlin.replug()
        await until_status(events, lambda data: data["status"] == "connected")
        assert (await devices.command(device_id, "M105")).reply == TEMPERATURES
