"""Transports for simulated devices: a pseudo-terminal (:class:`PtySimulator`) or a TCP listener
(:class:`TcpSimulator`) serving a :class:`SimulatedDevice`, which can be "unplugged" (the client's
link breaks, as when a USB cable is pulled) and "replugged" (the device comes back at the same path
or port)."""

from __future__ import annotations

import abc
import os
import tty
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Protocol

import trio

__all__ = ["PtySimulator", "Reply", "SimulatedDevice", "TcpSimulator", "open_pty"]

Reply = Callable[[str], Awaitable[None]]
"""Sends one line (without its terminator) back to the client."""


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


class _Transport(abc.ABC):
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

    @abc.abstractmethod
    async def _serve(self, scope: trio.CancelScope, task_status: trio.TaskStatus[trio.CancelScope]) -> None:
        """Serve until ``scope`` is cancelled; report it started once the far end is reachable."""

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
