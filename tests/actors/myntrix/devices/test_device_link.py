"""Device actors against simulated devices over a real pty and a real TCP port: connect,
identify, commands, timeouts, unplug and replug, restarts."""

from __future__ import annotations

import re
from dataclasses import replace
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
import trio
from device_support import (
    FAST,
    MARLIN,
    SCPI,
    TIMEOUT,
    DeviceModuleRun,
    start_device_module,
    status_events,
    statuses,
    until_status,
)
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from actors.myntrix.devices import CommandTicket, DeviceRecord, DeviceStatus, SendCommand, firmware_version, telemetry_topic
from actors.myntrix.devices.simulator import MARLIN_FIRMWARE, SCPI_IDENTITY, MarlinPrinter, PtySimulator, ScpiInstrument, TcpSimulator
from vareon_runtime.bus import EventBus, Overflow
from vareon_runtime.errors import ConflictError, InvalidRequestError, UpstreamTimeoutError
from vareon_runtime.store import Store

if TYPE_CHECKING:
    from conftest import LogRecords  # tests/conftest.py, whose fixture log_records is


@pytest.fixture
def printer() -> MarlinPrinter:
    return MarlinPrinter(busy_interval=0.05)


@pytest.fixture
async def marlin(nursery: trio.Nursery, tmp_path: Path, printer: MarlinPrinter) -> PtySimulator:
    simulator = PtySimulator(printer, tmp_path / "dev")
    await nursery.start(simulator.run)
    return simulator


@pytest.fixture
def instrument() -> ScpiInstrument:
    return ScpiInstrument()


@pytest.fixture
async def scpi(nursery: trio.Nursery, instrument: ScpiInstrument) -> TcpSimulator:
    simulator = TcpSimulator(instrument)
    await nursery.start(simulator.run)
    return simulator


def row_of(device_id: str) -> Any:
    def read(session: Session) -> tuple[Any, ...]:
        row = session.execute(
            select(
                DeviceRecord.status,
                DeviceRecord.desired_state,
                DeviceRecord.firmware_version,
                DeviceRecord.last_seen,
                DeviceRecord.last_error,
            ).where(DeviceRecord.id == device_id)
        ).one()
        return tuple(row)

    return read


async def test_a_pty_printer_connects_identifies_and_answers_commands(
    device_module: DeviceModuleRun, device_bus: EventBus, store: Store, marlin: PtySimulator, printer: MarlinPrinter
) -> None:
    devices = device_module.devices
    device = await devices.create({"name": "printer", "type": "printer", "connectionString": marlin.connection_string, "configuration": MARLIN})
    assert (device.status, device.desired_state.value, device.firmware_version) == (DeviceStatus.DISCONNECTED, "disconnected", None)
    with status_events(device_bus, device.id) as events, device_bus.subscribe(telemetry_topic(device.id)) as telemetry:
        with trio.fail_after(TIMEOUT):
            connected = await devices.connect(device.id)
        assert connected.status is DeviceStatus.CONNECTED
        assert connected.firmware_version == "Marlin 2.1.2 (Vareon simulator)"
        assert statuses(events) == ["connecting", "connected"]
        # The identify command went to the device, and its echo and reply to the telemetry stream.
        assert printer.received == ["M115"]
        logged: list[Any] = []
        with trio.fail_after(TIMEOUT):
            while not any(MARLIN_FIRMWARE in item.get("lines", []) for item in logged):
                event = await telemetry.receive()
                assert not isinstance(event, Overflow)
                logged.append(event.data)
        assert logged[0]["sent"] == "M115"

        with trio.fail_after(TIMEOUT):
            reply = await devices.command(device.id, "M115")
            assert reply.reply == [MARLIN_FIRMWARE, "Cap:AUTOREPORT_TEMP:1", "ok"] and reply.ok
            assert reply.duration_ms > 0
            temperature = await devices.command(device.id, "M105")
            assert temperature.reply == ["ok T:21.3 /0.0 B:20.1 /0.0"]
    status, desired, firmware, last_seen, last_error = await store.read(row_of(device.id))
    assert (status, desired, firmware, last_error) == ("connected", "connected", "Marlin 2.1.2 (Vareon simulator)", None)
    assert last_seen is not None
    # The face shows lastSeen exact (the row lags by up to seen_interval).
    shown = await devices.get(device.id)
    assert shown.last_seen is not None and shown.last_seen >= last_seen

    with status_events(device_bus, device.id) as events:
        with trio.fail_after(TIMEOUT):
            gone = await devices.disconnect(device.id)
        assert (gone.status, gone.desired_state.value) == (DeviceStatus.DISCONNECTED, "disconnected")
        assert statuses(events) == ["disconnected"]
    with pytest.raises(ConflictError, match="'printer' is disconnected, not connected \\(connect it first\\)"):
        await devices.command(device.id, "M105")
    with pytest.raises(ConflictError, match="already disconnected"):
        await devices.disconnect(device.id)


