"""The notes module as a runtime component (entry point ``vareon.components: notes``)."""

from __future__ import annotations

from actors.kit.module import DomainModule, entity_supervisor
from vareon_runtime.component import Component, RuntimeContext
from vareon_runtime.supervisor import ChildSpec

from .config import SECTION, NotesConfig
from .service import Notes

__all__ = ["NotesModule", "component"]


class NotesModule(DomainModule):
    """The notes supervisor (an actor per note) and the :class:`Notes` face."""

    def __init__(self, ctx: RuntimeContext) -> None:
        supervisor = entity_supervisor("notes", ctx.registry, ctx.bus, shutdown_timeout=10.0)
        self.notes = Notes(ctx.store, ctx.bus, supervisor, max_length=ctx.config.section(NotesConfig).max_length)
        super().__init__(ctx.registry, supervisor, self.notes, shutdown_timeout=10.0)

    async def boot(self) -> None:
        await self.notes.boot()


component = Component(
    name="notes",
    build=lambda ctx: ChildSpec("notes", lambda: NotesModule(ctx)),
    order=50,
    config=SECTION,
    migrations="notes.migrations",
)
