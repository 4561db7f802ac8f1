"""The kit as a runtime component (entry point ``vareon.components: jobs``): the ``jobs`` module,
a :class:`~actors.kit.module.ServiceModule` providing the :class:`~actors.kit.jobs.Jobs` face
every domain reports into and ``/api/myntrix/jobs`` lists, and the kit's migrations (branch
``kit``).

It starts first (order 5), so the jobs of the domains' recovery at boot have their face, and
stops last."""

from __future__ import annotations

from vareon_runtime.component import Component, RuntimeContext
from vareon_runtime.supervisor import ChildSpec

from .jobs import Jobs
from .module import ServiceModule

__all__ = ["JOBS_NAME", "component"]

JOBS_NAME = "jobs"


def _build(ctx: RuntimeContext) -> ChildSpec:
    jobs = Jobs(ctx.store, ctx.bus)
    return ChildSpec(JOBS_NAME, lambda: ServiceModule(ctx.registry, jobs))


component = Component(name=JOBS_NAME, build=_build, order=5, migrations="actors.kit.migrations")
"""The ``jobs`` component."""
