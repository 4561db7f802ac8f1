"""Jobs over HTTP (seed 001): `GET /api/myntrix/jobs`, every domain's runs and lifecycle actions
with their progress, newest first."""

from __future__ import annotations

from pydantic import Field
from quart import Blueprint
from quart_schema import validate_querystring, validate_response

from actors.kit.jobs import Jobs
from actors.kit.schemas import Job, JobStatus
from vareon_runtime.auth import Role

from .kit import PageQuery, face, page_reply
from .permissions import requires

__all__ = ["JobListQuery", "blueprint"]

blueprint = Blueprint("jobs", __name__)


class JobListQuery(PageQuery):
    """`GET /api/myntrix/jobs` query."""

    status: JobStatus | None = Field(None, description="Only jobs in this status.")
    type: str | None = Field(None, max_length=64, description="Only jobs of this type, such as agent.start.")


@blueprint.get("/api/myntrix/jobs")
@requires(Role.VIEWER)
@validate_querystring(JobListQuery)
@validate_response(list[Job])
async def list_jobs(query_args: JobListQuery) -> tuple[list[Job], int, dict[str, str]]:
    """Running, pending and recent jobs with their progress, newest first; the total in
    `X-Total-Count`."""
    return page_reply(await face(Jobs).list(**query_args.model_dump()))