async def test_a_tcp_instrument_answers_one_line_and_a_silent_command_is_a_504_with_what_came(
    device_module: DeviceModuleRun, scpi: TcpSimulator
) -> None:
    devices = device_module.devices
    device = await devices.create({"name": "meter", "connectionString": scpi.connection_string, "configuration": SCPI})
    with trio.fail_after(TIMEOUT):
        connected = await devices.connect(device.id)
        assert (connected.status, connected.firmware_version) == (DeviceStatus.CONNECTED, SCPI_IDENTITY)
        assert (await devices.command(device.id, "*IDN?")).reply == [SCPI_IDENTITY]
        volts = await devices.command(device.id, "MEAS:VOLT?")
        assert len(volts.reply) == 1 and abs(float(volts.reply[0]) - 12.0) < 0.01
        with pytest.raises(UpstreamTimeoutError) as caught:
            await devices.command(device.id, "BOGUS:CMD", timeout=0.3)
    assert caught.value.status == 504
    assert "did not finish its reply to 'BOGUS:CMD' within 0.3s: expected one line, received 0 line(s)" in caught.value.message
    assert caught.value.details == {"command": "BOGUS:CMD", "timeout": 0.3, "received": []}
    with trio.fail_after(TIMEOUT):  # the device is still usable afterwards
        assert (await devices.command(device.id, "SYST:ERR?")).reply == ['-113,"Undefined header"']


async def test_a_partial_reply_comes_back_in_the_504(
    device_module: DeviceModuleRun, marlin: PtySimulator
) -> None:
    devices = device_module.devices
    device = await devices.create({"name": "printer", "connectionString": marlin.connection_string})
    with trio.fail_after(TIMEOUT):
        await devices.connect(device.id)
        # G4 dwells 2 s, sending busy lines meanwhile; its ok comes only at the end.
        with pytest.raises(UpstreamTimeoutError) as caught:
            await devices.command(device.id, "G4 S2", timeout=0.5)
    received = caught.value.details["received"]
    assert received and all(line == "echo:busy: processing" for line in received)
    assert f"expected a line starting with 'ok', received {len(received)} line(s)" in caught.value.message


async def test_an_error_reply_is_an_answer_with_ok_false(device_module: DeviceModuleRun, marlin: PtySimulator) -> None:
    devices = device_module.devices
    device = await devices.create({"name": "printer", "connectionString": marlin.connection_string})
    with trio.fail_after(TIMEOUT):
        await devices.connect(device.id)
        reply = await devices.command(device.id, "M112")
    assert (reply.ok, reply.reply) == (False, ["Error:Printer halted. kill() called!"])


async def test_commands_from_many_tasks_run_one_at_a_time_and_never_mix(
    device_module: DeviceModuleRun, marlin: PtySimulator, printer: MarlinPrinter
) -> None:
    devices = device_module.devices
    device = await devices.create({"name": "printer", "connectionString": marlin.connection_string, "configuration": MARLIN})
    replies: dict[int, list[str]] = {}

    async def send(index: int) -> None:
        # Odd tasks identify (three-line reply), even ones set a distinct target (one line).
        command = "M115" if index % 2 else f"M104 S{index}"
        replies[index] = (await devices.command(device.id, command)).reply

    with trio.fail_after(TIMEOUT):
        await devices.connect(device.id)
        async with trio.open_nursery() as nursery:
            for index in range(24):
                nursery.start_soon(send, index)
    for index, reply in replies.items():
        expected = [MARLIN_FIRMWARE, "Cap:AUTOREPORT_TEMP:1", "ok"] if index % 2 else ["ok"]
        assert reply == expected, (index, reply)
    # Each command reached the printer whole, once.
    assert sorted(printer.received[1:]) == sorted(["M115" if i % 2 else f"M104 S{i}" for i in range(24)])


