"""``Notes``: the notes domain's face, a :class:`~actors.kit.resources.Resources` with an actor
per note."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from actors.kit.parsing import parse_model
from actors.kit.resources import EntityActors, Filter, Resources
from vareon_runtime.auth import Principal
from vareon_runtime.bus import EventBus
from vareon_runtime.clock import utcnow
from vareon_runtime.errors import InvalidRequestError
from vareon_runtime.store import Store
from vareon_runtime.supervisor import Supervisor

from .actor import NoteActor
from .messages import ForgetNote, ViewNote
from .models import NoteRecord
from .schemas import Note, NoteCreate, NoteUpdate

__all__ = ["Notes"]


class Notes(Resources[Note]):
    """The notes of one runtime."""

    noun = "note"
    title = "notes module"
    record = NoteRecord
    item = Note
    filters = {"pinned": Filter(NoteRecord.pinned)}

    def __init__(self, store: Store, bus: EventBus, supervisor: Supervisor, *, max_length: int) -> None:
        super().__init__(store, bus)
        self.max_length = max_length
        self.actors = EntityActors(supervisor, "note", NoteActor, self.locks)

    def _check(self, body: str | None) -> None:
        if body is not None and len(body) > self.max_length:
            raise InvalidRequestError(
                f"body must be at most {self.max_length} characters, not {len(body)} ([notes] max_length)",
                details={"field": "body"},
            )

    async def create(self, data: NoteCreate | Mapping[str, Any], by: Principal | None = None) -> Note:
        request = parse_model(NoteCreate, data)
        self._check(request.body)
        note_id, now = self.new_id(), utcnow()
        await self.insert({**request.model_dump(), "id": note_id, "created_at": now, "updated_at": now})
        await self.actors.start(note_id)
        return self.announce("created", await self.get(note_id))

    async def update(self, note_id: str, data: NoteUpdate | Mapping[str, Any], by: Principal | None = None) -> Note:
        request = parse_model(NoteUpdate, data)
        self._check(request.body)
        async with self.locked(note_id) as note_id:
            await self.get(note_id)
            await self.change(note_id, {**request.model_dump(exclude_none=True), "updated_at": utcnow()})
            return self.announce("updated", await self.get(note_id))

    async def delete(self, note_id: str, by: Principal | None = None) -> None:
        async with self.locked(note_id) as note_id:
            await self.get(note_id)
            await self.actors.release(note_id, ForgetNote(), timeout=5)
            await self.remove(note_id)
        self.announce_deleted(note_id)

    async def view(self, note_id: str) -> Note:
        """The note, its views counted by its actor."""
        note = await self.get(note_id)
        views: int = await self.actors.ask(note.id, ViewNote(), timeout=5)
        return note.model_copy(update={"views": views})

    async def boot(self) -> None:
        await self.actors.boot(await self.ids())
