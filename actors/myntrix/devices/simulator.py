"""Simulated devices for tests, demos and the telemetry benchmark: a Marlin-like 3D printer and a
SCPI-like lab instrument, served over a pseudo-terminal or a TCP listener.

The device logic (:class:`MarlinPrinter`, :class:`ScpiInstrument`) only turns received lines into
replies; the transports (:class:`PtySimulator`, :class:`TcpSimulator`) carry the bytes and can be
"unplugged" (the client's link breaks, as when a USB cable is pulled) and "replugged" (the device
comes back at the same path or port). Nothing here needs more than trio and the standard library.

From a shell::

    python -m actors.myntrix.devices.simulator marlin --pty         # prints /tmp/.../ttySIM0
    python -m actors.myntrix.devices.simulator scpi --tcp 5025      # prints tcp://127.0.0.1:5025

From a test::

    printer = MarlinPrinter()
    simulator = PtySimulator(printer, tmp_path)
    await nursery.start(simulator.run)
    ...connect a device to simulator.connection_string...
    await simulator.unplug(); await simulator.replug()

A pty's ``/dev/pts/N`` name changes with every new pair, so :class:`PtySimulator` offers a stable
symlink (``<directory>/ttySIM0``) that it removes on unplug and re-points on replug, the way udev
gives a printer a stable ``/dev/serial/by-id/...`` name.
"""

from __future__ import annotations

import argparse
import math
import os
import re
import shutil
import sys
import tempfile
import tty
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Protocol

import trio

__all__ = [
    "MARLIN_FIRMWARE",
    "SCPI_IDENTITY",
    "MarlinPrinter",
    "PtySimulator",
    "ScpiInstrument",
    "SimulatedDevice",
    "TcpSimulator",
    "gcode_checksum",
    "main",
    "open_pty",
]

MARLIN_FIRMWARE = (
    "FIRMWARE_NAME:Marlin 2.1.2 (Vareon simulator) SOURCE_CODE_URL:github.com/MarlinFirmware/Marlin"
    " PROTOCOL_VERSION:1.0 MACHINE_TYPE:Vareon Sim EXTRUDER_COUNT:1"
)
"""The first line of the simulated printer's answer to ``M115``."""

SCPI_IDENTITY = "VAREON,SIM-1000,0001,1.4"
"""The simulated instrument's answer to ``*IDN?``."""

Reply = Callable[[str], Awaitable[None]]
"""Sends one line (without its terminator) back to the client."""


def gcode_checksum(text: str) -> int:
    """The Marlin checksum of a numbered line: the XOR of the bytes of everything before ``*``.

    Args:
        text: ``N<n> <command>``, without the ``*`` and the checksum.
    """
    checksum = 0
    for byte in text.encode("ascii", errors="replace"):
        checksum ^= byte
    return checksum


class SimulatedDevice(Protocol):
    """What a transport serves: a device that answers lines and may report on its own.

    ``handle`` is called for each complete received line, one at a time (a slow command delays
    the next, as on a real device). ``report_interval`` (seconds, ``None`` for never) asks the
    transport to send ``report()`` periodically; the transport rereads it after each line.
    ``muted`` makes the device ignore everything, to simulate a hung device.
    """

    muted: bool

    @property
    def report_interval(self) -> float | None: ...

    def report(self) -> str: ...

    async def handle(self, line: str, reply: Reply) -> None: ...


_NUMBERED = re.compile(r"^N(?P<number>-?\d+)\s*(?P<command>.*?)\s*(?:\*(?P<checksum>\d+))?$")
_STARRED = re.compile(r"^(?P<command>.*?)\*(?P<checksum>\d+)$")
_PARAMETER = re.compile(r"(?P<letter>[A-Z])(?P<value>[-+]?\d*\.?\d*)")


def _parameter(command: str, letter: str) -> float | None:
    for match in _PARAMETER.finditer(command.upper()[1:]):
        if match.group("letter") == letter and match.group("value") not in ("", "+", "-", "."):
            return float(match.group("value"))
    return None