async def test_a_full_queue_is_refused_and_an_abandoned_command_leaves_it(
    nursery: trio.Nursery, device_module: DeviceModuleRun, device_bus: EventBus, marlin: PtySimulator, printer: MarlinPrinter
) -> None:
    devices = device_module.devices
    queue_max = device_module.devices.settings.queue_max
    device = await devices.create({"name": "printer", "connectionString": marlin.connection_string})
    with trio.fail_after(TIMEOUT), device_bus.subscribe(telemetry_topic(device.id)) as log:
        await devices.connect(device.id)
        printer.muted = True  # nothing answers: the first command holds the slot until its timeout
        held = trio.Event()

        async def hold() -> None:
            with pytest.raises(UpstreamTimeoutError):
                await devices.command(device.id, "G28", timeout=1.0)
            held.set()

        nursery.start_soon(hold)
        while True:  # until G28 is on the wire, first in line
            item = await log.receive()
            if not isinstance(item, Overflow) and item.data.get("sent") == "G28":
                break
        # Queued straight at the actor, so the queue is known full when the asks return.
        ref = devices.actors.supervisor.ref(f"device/{device.id}")
        waiting: list[trio.CancelScope] = []
        for _ in range(queue_max - 1):
            ticket: CommandTicket = await ref.ask(SendCommand(command="G0 X1"))
            scope = trio.CancelScope()
            waiting.append(scope)

            async def wait_for(ticket: CommandTicket = ticket, scope: trio.CancelScope = scope) -> None:
                with scope:
                    await ticket.reply()

            nursery.start_soon(wait_for)
        with pytest.raises(ConflictError, match=f"has {queue_max} commands waiting"):
            await devices.command(device.id, "G0 X2")
        for scope in waiting:  # the callers leave: their commands never reach the device
            scope.cancel()
        printer.muted = False
        await held.wait()
        assert (await devices.command(device.id, "M105")).reply == ["ok T:21.3 /0.0 B:20.1 /0.0"]
    assert "G0 X1" not in printer.received and "G0 X2" not in printer.received


async def test_unplug_shows_disconnected_then_replug_connects_again_by_itself(
    device_module: DeviceModuleRun, device_bus: EventBus, store: Store, marlin: PtySimulator
) -> None:
    devices = device_module.devices
    device = await devices.create({"name": "printer", "connectionString": marlin.connection_string, "configuration": MARLIN})
    with trio.fail_after(TIMEOUT):
        await devices.connect(device.id)
    with status_events(device_bus, device.id) as events:
        with trio.fail_after(TIMEOUT):
            await marlin.unplug()
            dropped = await until_status(events, lambda data: data["status"] == "disconnected")
        assert dropped["lastError"].startswith("the link dropped: ")
        # It keeps trying, and fails while unplugged, saying why.
        with trio.fail_after(TIMEOUT):
            failed = await until_status(events, lambda data: (data["lastError"] or "").startswith("cannot connect to "))
        assert failed["status"] == "disconnected"
        shown = await devices.get(device.id)
        assert (shown.status, shown.desired_state.value) == (DeviceStatus.DISCONNECTED, "connected")
        with pytest.raises(ConflictError, match="is disconnected, not connected"):
            await devices.command(device.id, "M105")

        with trio.fail_after(TIMEOUT):
            await marlin.replug()
            back = await until_status(events, lambda data: data["status"] == "connected")
    assert back["lastError"] is None and back["firmwareVersion"] == "Marlin 2.1.2 (Vareon simulator)"
    with trio.fail_after(TIMEOUT):
        assert (await devices.command(device.id, "M105")).ok
    status, desired, *_ = await store.read(row_of(device.id))
    assert (status, desired) == ("connected", "connected")


async def test_a_tcp_device_that_goes_away_comes_back(
    device_module: DeviceModuleRun, device_bus: EventBus, scpi: TcpSimulator
) -> None:
    devices = device_module.devices
    device = await devices.create({"name": "meter", "connectionString": scpi.connection_string, "configuration": SCPI})
    with trio.fail_after(TIMEOUT):
        await devices.connect(device.id)
    with status_events(device_bus, device.id) as events:
        with trio.fail_after(TIMEOUT):
            await scpi.unplug()
            await until_status(events, lambda data: data["status"] == "disconnected")
            await scpi.replug()
            await until_status(events, lambda data: data["status"] == "connected")
            assert (await devices.command(device.id, "*IDN?")).reply == [SCPI_IDENTITY]


