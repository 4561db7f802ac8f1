"""Messages of a note's actor (``note/<uuid>``)."""

from __future__ import annotations

from vareon_runtime.messages import Message

__all__ = ["ForgetNote", "ViewNote"]


class ViewNote(Message):
    """Count one view; answers the views so far."""


class ForgetNote(Message):
    """The note is being deleted or changed: let go."""