class MarlinPrinter:
    """A Marlin-like 3D printer.

    Answers ``ok`` to every G/M/T command; ``M115`` with :data:`MARLIN_FIRMWARE` then ``ok``;
    ``M105`` with ``ok T:21.3 /0.0 B:20.1 /0.0``; ``M155 S<seconds>`` turns periodic temperature
    reports on (``S0`` off); ``M104``/``M140 S<t>`` set the targets shown in reports; ``G4 S<s>``
    or ``P<ms>`` dwells, sending ``echo:busy: processing`` every ``busy_interval`` seconds;
    ``M112`` halts it (``Error:Printer halted. kill() called!``, then silence, as after a kill).

    Numbered lines (``N<n> <command>*<checksum>``) are checked like Marlin does: a wrong line
    number or checksum gets ``Error:...``, ``Resend: <last + 1>`` and ``ok``; ``M110 N<n>`` sets the
    last line number. Every accepted command is appended to :attr:`received` (without its line
    number and checksum), so a test can compare what arrived with what was sent.

    Attributes:
        received: the accepted commands, in order.
        resends_requested: how many ``Resend:`` the printer asked for.
        muted: when true the printer ignores everything (a hung device).
        busy_interval: seconds between ``busy:`` lines during a dwell.
    """

    def __init__(self, *, hotend: float = 21.3, bed: float = 20.1, busy_interval: float = 1.0) -> None:
        self.received: list[str] = []
        self.resends_requested = 0
        self.muted = False
        self.busy_interval = busy_interval
        self.hotend = hotend
        self.bed = bed
        self.hotend_target = 0.0
        self.bed_target = 0.0
        self._last_line = 0
        self._corrupt: dict[int, int] = {}
        self._report_interval: float | None = None

    @property
    def report_interval(self) -> float | None:
        return self._report_interval

    @property
    def last_line(self) -> int:
        """The number of the last accepted numbered line."""
        return self._last_line

    def corrupt_line(self, number: int, times: int = 1) -> None:
        """Treat the next ``times`` arrivals of line ``number`` as garbled on the wire (a checksum
        mismatch): the printer asks for it again each time, then accepts it."""
        self._corrupt[number] = times

    def temperatures(self) -> str:
        """The temperatures as Marlin prints them: ``T:21.3 /0.0 B:20.1 /0.0``."""
        return f"T:{self.hotend:.1f} /{self.hotend_target:.1f} B:{self.bed:.1f} /{self.bed_target:.1f}"

    def report(self) -> str:
        return f" {self.temperatures()} @:0 B@:0"

    async def handle(self, line: str, reply: Reply) -> None:
        text = line.split(";", 1)[0].strip()
        if not text:
            return
        command = await self._check_numbering(text, reply)
        if command is None or not command:
            return
        self.received.append(command)
        await self._execute(command, reply)

    async def _check_numbering(self, text: str, reply: Reply) -> str | None:
        """The command of ``text`` if its numbering is right, else ``None`` after asking for a resend."""
        numbered = _NUMBERED.match(text)
        if numbered is None:
            starred = _STARRED.match(text)
            if starred is not None:
                await self._resend(reply, "No Line Number with checksum")
                return None
            return text
        number = int(numbered.group("number"))
        command = numbered.group("command")
        is_m110 = command.upper().startswith("M110")
        if numbered.group("checksum") is None:
            await self._resend(reply, "No Checksum with line number")
            return None
        if not is_m110 and number != self._last_line + 1:
            await self._resend(reply, "Line Number is not Last Line Number+1")
            return None
        before_star = text[: text.rindex("*")]
        garbled = self._corrupt.get(number, 0) > 0
        if garbled or gcode_checksum(before_star) != int(numbered.group("checksum")):
            if garbled:
                self._corrupt[number] -= 1
            await self._resend(reply, "checksum mismatch")
            return None
        if is_m110:
            explicit = _parameter(command, "N")
            self._last_line = int(explicit) if explicit is not None else number
        else:
            self._last_line = number
        return command

    async def _resend(self, reply: Reply, why: str) -> None:
        self.resends_requested += 1
        await reply(f"Error:{why}, Last Line: {self._last_line}")
        await reply(f"Resend: {self._last_line + 1}")
        await reply("ok")

    async def _execute(self, command: str, reply: Reply) -> None:
        word = command.split(None, 1)[0].upper()
        if word == "M110":
            explicit = _parameter(command, "N")
            if explicit is not None:
                self._last_line = int(explicit)
        elif word == "M115":
            await reply(MARLIN_FIRMWARE)
            await reply("Cap:AUTOREPORT_TEMP:1")
        elif word == "M105":
            await reply(f"ok {self.temperatures()}")
            return
        elif word == "M155":
            seconds = _parameter(command, "S")
            self._report_interval = seconds if seconds else None
        elif word in ("M104", "M109"):
            self.hotend_target = _parameter(command, "S") or 0.0
        elif word in ("M140", "M190"):
            self.bed_target = _parameter(command, "S") or 0.0
        elif word == "M112":
            # Emergency stop: Marlin kills the printer, which answers nothing more until reset.
            await reply("Error:Printer halted. kill() called!")
            self.muted = True
            return
        elif word == "G4":
            await self._dwell(command, reply)
        elif word[0] not in "GMT" or not word[1:].isdigit():
            await reply(f'echo:Unknown command: "{command}"')
        await reply("ok")

    async def _dwell(self, command: str, reply: Reply) -> None:
        seconds = _parameter(command, "S")
        if seconds is None:
            seconds = (_parameter(command, "P") or 0.0) / 1000
        deadline = trio.current_time() + seconds
        while (left := deadline - trio.current_time()) > 0:
            await trio.sleep(min(left, self.busy_interval))
            if deadline - trio.current_time() > 0:
                await reply("echo:busy: processing")


