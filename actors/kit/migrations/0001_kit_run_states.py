"""Kit: jobs keep the kit's run states (a job that went well is ``succeeded``; the wire still says
``completed``, seed 001's word)."""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

# The jobs table was created on the myntrix branch, before the kit existed.
revision, down_revision = "0001_kit_run_states", None
branch_labels, depends_on = ("kit",), "0002_myntrix_jobs"

_jobs = sa.table("jobs", sa.column("status", sa.String))


def upgrade() -> None:
    op.execute(_jobs.update().where(_jobs.c.status == "completed").values(status="succeeded"))


def downgrade() -> None:
    op.execute(_jobs.update().where(_jobs.c.status == "cancelled").values(status="failed"))
    op.execute(_jobs.update().where(_jobs.c.status == "succeeded").values(status="completed"))
