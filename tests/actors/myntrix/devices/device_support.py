"""Helpers of the device actor tests: the devices module under a root supervisor on a real store,
simulated devices on a pty or a TCP port, and waiting for status events on the bus."""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import trio

from actors.kit import Jobs
from actors.myntrix.devices import DeviceModule, Devices, DeviceServices, DeviceSettings, status_topic
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
    nursery: trio.Nursery, store: Store, bus: EventBus, *, settings: DeviceSettings = FAST
) -> DeviceModuleRun:
    """Start the devices module as a runtime would (a fresh registry: a runtime's own)."""
    registry = Registry()
    made: list[DeviceModule] = []

    def factory() -> DeviceModule:
        module = DeviceModule(DeviceServices(store, bus, Jobs(store, bus), settings, rng=random.Random(5)), registry)
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