async def test_the_desired_state_survives_a_restart_of_the_module(
    nursery: trio.Nursery, device_module: DeviceModuleRun, device_bus: EventBus, store: Store, marlin: PtySimulator
) -> None:
    devices = device_module.devices
    wanted = await devices.create({"name": "printer", "connectionString": marlin.connection_string, "configuration": MARLIN})
    idle = await devices.create({"name": "spare", "connectionString": "loop://"})
    with trio.fail_after(TIMEOUT):
        await devices.connect(wanted.id)
    await device_module.stop()
    status, desired, *_ = await store.read(row_of(wanted.id))
    assert (status, desired) == ("disconnected", "connected")  # closed by the stop, still wanted

    with status_events(device_bus, wanted.id) as events:
        again = await start_device_module(nursery, store, device_bus)
        try:
            with trio.fail_after(TIMEOUT):
                await until_status(events, lambda data: data["status"] == "connected")
                assert (await again.devices.command(wanted.id, "M105")).ok
            assert (await again.devices.get(idle.id)).status is DeviceStatus.DISCONNECTED
        finally:
            await again.stop()


async def test_a_connection_string_that_cannot_work_is_an_error_without_retries(
    device_module: DeviceModuleRun, device_bus: EventBus, store: Store
) -> None:
    devices = device_module.devices
    device = await devices.create({"name": "wrong", "connectionString": "loop://"})

    # As after an upgrade that dropped a driver: the stored string names a scheme nobody knows.
    def break_it(session: Session) -> None:
        session.execute(update(DeviceRecord).where(DeviceRecord.id == device.id).values(connection_string="gone://x"))

    await store.write(break_it)
    await devices.actors.supervisor.restart_child(f"device/{device.id}")
    with status_events(device_bus, device.id) as events:
        with trio.fail_after(TIMEOUT):
            shown = await devices.connect(device.id)
        assert shown.status is DeviceStatus.ERROR
        assert shown.last_error is not None
        assert shown.last_error.startswith("cannot connect to gone://x: no device driver for the scheme 'gone'")
        await trio.sleep(0.5)  # several backoffs' worth: nothing more happens
        assert statuses(events) == ["connecting", "error"]
        # A user's connect tries again (and says the same).
        with trio.fail_after(TIMEOUT):
            assert (await devices.connect(device.id)).status is DeviceStatus.ERROR


async def _drops_connections(
    nursery: trio.Nursery, handler: Any, accepted: list[float]
) -> int:
    """A TCP device on 127.0.0.1 that runs ``handler`` on each connection it accepts; its port."""

    async def serve(stream: trio.SocketStream) -> None:
        accepted.append(trio.current_time())
        await handler(stream)

    listeners = await nursery.start(partial(trio.serve_tcp, serve, 0, host="127.0.0.1"))
    return int(listeners[0].socket.getsockname()[1])


async def _close_at_once(stream: trio.SocketStream) -> None:
    await stream.aclose()


async def _reconnect_delays(
    nursery: trio.Nursery, store: Store, bus: EventBus, log_records: LogRecords, handler: Any, settings: Any, drops: int
) -> tuple[list[float], int]:
    """Connect a device to a TCP device that ends each connection with ``handler``; once the link
    dropped ``drops + 1`` times (the keeper logs the delay after a drop is published, and before
    the next one), disconnect it. Returns the delays the keeper logged after the first ``drops``
    drops, and how many connections the device accepted."""
    accepted: list[float] = []
    port = await _drops_connections(nursery, handler, accepted)
    run = await start_device_module(nursery, store, bus, settings=settings)
    try:
        devices = run.devices
        device = await devices.create({"name": "flaky", "connectionString": f"tcp://127.0.0.1:{port}"})
        with status_events(bus, device.id) as events, trio.fail_after(TIMEOUT):
            await devices.connect(device.id)
            for _ in range(drops + 1):
                await until_status(
                    events,
                    lambda data: data["status"] == "disconnected"
                    and (data["lastError"] or "").startswith("the link dropped: "),
                )
            await devices.disconnect(device.id)
    finally:
        await run.stop()
    said = [m for m in log_records.messages() if m.startswith(f"device/{device.id} (flaky): the link dropped: ")]
    delays = [float(re.search(r"reconnecting in ([0-9.]+)s$", m).group(1)) for m in said if "reconnecting in" in m]  # type: ignore[union-attr]
    return delays[:drops], len(accepted)


