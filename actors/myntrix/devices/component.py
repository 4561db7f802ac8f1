"""The devices module as a runtime component (entry point ``vareon.components: devices``).

:class:`DeviceModule` is the ``devices`` child of the root supervisor, a
:class:`~actors.kit.module.DomainModule` providing the :class:`~actors.myntrix.devices.Devices`
face.

Starting, it runs the telemetry recorder (samples from the bus into the ``telemetry`` table),
then the ``devices`` supervisor (one_for_one, no supervisor-wide restart limit, each device its
own child ``device/<uuid>`` with a per-child limit), then starts an actor per device; each opens
its link when its desired state is connected. Stopping, the supervisor stops the actors in
reverse order (each closes its link; desired states are kept, so the devices come back connected
with the runtime), and the recorder writes what it still holds.
"""

from __future__ import annotations

import logging

from actors.kit.jobs import Jobs
from actors.kit.module import DomainModule, entity_supervisor
from vareon_runtime.component import Component, RuntimeContext
from vareon_runtime.registry import Registry
from vareon_runtime.supervisor import ChildSpec

from ..config import SECTION, MyntrixConfig
from .actor import DeviceServices
from .recorder import TelemetryRecorder
from .service import Devices
from .settings import DeviceSettings

__all__ = ["DEVICES_NAME", "DeviceModule", "component"]

log = logging.getLogger("vareon.devices")

DEVICES_NAME = "devices"
"""The module's child name under the root supervisor, and so its registry name."""


class DeviceModule(DomainModule):
    """The devices module: the telemetry recorder, the devices supervisor, the :class:`Devices` face.

    Args:
        services: what the module's devices share.
        registry: the runtime's (device actors register as ``device/<uuid>``).
    """

    def __init__(self, services: DeviceServices, registry: Registry) -> None:
        settings = services.settings
        supervisor = entity_supervisor(
            "devices", registry, services.bus, shutdown_timeout=settings.shutdown_timeout, rng=services.rng
        )
        self.seen = services.seen
        self.devices = Devices(services, supervisor)
        self.recorder = TelemetryRecorder(
            services.store,
            services.bus,
            flush_interval=settings.telemetry_flush_interval,
            keep_days=settings.telemetry_keep_days,
        )
        super().__init__(registry, supervisor, self.devices, shutdown_timeout=settings.shutdown_timeout)

    async def start_services(self) -> None:
        # The recorder first, so the devices' first samples count.
        await self.nursery.start(self.recorder.run)

    async def boot(self) -> None:
        await self.devices.boot()
        log.info("devices: %d devices", len(self.supervisor.which_children()))


def _build(ctx: RuntimeContext) -> ChildSpec:
    configured = ctx.config.section(MyntrixConfig)
    settings = DeviceSettings(
        command_timeout=configured.device_command_timeout,
        reconnect_max=configured.device_reconnect_max,
        reconnect_initial=min(DeviceSettings.reconnect_initial, configured.device_reconnect_max),
        telemetry_flush_interval=configured.telemetry_flush_interval,
        telemetry_keep_days=configured.telemetry_keep_days,
        uploads=ctx.config.data_dir_path / "uploads",
    )

    def factory() -> DeviceModule:
        return DeviceModule(DeviceServices(ctx.store, ctx.bus, Jobs(ctx.store, ctx.bus), settings), ctx.registry)

    return ChildSpec(DEVICES_NAME, factory, shutdown=settings.shutdown_timeout)


component = Component(
    name=DEVICES_NAME, build=_build, order=11, config=SECTION, migrations="actors.myntrix.devices.migrations"
)
"""The ``devices`` component."""
