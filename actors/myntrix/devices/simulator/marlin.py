"""A simulated Marlin-like 3D printer (:class:`MarlinPrinter`)."""

from __future__ import annotations

import re

import trio

from .transport import Reply

__all__ = ["MARLIN_FIRMWARE", "MarlinPrinter", "gcode_checksum"]

MARLIN_FIRMWARE = (
    "FIRMWARE_NAME:Marlin 2.1.2 (Vareon simulator) SOURCE_CODE_URL:github.com/MarlinFirmware/Marlin"
    " PROTOCOL_VERSION:1.0 MACHINE_TYPE:Vareon Sim EXTRUDER_COUNT:1"
)
"""The first line of the simulated printer's answer to ``M115``."""


def gcode_checksum(text: str) -> int:
    """The Marlin checksum of a numbered line: the XOR of the bytes of everything before ``*``.

    Args:
        text: ``N<n> <command>``, without the ``*`` and the checksum.
    """
    checksum = 0
    for byte in text.encode("ascii", errors="replace"):
        checksum ^= byte
    return checksum


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
