"""The simulated Marlin printer over a real pty: replies, line numbering, reports, unplug/replug."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import trio
from simulator_support import TIMEOUT, DeviceClosed, LineClient

from actors.myntrix.devices.simulator import MARLIN_FIRMWARE, MarlinPrinter, PtySimulator, gcode_checksum


def numbered(number: int, command: str) -> str:
    text = f"N{number} {command}"
    return f"{text}*{gcode_checksum(text)}"


@pytest.fixture
def printer() -> MarlinPrinter:
    return MarlinPrinter(busy_interval=0.05)


@pytest.fixture
async def simulator(nursery: trio.Nursery, tmp_path: Path, printer: MarlinPrinter) -> PtySimulator:
    simulator = PtySimulator(printer, tmp_path)
    await nursery.start(simulator.run)
    return simulator


@pytest.fixture
async def client(simulator: PtySimulator) -> AsyncIterator[LineClient]:
    client = await LineClient.open_pty(simulator.path)
    yield client
    await client.aclose()


def test_checksum_is_the_xor_of_the_bytes_before_the_star() -> None:
    # The value Marlin's own documentation and every host (OctoPrint, Pronterface) use.
    assert gcode_checksum("N0 M110 N0") == 125
    assert gcode_checksum("") == 0


async def test_the_stable_path_is_a_symlink_to_a_raw_pty(simulator: PtySimulator) -> None:
    assert simulator.connection_string == str(simulator.path)
    assert simulator.path.is_symlink()
    assert os.readlink(simulator.path) == simulator.slave_path
    assert simulator.slave_path is not None and simulator.slave_path.startswith("/dev/pts/")


async def test_identify_temperatures_and_plain_commands(client: LineClient, printer: MarlinPrinter) -> None:
    with trio.fail_after(TIMEOUT):
        assert await client.ask("M115", until="ok") == [MARLIN_FIRMWARE, "Cap:AUTOREPORT_TEMP:1", "ok"]
        assert await client.ask("M105") == ["ok T:21.3 /0.0 B:20.1 /0.0"]
        assert await client.ask("G28 ; home all axes") == ["ok"]
        assert await client.ask("M104 S200") == ["ok"]
        assert await client.ask("M105") == ["ok T:21.3 /200.0 B:20.1 /0.0"]
        assert await client.ask("HELLO", until="ok") == ['echo:Unknown command: "HELLO"', "ok"]
    assert printer.received == ["M115", "M105", "G28", "M104 S200", "M105", "HELLO"]


async def test_numbered_lines_are_checked_and_resent(client: LineClient, printer: MarlinPrinter) -> None:
    with trio.fail_after(TIMEOUT):
        assert await client.ask("M110 N0") == ["ok"]
        assert await client.ask(numbered(1, "G1 X1")) == ["ok"]
        # A wrong checksum: Marlin names the last good line and asks for the next.
        assert await client.ask("N2 G1 X2*0", until="ok") == [
            "Error:checksum mismatch, Last Line: 1",
            "Resend: 2",
            "ok",
        ]
        # Skipping a number is refused the same way.
        assert await client.ask(numbered(3, "G1 X3"), until="ok") == [
            "Error:Line Number is not Last Line Number+1, Last Line: 1",
            "Resend: 2",
            "ok",
        ]
        assert await client.ask(numbered(2, "G1 X2")) == ["ok"]
        assert await client.ask("N3 G1 X3", until="ok") == [
            "Error:No Checksum with line number, Last Line: 2",
            "Resend: 3",
            "ok",
        ]
        # M110 restarts the numbering, numbered or not.
        assert await client.ask(numbered(7, "M110 N10")) == ["ok"]
        assert await client.ask(numbered(11, "G1 X11")) == ["ok"]
    assert printer.received == ["M110 N0", "G1 X1", "G1 X2", "M110 N10", "G1 X11"]
    assert printer.resends_requested == 3
    assert printer.last_line == 11


async def test_a_corrupted_line_is_refused_once(client: LineClient, printer: MarlinPrinter) -> None:
    printer.corrupt_line(2)
    with trio.fail_after(TIMEOUT):
        await client.ask("M110 N0")
        assert await client.ask(numbered(1, "G1 X1")) == ["ok"]
        assert (await client.ask(numbered(2, "G1 X2"), until="ok"))[-2:] == ["Resend: 2", "ok"]
        assert await client.ask(numbered(2, "G1 X2")) == ["ok"]
    assert printer.received == ["M110 N0", "G1 X1", "G1 X2"]
    assert printer.resends_requested == 1


async def test_m155_turns_periodic_temperature_reports_on_and_off(client: LineClient) -> None:
    with trio.fail_after(TIMEOUT):
        assert await client.ask("M155 S0.05") == ["ok"]
        reports = [await client.receive_line() for _ in range(3)]
        assert reports == [" T:21.3 /0.0 B:20.1 /0.0 @:0 B@:0"] * 3
        await client.send_line("M155 S0")
        # Reports already under way may still arrive before the ok; none after it.
        while (line := await client.receive_line()) != "ok":
            assert line.startswith(" T:")
    assert await client.ask("M105") == ["ok T:21.3 /0.0 B:20.1 /0.0"]


async def test_a_dwell_says_busy_until_done(client: LineClient) -> None:
    with trio.fail_after(TIMEOUT):
        replies = await client.ask("G4 P200", until="ok")
    assert replies[-1] == "ok"
    assert replies[:-1] and set(replies[:-1]) == {"echo:busy: processing"}


async def test_a_muted_printer_answers_nothing(client: LineClient, printer: MarlinPrinter) -> None:
    printer.muted = True
    await client.send_line("M105")
    with trio.move_on_after(0.3) as waited:
        await client.receive_line()
    assert waited.cancelled_caught
    printer.muted = False
    with trio.fail_after(TIMEOUT):
        assert await client.ask("M105") == ["ok T:21.3 /0.0 B:20.1 /0.0"]


async def test_a_client_can_leave_and_come_back(simulator: PtySimulator, printer: MarlinPrinter) -> None:
    with trio.fail_after(TIMEOUT):
        for _ in range(3):
            client = await LineClient.open_pty(simulator.path)
            assert await client.ask("M105") == ["ok T:21.3 /0.0 B:20.1 /0.0"]
            await client.aclose()
    assert printer.received == ["M105"] * 3


async def test_unplug_breaks_the_client_and_replug_comes_back_at_the_same_path(
    simulator: PtySimulator, client: LineClient, printer: MarlinPrinter
) -> None:
    first_pts = simulator.slave_path
    with trio.fail_after(TIMEOUT):
        await client.ask("M110 N0")
        await client.ask(numbered(1, "G1 X1"))
        await simulator.unplug()
        assert not simulator.plugged
        assert not simulator.path.exists() and not simulator.path.is_symlink()
        with pytest.raises((DeviceClosed, trio.BrokenResourceError)):
            await client.receive_line()
        with pytest.raises(FileNotFoundError):
            await LineClient.open_pty(simulator.path)
        with pytest.raises(RuntimeError, match="already unplugged"):
            await simulator.unplug()

        await simulator.replug()
        assert simulator.plugged
        assert os.readlink(simulator.path) == simulator.slave_path != first_pts
        again = await LineClient.open_pty(simulator.path)
        try:
            # The printer's state survived the unplug, as a real printer's would on a USB glitch.
            assert await again.ask(numbered(2, "G1 X2")) == ["ok"]
        finally:
            await again.aclose()
        with pytest.raises(RuntimeError, match="already plugged"):
            await simulator.replug()
    assert printer.received == ["M110 N0", "G1 X1", "G1 X2"]


async def test_emit_reaches_the_connected_client(simulator: PtySimulator, client: LineClient) -> None:
    with trio.fail_after(TIMEOUT):
        assert await simulator.emit("T:25.0 /0.0") == 1
        assert await client.receive_line() == "T:25.0 /0.0"


async def test_stopping_the_simulator_removes_its_symlink(nursery: trio.Nursery, tmp_path: Path) -> None:
    simulator = PtySimulator(MarlinPrinter(), tmp_path / "dev", name="ttyPRINTER")
    with trio.CancelScope() as scope:
        async with trio.open_nursery() as inner:
            await inner.start(simulator.run)
            assert (tmp_path / "dev" / "ttyPRINTER").is_symlink()
            scope.cancel()
    assert not (tmp_path / "dev" / "ttyPRINTER").is_symlink()


async def test_the_command_line_prints_a_pty_path_that_answers(tmp_path: Path) -> None:
    process = subprocess.Popen(
        [sys.executable, "-m", "actors.myntrix.devices.simulator", "marlin", "--pty", "--dir", str(tmp_path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=Path(__file__).resolve().parents[4],
    )
    try:
        with trio.fail_after(TIMEOUT):
            assert process.stdout is not None
            path = await trio.to_thread.run_sync(process.stdout.readline)
            assert path.strip() == str(tmp_path / "ttySIM0")
            client = await LineClient.open_pty(path.strip())
            try:
                assert await client.ask("M115", until="ok") == [MARLIN_FIRMWARE, "Cap:AUTOREPORT_TEMP:1", "ok"]
            finally:
                await client.aclose()
    finally:
        process.terminate()
        process.communicate(timeout=TIMEOUT)


async def test_m112_halts_the_printer(client: LineClient, printer: MarlinPrinter) -> None:
    with trio.fail_after(TIMEOUT):
        assert await client.ask("M112") == ["Error:Printer halted. kill() called!"]
    assert printer.muted
    await client.send_line("M105")
    with trio.move_on_after(0.3) as waited:
        await client.receive_line()
    assert waited.cancelled_caught


async def test_a_line_can_be_garbled_several_times(client: LineClient, printer: MarlinPrinter) -> None:
    printer.corrupt_line(1, times=2)
    with trio.fail_after(TIMEOUT):
        await client.ask("M110 N0")
        for _ in range(2):
            assert (await client.ask(numbered(1, "G28"), until="ok"))[-2:] == ["Resend: 1", "ok"]
        assert await client.ask(numbered(1, "G28")) == ["ok"]
    assert printer.resends_requested == 2