_SCPI_LONG = {"MEASURE": "MEAS", "VOLTAGE": "VOLT", "CURRENT": "CURR", "SYSTEM": "SYST", "ERROR": "ERR"}


class ScpiInstrument:
    """A SCPI-like instrument: one reply line per query, no ``ok``, silence for anything unknown.

    ``*IDN?`` answers :data:`SCPI_IDENTITY`; ``MEAS:VOLT?`` and ``MEAS:CURR?`` a float around
    :attr:`voltage` / :attr:`current`; ``*OPC?`` answers ``1``; ``*RST`` and ``*CLS`` answer nothing.
    An unknown command gets no reply at all (a client waiting for one times out) and queues
    ``-113,"Undefined header"``, which ``SYST:ERR?`` returns (``0,"No error"`` when empty).
    Long forms (``MEASure:VOLTage?``) and lower case are accepted.

    Attributes:
        received: every received command, in order.
        muted: when true the instrument ignores everything.
    """

    report_interval: float | None = None

    def __init__(self, *, voltage: float = 12.0, current: float = 0.5) -> None:
        self.received: list[str] = []
        self.muted = False
        self.voltage = voltage
        self.current = current
        self._readings = 0
        self._errors: list[str] = []

    def report(self) -> str:
        return f"VOLT {self._reading(self.voltage)}"

    def _reading(self, value: float) -> str:
        # A small deterministic ripple, so successive readings differ like a real measurement.
        self._readings += 1
        return f"{value + 0.001 * math.sin(self._readings):.4f}"

    async def handle(self, line: str, reply: Reply) -> None:
        text = line.strip()
        if not text:
            return
        self.received.append(text)
        words = text.split(None, 1)[0].upper().lstrip(":")
        query = "?" if words.endswith("?") else ""
        header = ":".join(_SCPI_LONG.get(part, part) for part in words.rstrip("?").split(":")) + query
        if header == "*IDN?":
            await reply(SCPI_IDENTITY)
        elif header in ("MEAS:VOLT?", "MEAS:VOLT:DC?"):
            await reply(self._reading(self.voltage))
        elif header in ("MEAS:CURR?", "MEAS:CURR:DC?"):
            await reply(self._reading(self.current))
        elif header == "*OPC?":
            await reply("1")
        elif header == "SYST:ERR?":
            await reply(self._errors.pop(0) if self._errors else '0,"No error"')
        elif header in ("*RST", "*CLS"):
            if header == "*CLS":
                self._errors.clear()
        else:
            self._errors.append('-113,"Undefined header"')


class _Session:
    """One client connection: feeds received lines to the device, sends replies and reports."""

    def __init__(self, stream: trio.abc.Stream, device: SimulatedDevice) -> None:
        self._stream = stream
        self._device = device
        self._send_lock = trio.Lock()

    async def send_line(self, line: str) -> None:
        async with self._send_lock:
            await self._stream.send_all(line.encode() + b"\n")

    async def _reply(self, line: str) -> None:
        if not self._device.muted:
            await self.send_line(line)

    async def _report(self, interval: float) -> None:
        while True:
            await trio.sleep(interval)
            if not self._device.muted:
                await self.send_line(self._device.report())

    async def run(self) -> None:
        """Serve until the client goes away (the stream breaks or ends) or the task is cancelled."""
        buffer = b""
        reporter = trio.CancelScope()
        reporting: float | None = None
        try:
            async with trio.open_nursery() as nursery:
                while True:
                    data = await self._stream.receive_some(65536)
                    if not data:
                        break
                    *lines, buffer = (buffer + data).split(b"\n")
                    for raw in lines:
                        if self._device.muted:
                            continue
                        await self._device.handle(raw.rstrip(b"\r").decode(errors="replace"), self._reply)
                        if self._device.report_interval != reporting:
                            reporter.cancel()
                            reporting = self._device.report_interval
                            if reporting is not None:
                                reporter = await nursery.start(self._reporting, reporting)
                nursery.cancel_scope.cancel()
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass  # the client went away, or we were unplugged: both end the session quietly

    async def _reporting(self, interval: float, *, task_status: trio.TaskStatus[trio.CancelScope]) -> None:
        with trio.CancelScope() as scope:
            task_status.started(scope)
            await self._report(interval)


