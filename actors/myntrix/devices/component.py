"""The devices module as a runtime component (entry point ``vareon.components: devices``)."""

from __future__ import annotations

from vareon_runtime.actor import Actor
from vareon_runtime.component import Component, RuntimeContext
from vareon_runtime.supervisor import ChildSpec

__all__ = ["DEVICES_NAME", "Devices", "devices_component"]

DEVICES_NAME = "devices"


class Devices(Actor):
    """The devices module (being built: the device actors arrive with issue 5)."""


def devices_component(ctx: RuntimeContext) -> Component:
    return Component(spec=ChildSpec(DEVICES_NAME, Devices), order=11)
