"""``[notes]``: the notes domain's section of ``config.toml``."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from vareon_runtime.component import ConfigSection

__all__ = ["SECTION", "NotesConfig"]


class NotesConfig(BaseModel):
    """``[notes]``: how long a note may be."""

    model_config = ConfigDict(extra="forbid")

    max_length: int = Field(1000, ge=1, description="Characters a note's body may hold.")


SECTION = ConfigSection("notes", NotesConfig, "Notes (a test domain).")
