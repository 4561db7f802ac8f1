"""Simulated devices for tests, demos and the telemetry benchmark: a Marlin-like 3D printer and a
SCPI-like lab instrument, served over a pseudo-terminal or a TCP listener.

The device logic (:class:`MarlinPrinter`, :class:`ScpiInstrument`) only turns received lines into
replies; the transports (:class:`PtySimulator`, :class:`TcpSimulator`) carry the bytes and can be
"unplugged" (the client's link breaks, as when a USB cable is pulled) and "replugged" (the device
comes back at the same path or port). Nothing here needs more than trio and the standard library.
The package holds them one a module (``marlin``, ``scpi``, ``transport``) and the command line
(``serve``, run by ``python -m``).

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

from actors.myntrix.devices.simulator.marlin import MARLIN_FIRMWARE as MARLIN_FIRMWARE
from actors.myntrix.devices.simulator.marlin import MarlinPrinter as MarlinPrinter
from actors.myntrix.devices.simulator.marlin import gcode_checksum as gcode_checksum
from actors.myntrix.devices.simulator.scpi import SCPI_IDENTITY as SCPI_IDENTITY
from actors.myntrix.devices.simulator.scpi import ScpiInstrument as ScpiInstrument
from actors.myntrix.devices.simulator.serve import main as main
from actors.myntrix.devices.simulator.transport import PtySimulator as PtySimulator
from actors.myntrix.devices.simulator.transport import Reply as Reply
from actors.myntrix.devices.simulator.transport import SimulatedDevice as SimulatedDevice
from actors.myntrix.devices.simulator.transport import TcpSimulator as TcpSimulator
from actors.myntrix.devices.simulator.transport import open_pty as open_pty

__all__ = [
    "MARLIN_FIRMWARE",
    "SCPI_IDENTITY",
    "MarlinPrinter",
    "PtySimulator",
    "Reply",
    "ScpiInstrument",
    "SimulatedDevice",
    "TcpSimulator",
    "gcode_checksum",
    "main",
    "open_pty",
]
