"""The devices module as a runtime component (entry point ``vareon.components: devices``).

:class:`DeviceModule` is the ``devices`` child of the root supervisor, so the registry holds it as
``devices``: asked :class:`~actors.myntrix.devices.messages.GetDevices`, it answers the
:class:`~actors.myntrix.devices.devices.Devices` face (see :func:`devices_of`).

Starting, it runs the telemetry recorder (samples from the bus into the ``telemetry`` table)
and the visualization feed (the 3D scene on the bus topic ``visualization`` when agents or devices
change), then the ``devices`` supervisor (one_for_one, no supervisor-wide restart limit, each device its
own child ``device/<uuid>`` with a per-child limit), then starts an actor per device; each opens
its link when its desired state is connected. Stopping, the supervisor stops the actors in
reverse order (each closes its link; desired states are kept, so the devices come back connected
with the runtime), and the recorder writes what it still holds.
"""

from __future__ import annotations

import logging
import random

import trio

from vareon_runtime.actor import Actor, handles
from vareon_runtime.bus import EventBus
from vareon_runtime.component import Component, RuntimeContext
from vareon_runtime.registry import Registry
from vareon_runtime.store import Store
from vareon_runtime.supervisor import Backoff, ChildSpec, Supervisor

from ..jobs import Jobs
from ..visualization import VisualizationFeed
from .devices import Devices
from .messages import GetDevices
from .recorder import TelemetryRecorder
from .seen import SeenBoard
from .settings import DeviceSettings

__all__ = ["DEVICES_NAME", "DEVICES_ORDER", "DeviceModule", "devices_component", "devices_of"]

log = logging.getLogger("vareon.devices")

DEVICES_NAME = "devices"
"""The module's child name under the root supervisor, and so its registry name."""

DEVICES_ORDER = 11
"""Right after the Myntrix agents module (10); the web front (1000) starts last and stops first."""


class DeviceModule(Actor):
    """The devices module: the recorder, the visualization feed, the devices supervisor, the
    :class:`Devices` face.

    Args:
        store, bus, registry: the runtime's (device actors register as ``device/<uuid>``).
        settings: the module's tunables.
        rng: randomness for backoff jitter (tests pass a seeded one).
    """

    def __init__(
        self,
        store: Store,
        bus: EventBus,
        registry: Registry,
        *,
        settings: DeviceSettings | None = None,
        rng: random.Random | None = None,
    ) -> None:
        super().__init__()
        self.settings = settings or DeviceSettings()
        self.registry = registry
        self.supervisor = Supervisor(
            "devices",
            max_restarts=None,  # devices are user-made: each actor carries its own limit
            registry=registry,
            bus=bus,
            backoff=Backoff(0.1, 5.0),
            shutdown_timeout=self.settings.shutdown_timeout,
            rng=rng,
        )
        self.seen = SeenBoard()
        self.devices = Devices(
            store, self.supervisor, bus, jobs=Jobs(store, bus), settings=self.settings, seen=self.seen, rng=rng
        )
        self.recorder = TelemetryRecorder(
            store,
            bus,
            flush_interval=self.settings.telemetry_flush_interval,
            keep_days=self.settings.telemetry_keep_days,
        )
        self.feed = VisualizationFeed(store, bus)

    async def on_start(self) -> None:
        # The recorder and the feed first, so the devices' first samples and statuses count.
        await self.nursery.start(self.recorder.run)
        await self.nursery.start(self.feed.run)
        await self.nursery.start(self._supervise)
        await self.devices.boot()
        log.info("devices: %d devices", len(self.supervisor.which_children()))

    @handles(GetDevices)
    async def get_devices(self, msg: GetDevices) -> Devices:
        return self.devices

    async def _supervise(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Run the devices supervisor until this actor is cancelled (it bounds its own shutdown)."""
        supervisor = self.supervisor
        try:
            await supervisor.run(task_status=task_status)
        finally:
            # The next incarnation registers the same names.
            for child in supervisor.which_children():
                if child.name in self.registry:
                    self.registry.unregister(child.name)


async def devices_of(registry: Registry, *, timeout: float = 5.0) -> Devices:
    """The :class:`Devices` face of the runtime whose registry this is.

    Raises:
        NotRegisteredError: the devices module is not running (not installed, or disabled).
    """
    devices: Devices = await registry.lookup(DEVICES_NAME).ask(GetDevices(), timeout=timeout)
    return devices


def devices_component(ctx: RuntimeContext) -> Component:
    """The ``devices`` child of the root supervisor, tuned by ``[myntrix]``."""
    configured = ctx.config.myntrix
    settings = DeviceSettings(
        command_timeout=configured.device_command_timeout,
        reconnect_max=configured.device_reconnect_max,
        reconnect_initial=min(DeviceSettings.reconnect_initial, configured.device_reconnect_max),
        telemetry_flush_interval=configured.telemetry_flush_interval,
        telemetry_keep_days=configured.telemetry_keep_days,
    )

    def factory() -> DeviceModule:
        return DeviceModule(ctx.store, ctx.bus, ctx.registry, settings=settings)

    return Component(spec=ChildSpec(DEVICES_NAME, factory, shutdown=settings.shutdown_timeout), order=DEVICES_ORDER)