async def test_a_device_that_drops_each_connection_at_once_is_retried_with_a_growing_backoff(
    nursery: trio.Nursery, store: Store, device_bus: EventBus, log_records: LogRecords
) -> None:
    # Each connection is accepted and closed at once: it never stayed up `stable_after`, so each
    # counts as a failed attempt and the waits double (first retry at once), never a tight loop.
    settings = replace(FAST, reconnect_initial=0.05, reconnect_max=0.4, stable_after=30.0)
    delays, accepted = await _reconnect_delays(
        nursery, store, device_bus, log_records, _close_at_once, settings, drops=6
    )
    assert len(delays) == 6 and accepted >= 6
    assert delays[0] == 0
    for attempt, delay in enumerate(delays[1:], start=1):
        ceiling = min(settings.reconnect_max, settings.reconnect_initial * 2 ** (attempt - 1))
        # Equal jitter: between half the ceiling and the ceiling (logged to 0.01 s).
        assert ceiling / 2 - 0.005 <= delay <= ceiling + 0.005, (attempt, delays)


async def test_a_link_that_stayed_up_starts_the_backoff_afresh(
    nursery: trio.Nursery, store: Store, device_bus: EventBus, log_records: LogRecords
) -> None:
    settings = replace(FAST, reconnect_initial=0.05, reconnect_max=0.4, stable_after=0.2)

    async def close_after_a_while(stream: trio.SocketStream) -> None:
        await trio.sleep(settings.stable_after * 1.5)  # on trio's clock, the keeper's too
        await stream.aclose()

    delays, _ = await _reconnect_delays(
        nursery, store, device_bus, log_records, close_after_a_while, settings, drops=3
    )
    assert delays == [0, 0, 0]


async def test_refusals_at_create_name_the_problem(device_module: DeviceModuleRun) -> None:
    devices = device_module.devices
    with pytest.raises(InvalidRequestError, match="no device driver for the scheme 'foo'; known: .*tcp"):
        await devices.create({"name": "x", "connectionString": "foo://x"})
    with pytest.raises(InvalidRequestError, match="invalid DeviceCreate"):
        await devices.create({"name": "x", "connectionString": "tcp://h:1", "configuration": {"replyTerminatr": "ok"}})
    assert (await devices.list()).total == 0


def test_firmware_versions_from_marlin_scpi_and_a_configured_pattern() -> None:
    assert firmware_version([MARLIN_FIRMWARE, "Cap:AUTOREPORT_TEMP:1", "ok"]) == "Marlin 2.1.2 (Vareon simulator)"
    assert firmware_version(["FIRMWARE_NAME:Marlin bugfix-2.1.x (Jun 30 2023 12:00:00)", "ok"]) == (
        "Marlin bugfix-2.1.x (Jun 30 2023 12:00:00)"
    )
    assert firmware_version([SCPI_IDENTITY], reply_terminator=None) == SCPI_IDENTITY
    assert firmware_version([SCPI_IDENTITY], r"^[^,]*,[^,]*,[^,]*,(?P<version>.+)$") == "1.4"
    assert firmware_version(["ok"]) is None
    assert firmware_version(["something else"], r"v(\d+)") is None


async def test_a_loopback_echoes_commands_in_the_configured_encoding(device_module: DeviceModuleRun) -> None:
    devices = device_module.devices
    device = await devices.create(
        {"name": "echo", "connectionString": "loop://", "configuration": {"replyTerminator": None, "encoding": "latin-1"}}
    )
    with trio.fail_after(TIMEOUT):
        await devices.connect(device.id)
        assert (await devices.command(device.id, "caf\u00e9 \u00b0C")).reply == ["caf\u00e9 \u00b0C"]
        with pytest.raises(InvalidRequestError, match="cannot be sent in the device's encoding 'latin-1'"):
            await devices.command(device.id, "\u20ac")
        assert (await devices.command(device.id, "still here")).reply == ["still here"]
