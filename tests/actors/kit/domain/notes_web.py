"""The notes domain over HTTP: its resource routes, and viewing a note (its actor counts)."""

from __future__ import annotations

from pydantic import Field
from quart import Blueprint
from quart_schema import validate_response

from notes.schemas import Note, NoteCreate, NoteUpdate
from notes.service import Notes
from vareon_runtime.auth import Role
from web.kit import PageQuery, ResourceDocs, face, resource_routes
from web.permissions import requires

blueprint = Blueprint("notes", __name__)


class NoteListQuery(PageQuery):
    """`GET /api/notes` query."""

    pinned: bool | None = Field(None, description="Only pinned (true) or unpinned (false) notes.")


resource_routes(
    blueprint,
    "/api/notes",
    Notes,
    item=Note,
    query=NoteListQuery,
    create=NoteCreate,
    update=NoteUpdate,
    read=Role.VIEWER,
    write=Role.OPERATOR,
    docs=ResourceDocs(list="Notes.", create="Add a note.", get="One note.", update="Change a note.", delete="Remove a note."),
)


@blueprint.post("/api/notes/<note_id>/view")
@requires(Role.VIEWER)
@validate_response(Note)
async def view_note(note_id: str) -> Note:
    """The note, its views counted by its actor."""
    return await face(Notes).view(note_id)
