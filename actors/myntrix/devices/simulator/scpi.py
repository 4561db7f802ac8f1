"""A simulated SCPI-like lab instrument (:class:`ScpiInstrument`)."""

from __future__ import annotations

import math

from .transport import Reply

__all__ = ["SCPI_IDENTITY", "ScpiInstrument"]

SCPI_IDENTITY = "VAREON,SIM-1000,0001,1.4"
"""The simulated instrument's answer to ``*IDN?``."""


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
