"""Telemetry samples: the ``telemetry`` table."""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision, down_revision = "0003_telemetry", "0002_auth"
branch_labels, depends_on = None, None


def upgrade() -> None:
    op.create_table(
        "telemetry",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("timestamp", sa.DateTime(timezone=True), nullable=False),
        sa.Column("source", sa.String(length=32), nullable=False),
        sa.Column("device_id", sa.String(length=36), nullable=True),
        sa.Column("metric_name", sa.String(length=255), nullable=False),
        sa.Column("value", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_telemetry")),
    )
    op.create_index(
        "ix_telemetry_device_id_metric_name_timestamp",
        "telemetry",
        ["device_id", "metric_name", "timestamp"],
    )
    op.create_index("ix_telemetry_timestamp", "telemetry", ["timestamp"])


def downgrade() -> None:
    op.drop_index("ix_telemetry_timestamp", table_name="telemetry")
    op.drop_index("ix_telemetry_device_id_metric_name_timestamp", table_name="telemetry")
    op.drop_table("telemetry")
