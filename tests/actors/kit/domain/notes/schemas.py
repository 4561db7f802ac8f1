"""Wire shapes of notes (snake_case, as the newer domains' seeds)."""

from __future__ import annotations

from pydantic import ConfigDict, Field

from actors.kit.wire import SnakeModel, Timestamp

__all__ = ["Note", "NoteCreate", "NoteUpdate"]


class NoteCreate(SnakeModel):
    """``POST /api/notes``."""

    title: str = Field(min_length=1, max_length=255)
    body: str = ""
    pinned: bool = False


class NoteUpdate(SnakeModel):
    """``PUT /api/notes/{id}``: the fields given are changed."""

    title: str | None = Field(None, min_length=1, max_length=255)
    body: str | None = None
    pinned: bool | None = None


class Note(SnakeModel):
    """One note as the API shows it."""

    model_config = ConfigDict(frozen=True)

    id: str
    title: str
    body: str
    pinned: bool
    views: int = 0
    created_at: Timestamp
    updated_at: Timestamp
