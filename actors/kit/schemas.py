"""Wire shapes of jobs (seed 001: camelCase, statuses ``pending, running, completed, failed``,
plus ``cancelled``)."""

from __future__ import annotations

from typing import Any

from pydantic import ConfigDict, Field

from .states import RunState, Words
from .wire import CamelModel, Timestamp

__all__ = ["JOB_WORDS", "Job", "JobStatus"]


JOB_WORDS = Words(
    "JobStatus",
    {
        RunState.PENDING: "pending",
        RunState.RUNNING: "running",
        RunState.SUCCEEDED: "completed",
        RunState.FAILED: "failed",
        RunState.TIMEOUT: "failed",
        RunState.CANCELLED: "cancelled",
    },
    module=__name__,
)
"""Jobs' words for the run states (seed 001's, and ``cancelled``; a run that timed out is a
failed job)."""

JobStatus = JOB_WORDS.enum
"""Where a job is: ``pending``, ``running``, ``completed``, ``failed``, ``cancelled``."""


class Job(CamelModel):
    """One job as ``GET /api/myntrix/jobs`` shows it."""

    model_config = ConfigDict(frozen=True)

    id: str
    name: str
    type: str = Field(description="What reported it, such as agent.start.")
    status: JobStatus
    progress: int = Field(ge=0, le=100)
    created_at: Timestamp
    updated_at: Timestamp
    logs: str | None = Field(description="Lines the job noted, newline-separated.")
    details: dict[str, Any] | None
