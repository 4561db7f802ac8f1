"""A plain client of the simulators, for the simulator and upload tests: it opens the pty (or
a TCP connection) itself, so these tests need no driver, and it is a real ``LineChannel``."""

from __future__ import annotations

import math
import os
from pathlib import Path

import trio

from actors.myntrix.devices.simulator import SimulatedDevice
from drivers.lines import LineReader

TIMEOUT = 20


class DeviceClosed(Exception):
    """The simulated device went away (unplugged) while the client was reading."""


class LineClient:
    """Lines over a byte stream: the pty slave or a TCP connection to a simulator."""

    def __init__(self, stream: trio.abc.Stream) -> None:
        self._stream = stream
        self._lines = LineReader(stream)
        self.sent: list[bytes] = []

    @classmethod
    async def open_pty(cls, path: Path | str) -> LineClient:
        """Open the pty at ``path`` like a serial port would (read/write, not a controlling tty)."""
        await trio.lowlevel.checkpoint()
        return cls(trio.lowlevel.FdStream(os.open(path, os.O_RDWR | os.O_NOCTTY)))

    @classmethod
    async def open_tcp(cls, port: int) -> LineClient:
        return cls(await trio.open_tcp_stream("127.0.0.1", port))

    async def send(self, data: bytes) -> None:
        self.sent.append(data)
        await self._stream.send_all(data)

    async def send_line(self, line: str) -> None:
        await self.send(line.encode() + b"\n")

    async def receive_line(self) -> str:
        line = await self._lines.receive_line()
        if line is None:
            raise DeviceClosed("the simulated device closed the connection")
        return line.rstrip("\r")

    async def ask(self, line: str, *, until: str | None = None) -> list[str]:
        """Send ``line``; return the reply lines up to and including ``until`` (one line if None)."""
        await self.send_line(line)
        replies = [await self.receive_line()]
        while until is not None and not replies[-1].startswith(until):
            replies.append(await self.receive_line())
        return replies

    async def aclose(self) -> None:
        await self._stream.aclose()


class InProcessChannel:
    """A simulated device's logic behind the ``LineChannel`` interface, without a transport: for
    tests on the autojump clock (a pty's I/O would race the jumping clock). Start :meth:`run`."""

    def __init__(self, device: SimulatedDevice) -> None:
        self.device = device
        self._to_device, self._device_inbox = trio.open_memory_channel[str](math.inf)
        self._to_client, self._client_inbox = trio.open_memory_channel[str](math.inf)
        self._buffer = b""

    async def run(self, *, task_status: trio.TaskStatus[InProcessChannel] = trio.TASK_STATUS_IGNORED) -> None:
        task_status.started(self)
        async for line in self._device_inbox:
            if not self.device.muted:
                await self.device.handle(line, self._reply)

    async def _reply(self, line: str) -> None:
        if not self.device.muted:
            self._to_client.send_nowait(line)

    async def send(self, data: bytes) -> None:
        await trio.lowlevel.checkpoint()
        *lines, self._buffer = (self._buffer + data).split(b"\n")
        for line in lines:
            self._to_device.send_nowait(line.decode())

    async def receive_line(self) -> str:
        return await self._client_inbox.receive()
