"""Helpers of the device actor tests: the devices module under a root supervisor on a real store,
simulated devices on a pty or a TCP port, waiting for status events on the bus, and links whose
reads and writes a test holds (:class:`HeldLinks`) to decide who notices a pulled plug first."""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import trio

from actors.kit import Jobs
from actors.myntrix.devices import DeviceModule, Devices, DeviceServices, DeviceSettings, status_topic
from drivers.errors import LinkError
from drivers.link import ConnectionTarget, Link, LinkRegistry
from drivers.serial import SerialDriver
from vareon_runtime.bus import EventBus, Overflow, Subscription
from vareon_runtime.registry import Registry
from vareon_runtime.store import Store
from vareon_runtime.supervisor import ChildSpec, Supervisor

TIMEOUT = 20.0

# Fast enough for tests, same code paths as the defaults.
FAST = DeviceSettings(
    command_timeout=2.0,
    reconnect_initial=0.05,
    reconnect_max=0.3,
    stable_after=0.5,
    seen_interval=0.05,
    connect_wait=5.0,
    shutdown_timeout=10.0,
    telemetry_flush_interval=0.05,
)

MARLIN = {
    "identifyCommand": "M115",
    "upload": {"mode": "gcode", "lineNumbers": True},
}
SCPI = {"identifyCommand": "*IDN?", "replyTerminator": None}


@dataclass
class DeviceModuleRun:
    """One running devices module (what ``vareon run`` starts), and how to stop it."""

    devices: Devices
    module: DeviceModule
    root: Supervisor
    registry: Registry
    stopped: trio.Event

    async def stop(self) -> None:
        await self.root.stop()
        with trio.fail_after(TIMEOUT):
            await self.stopped.wait()


async def start_device_module(
    nursery: trio.Nursery,
    store: Store,
    bus: EventBus,
    *,
    settings: DeviceSettings = FAST,
    links: LinkRegistry | None = None,
) -> DeviceModuleRun:
    """Start the devices module as a runtime would (a fresh registry: a runtime's own), with the
    link drivers ``links`` (None: every driver the runtime knows)."""
    registry = Registry()
    made: list[DeviceModule] = []

    def factory() -> DeviceModule:
        services = DeviceServices(store, bus, Jobs(store, bus), settings, rng=random.Random(5), links=links)
        module = DeviceModule(services, registry)
        made.append(module)
        return module

    root = Supervisor(
        "root", [ChildSpec("devices", factory, shutdown=settings.shutdown_timeout)], registry=registry, bus=bus
    )
    stopped = trio.Event()

    async def run(*, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        try:
            await root.run(task_status=task_status)
        finally:
            stopped.set()

    with trio.fail_after(TIMEOUT):
        await nursery.start(run)
        devices = registry.face(Devices)
    return DeviceModuleRun(devices, made[-1], root, registry, stopped)


def status_events(bus: EventBus, device_id: str) -> Subscription:
    """A subscription to the device's status changes (open it before acting)."""
    return bus.subscribe(status_topic(device_id), queue_size=256)


async def until_status(
    subscription: Subscription, predicate: Callable[[dict[str, Any]], bool], *, timeout: float = TIMEOUT
) -> dict[str, Any]:
    """The data of the first status event that satisfies ``predicate``."""
    with trio.fail_after(timeout):
        while True:
            item = await subscription.receive()
            if not isinstance(item, Overflow) and predicate(item.data):
                data: dict[str, Any] = item.data
                return data


def statuses(subscription: Subscription) -> list[str]:
    """The statuses of the events queued on ``subscription`` now, in order."""
    found: list[str] = []
    while True:
        try:
            item = subscription.receive_nowait()
        except trio.WouldBlock:
            return found
        if not isinstance(item, Overflow):
            found.append(item.data["status"])


def write_gcode(path: Path, count: int) -> list[str]:
    """A G-code file of ``count`` moves with comments and blank lines; returns the commands sent."""
    commands = [f"G1 X{i % 200} Y{(i * 7) % 200} F3000" for i in range(count)]
    lines = ["; generated for a test", ""]
    for index, command in enumerate(commands):
        lines.append(command + (" ; move" if index % 10 == 0 else ""))
        if index % 25 == 0:
            lines.append("")
    path.write_text("\n".join(lines) + "\n")
    return commands


class HeldLink:
    """A real link whose writes, and whose reads, a test can hold; it notes every failure its
    users met, in order, as ``(what, error)``.

    Holding the reads cancels the read under way (a serial link loses nothing to that) and starts
    none until they are released, so the device's reader cannot notice a pulled plug meanwhile.
    """

    def __init__(self, link: Link) -> None:
        self.inner = link
        self.failures: list[tuple[str, LinkError]] = []
        self.send_waiting = trio.Event()  # set when a send is being held
        self._sends: trio.Event | None = None
        self._reads: trio.Event | None = None
        self._reading: trio.CancelScope | None = None

    @property
    def description(self) -> str:
        return self.inner.description

    def hold_sends(self) -> None:
        self._sends, self.send_waiting = trio.Event(), trio.Event()

    def release_sends(self) -> None:
        assert self._sends is not None
        self._sends.set()
        self._sends = None

    def hold_reads(self) -> None:
        self._reads = trio.Event()
        if self._reading is not None:
            self._reading.cancel()

    async def receive(self, max_bytes: int = 65536) -> bytes:
        while True:
            if self._reads is not None:
                await self._reads.wait()
            with trio.CancelScope() as self._reading:
                try:
                    return await self.inner.receive(max_bytes)
                except LinkError as exc:
                    self.failures.append(("receive", exc))
                    raise

    async def send(self, data: bytes) -> None:
        if self._sends is not None:
            self.send_waiting.set()
            await self._sends.wait()
        try:
            await self.inner.send(data)
        except LinkError as exc:
            self.failures.append(("send", exc))
            raise

    async def aclose(self) -> None:
        await self.inner.aclose()


class HeldLinks:
    """The serial driver, its links wrapped in :class:`HeldLink`: pass :attr:`registry` to
    :func:`start_device_module`; :attr:`opened` lists the links in the order they were opened."""

    def __init__(self) -> None:
        self.opened: list[HeldLink] = []
        self._serial = SerialDriver()
        self.registry = LinkRegistry()
        self.registry.register("serial", lambda: self)

    def check(self, target: ConnectionTarget) -> None:
        self._serial.check(target)

    async def open(self, target: ConnectionTarget) -> Link:
        link = HeldLink(await self._serial.open(target))
        self.opened.append(link)
        return link
