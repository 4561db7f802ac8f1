"""The simulators through the real drivers, as a device actor reaches them: the pty by its path
(serial driver), the instrument by ``tcp://`` and by pyserial's ``socket://``."""

from __future__ import annotations

from pathlib import Path

import pytest
import trio

from actors.myntrix.devices.simulator import (
    MARLIN_FIRMWARE,
    SCPI_IDENTITY,
    MarlinPrinter,
    PtySimulator,
    ScpiInstrument,
    TcpSimulator,
)
from drivers.errors import LinkBrokenError, LinkUnavailableError
from drivers.link import Link, open_link

TIMEOUT = 20


async def read_until(link: Link, end: bytes) -> bytes:
    data = b""
    while not data.endswith(end):
        data += await link.receive()
    return data


async def test_the_printer_through_the_serial_driver_unplugged_and_replugged(
    nursery: trio.Nursery, tmp_path: Path
) -> None:
    simulator = PtySimulator(MarlinPrinter(), tmp_path)
    await nursery.start(simulator.run)
    with trio.fail_after(TIMEOUT):
        link = await open_link(f"{simulator.connection_string}?baudrate=250000")
        try:
            await link.send(b"M115\n")
            assert await read_until(link, b"ok\n") == f"{MARLIN_FIRMWARE}\nCap:AUTOREPORT_TEMP:1\nok\n".encode()
            await simulator.unplug()
            with pytest.raises(LinkBrokenError):
                await read_until(link, b"\n")
        finally:
            await link.aclose()
        with pytest.raises(LinkUnavailableError):
            await open_link(simulator.connection_string)
        await simulator.replug()
        link = await open_link(simulator.connection_string)
        try:
            await link.send(b"M105\n")
            assert await read_until(link, b"\n") == b"ok T:21.3 /0.0 B:20.1 /0.0\n"
        finally:
            await link.aclose()


@pytest.mark.parametrize("scheme", ["tcp", "socket"])
async def test_the_instrument_through_the_network_drivers(nursery: trio.Nursery, scheme: str) -> None:
    simulator = TcpSimulator(ScpiInstrument())
    await nursery.start(simulator.run)
    with trio.fail_after(TIMEOUT):
        link = await open_link(simulator.connection_string.replace("tcp://", f"{scheme}://"))
        try:
            await link.send(b"*IDN?\n")
            assert await read_until(link, b"\n") == f"{SCPI_IDENTITY}\n".encode()
            await simulator.unplug()
            with pytest.raises(LinkBrokenError):
                await read_until(link, b"\n")
        finally:
            await link.aclose()
        await simulator.replug()
        link = await open_link(simulator.connection_string.replace("tcp://", f"{scheme}://"))
        try:
            await link.send(b"*IDN?\n")
            assert await read_until(link, b"\n") == f"{SCPI_IDENTITY}\n".encode()
        finally:
            await link.aclose()
