"""Myntrix devices: the ``devices`` table."""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

# After the kernel's branch, like the myntrix branch, so the kernel's head stays a head.
revision, down_revision = "0001_devices", None
branch_labels, depends_on = ("devices",), "kernel"


def upgrade() -> None:
    op.create_table(
        "devices",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("name", sa.String(length=255), nullable=False),
        sa.Column("type", sa.String(length=64), nullable=False),
        sa.Column("connection_string", sa.Text(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("desired_state", sa.String(length=16), nullable=False),
        sa.Column("last_seen", sa.DateTime(timezone=True), nullable=True),
        sa.Column("firmware_version", sa.String(length=255), nullable=True),
        sa.Column("configuration", sa.JSON(), nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_devices")),
    )
    op.create_index("ix_devices_status", "devices", ["status"])


def downgrade() -> None:
    op.drop_index("ix_devices_status", table_name="devices")
    op.drop_table("devices")
