"""The options of a serial connection string, checked: :class:`SerialSettings`."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from drivers._options import check_known, flag, one_of, positive_int

__all__ = ["DEFAULT_BAUDRATE", "MAX_BAUDRATE", "PORT_OPTIONS", "URL_OPTIONS", "SerialSettings"]

DEFAULT_BAUDRATE = 115200
"""The speed of a port whose connection string names none (Marlin, most Arduino sketches)."""

MAX_BAUDRATE = 50_000_000
"""Beyond any UART; larger numbers overflow the kernel's speed field."""

URL_OPTIONS = ("baudrate", "bytesize", "parity", "stopbits", "rtscts", "xonxoff", "dsrdtr")
"""The options of pyserial's URL handlers."""

PORT_OPTIONS = (*URL_OPTIONS, "exclusive")
"""The options of a device path: the URL handlers' and the port's lock."""

_PARITIES = {"N": "N", "E": "E", "O": "O", "M": "M", "S": "S", "none": "N", "even": "E", "odd": "O", "mark": "M", "space": "S"}
_STOPBITS = {"1": 1, "1.5": 1.5, "2": 2}
_BYTESIZES = {"5": 5, "6": 6, "7": 7, "8": 8}


@dataclass(frozen=True)
class SerialSettings:
    """The checked options of a serial connection string.

    Attributes:
        baudrate: bits per second (any positive integer; the port may refuse exotic ones).
        bytesize: data bits, 5 to 8.
        parity: ``N``, ``E``, ``O``, ``M`` or ``S``.
        stopbits: 1, 1.5 or 2.
        rtscts: hardware (RTS/CTS) flow control.
        xonxoff: software (XON/XOFF) flow control.
        dsrdtr: DSR/DTR flow control.
        exclusive: take an exclusive lock on a device path, so a second program (or a second
            device record) cannot interleave its bytes with ours. On by default.
    """

    baudrate: int = DEFAULT_BAUDRATE
    bytesize: int = 8
    parity: str = "N"
    stopbits: float = 1
    rtscts: bool = False
    xonxoff: bool = False
    dsrdtr: bool = False
    exclusive: bool = True

    @classmethod
    def from_options(cls, options: Mapping[str, str], *, known: tuple[str, ...], what: str) -> SerialSettings:
        """Check ``options`` (the query of a connection string) and build the settings.

        Args:
            options: the query parameters.
            known: the options this kind of link takes (:data:`PORT_OPTIONS`, :data:`URL_OPTIONS`).
            what: the kind of link, for the message (``"a serial port"``).

        Raises:
            LinkConfigError: an unknown option or a bad value; the message names it.
        """
        check_known(options, known, what=what)
        values: dict[str, Any] = {}
        if "baudrate" in options:
            values["baudrate"] = positive_int("baudrate", options["baudrate"], maximum=MAX_BAUDRATE)
        if "bytesize" in options:
            values["bytesize"] = one_of("bytesize", options["bytesize"], _BYTESIZES)
        if "parity" in options:
            values["parity"] = one_of("parity", options["parity"], _PARITIES)
        if "stopbits" in options:
            values["stopbits"] = one_of("stopbits", options["stopbits"], _STOPBITS)
        for name in ("rtscts", "xonxoff", "dsrdtr", "exclusive"):
            if name in options:
                values[name] = flag(name, options[name])
        return cls(**values)

    def framing(self) -> str:
        """``115200 baud 8N1`` plus any flow control."""
        text = f"{self.baudrate} baud {self.bytesize}{self.parity}{self.stopbits:g}"
        controls = [name for name in ("rtscts", "xonxoff", "dsrdtr") if getattr(self, name)]
        return " ".join([text, *controls])

    def pyserial_arguments(self) -> dict[str, Any]:
        """Keyword arguments of ``serial.Serial`` (without the port and timeouts)."""
        return {
            "baudrate": self.baudrate,
            "bytesize": self.bytesize,
            "parity": self.parity,
            "stopbits": self.stopbits,
            "rtscts": self.rtscts,
            "xonxoff": self.xonxoff,
            "dsrdtr": self.dsrdtr,
        }
