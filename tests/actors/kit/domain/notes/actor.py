"""``NoteActor``: one note's actor, counting its views (in memory, as a live thing would)."""

from __future__ import annotations

from vareon_runtime.actor import Actor, handles

from .messages import ForgetNote, ViewNote

__all__ = ["NoteActor"]


class NoteActor(Actor):
    """The actor of one note."""

    def __init__(self, note_id: str) -> None:
        super().__init__()
        self.note_id = note_id
        self.views = 0

    @handles(ViewNote)
    async def view(self, msg: ViewNote) -> int:
        self.views += 1
        return self.views

    @handles(ForgetNote)
    async def forget(self, msg: ForgetNote) -> None:
        self.views = 0