def open_pty() -> tuple[int, int, str]:
    """Open a pseudo-terminal pair with the slave in raw mode (no echo, no line editing).

    Returns:
        ``(master_fd, slave_fd, slave_path)``; the caller owns both descriptors.
    """
    master, slave = os.openpty()
    tty.setraw(slave)
    return master, slave, os.ttyname(slave)


class _Transport:
    """Plug/unplug bookkeeping shared by the pty and TCP transports."""

    def __init__(self, device: SimulatedDevice) -> None:
        self.device = device
        self._nursery: trio.Nursery | None = None
        self._plugged: trio.CancelScope | None = None
        self._unplugged = trio.Event()
        self._sessions: set[_Session] = set()

    @property
    def plugged(self) -> bool:
        """Whether the device is reachable now."""
        return self._plugged is not None

    async def run(self, *, task_status: trio.TaskStatus[_Transport] = trio.TASK_STATUS_IGNORED) -> None:
        """Plug the device in and serve until cancelled; ``task_status.started(self)`` once reachable."""
        try:
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                await self._plug()
                task_status.started(self)
                await trio.sleep_forever()
        finally:
            self._nursery = None
            self._teardown()

    async def unplug(self) -> None:
        """Pull the plug: the client's link breaks and the device is unreachable until :meth:`replug`."""
        if self._plugged is None:
            raise RuntimeError("the simulated device is already unplugged")
        self._plugged.cancel()
        await self._unplugged.wait()

    async def replug(self) -> None:
        """Plug the device back in at the same path or port, with its state (received lines, line
        numbers, settings) kept."""
        if self._plugged is not None:
            raise RuntimeError("the simulated device is already plugged in")
        await self._plug()

    async def emit(self, line: str) -> int:
        """Send an unsolicited line (telemetry, a log message) to every connected client.

        Returns:
            How many clients it was sent to (0 when none is connected: the line is dropped).
        """
        sessions = list(self._sessions)
        for session in sessions:
            try:
                await session.send_line(line)
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                pass  # that client is leaving; its session ends on its own
        return len(sessions)

    async def _plug(self) -> None:
        assert self._nursery is not None, "run() must be started before plugging"
        self._unplugged = trio.Event()
        self._plugged = await self._nursery.start(self._serve_plugged)

    async def _serve_plugged(self, *, task_status: trio.TaskStatus[trio.CancelScope]) -> None:
        try:
            with trio.CancelScope() as scope:
                await self._serve(scope, task_status)
        finally:
            self._plugged = None
            self._teardown()
            self._unplugged.set()

    async def _serve_session(self, stream: trio.abc.Stream) -> None:
        session = _Session(stream, self.device)
        self._sessions.add(session)
        try:
            await session.run()
        finally:
            self._sessions.discard(session)

    async def _serve(self, scope: trio.CancelScope, task_status: trio.TaskStatus[trio.CancelScope]) -> None:
        raise NotImplementedError

    def _teardown(self) -> None:
        """Release what the plugged state holds (idempotent, synchronous: runs on cancellation)."""


