"""The scheduler as a runtime component (entry point ``vareon.components: scheduler``)."""

from __future__ import annotations

from vareon_runtime.actor import Actor
from vareon_runtime.component import Component, RuntimeContext
from vareon_runtime.supervisor import ChildSpec

__all__ = ["SCHEDULER_NAME", "Scheduler", "scheduler_component"]

SCHEDULER_NAME = "scheduler"


class Scheduler(Actor):
    """The cron scheduler (being built: issue 6)."""


def scheduler_component(ctx: RuntimeContext) -> Component:
    return Component(spec=ChildSpec(SCHEDULER_NAME, Scheduler), order=20)