class PtySimulator(_Transport):
    """Serves a device on a pseudo-terminal, reachable through the stable symlink :attr:`path`.

    The simulator keeps its own descriptor of the slave open, so a client that closes the port
    and opens it again finds the same device (and the raw mode set at creation). Unplugging
    closes the master (the client's reads fail with EIO) and removes the symlink; replugging
    opens a new pair and points the symlink at it.

    Args:
        device: the device logic to serve.
        directory: where the symlink lives (``tmp_path`` in tests).
        name: the symlink's name.
    """

    def __init__(self, device: SimulatedDevice, directory: Path | str, name: str = "ttySIM0") -> None:
        super().__init__(device)
        self.path = Path(directory) / name
        self.slave_path: str | None = None
        self._slave_fd: int | None = None

    @property
    def connection_string(self) -> str:
        """What to give a device as its connection string: the symlink's path."""
        return str(self.path)

    async def _serve(self, scope: trio.CancelScope, task_status: trio.TaskStatus[trio.CancelScope]) -> None:
        master, self._slave_fd, self.slave_path = open_pty()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        staging = self.path.with_name(f".{self.path.name}.new")
        staging.unlink(missing_ok=True)
        staging.symlink_to(self.slave_path)
        staging.replace(self.path)  # atomic: a client never sees the name missing while plugged
        stream = trio.lowlevel.FdStream(master)
        try:
            task_status.started(scope)
            # One session for the pty's whole life: client disconnects are invisible on a pty
            # whose slave we hold open, which is what lets a client come back.
            await self._serve_session(stream)
            await trio.sleep_forever()
        finally:
            with trio.CancelScope(shield=True):
                await stream.aclose()

    def _teardown(self) -> None:
        if self._slave_fd is not None:
            os.close(self._slave_fd)
            self._slave_fd = None
        if self.path.is_symlink() and self.slave_path is not None and os.readlink(self.path) == self.slave_path:
            self.path.unlink()


class TcpSimulator(_Transport):
    """Serves a device on a TCP port; every connection talks to the same device.

    Unplugging closes the connections and stops listening (clients get a reset or a refused
    connection); replugging listens again on the same port.

    Args:
        device: the device logic to serve.
        host: the address to listen on.
        port: the port, 0 for a free one (then :attr:`port` tells which, once started).
    """

    def __init__(self, device: SimulatedDevice, *, host: str = "127.0.0.1", port: int = 0) -> None:
        super().__init__(device)
        self.host = host
        self.port = port

    @property
    def connection_string(self) -> str:
        """``tcp://host:port`` (valid once started)."""
        return f"tcp://{self.host}:{self.port}"

    async def _serve(self, scope: trio.CancelScope, task_status: trio.TaskStatus[trio.CancelScope]) -> None:
        listeners = await trio.open_tcp_listeners(self.port, host=self.host)
        self.port = listeners[0].socket.getsockname()[1]
        task_status.started(scope)
        await trio.serve_listeners(self._serve_session, listeners)


def _parse_arguments(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m actors.myntrix.devices.simulator",
        description="Serve a simulated device and print the connection string to give Vareon.",
    )
    parser.add_argument("device", choices=["marlin", "scpi"], help="a Marlin printer or a SCPI instrument")
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--pty", action="store_true", help="serve on a pseudo-terminal (the default)")
    where.add_argument("--tcp", type=int, metavar="PORT", help="serve on a TCP port (0 for a free one)")
    parser.add_argument("--host", default="127.0.0.1", help="the address to listen on with --tcp")
    parser.add_argument(
        "--dir", type=Path, default=None, help="where to put the pty's stable symlink (default: a new temp dir)"
    )
    return parser.parse_args(argv)


async def _serve_forever(arguments: argparse.Namespace) -> None:
    device: SimulatedDevice = MarlinPrinter() if arguments.device == "marlin" else ScpiInstrument()
    simulator: PtySimulator | TcpSimulator
    made: Path | None = None  # a temp dir we create for the symlink, removed on exit
    if arguments.tcp is not None:
        simulator = TcpSimulator(device, host=arguments.host, port=arguments.tcp)
    else:
        directory: Path | None = arguments.dir
        if directory is None:
            directory = made = Path(tempfile.mkdtemp(prefix="vareon-sim-"))
        simulator = PtySimulator(device, directory)
    try:
        async with trio.open_nursery() as nursery:
            await nursery.start(simulator.run)
            print(simulator.connection_string, flush=True)
            print(f"simulated {arguments.device} ready; Ctrl-C to stop", file=sys.stderr, flush=True)
    finally:
        if made is not None:
            shutil.rmtree(made, ignore_errors=True)


def main(argv: Sequence[str] | None = None) -> int:
    """Run a simulator from the command line until interrupted."""
    arguments = _parse_arguments(argv)
    status = 0
    try:
        trio.run(_serve_forever, arguments)
    except* KeyboardInterrupt:
        pass  # Ctrl-C is how it stops
    except* OSError as group:
        where = f"{arguments.host}:{arguments.tcp}" if arguments.tcp is not None else "a pty"
        print(f"cannot serve the simulator on {where}: {group.exceptions[0]}", file=sys.stderr)
        status = 1
    return status


if __name__ == "__main__":
    raise SystemExit(main())
