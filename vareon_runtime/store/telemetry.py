"""The ``telemetry`` table: one row per sample (a metric's value at a moment, from a source).

Seed 000's shape (``timestamp``, ``metric_name``, ``value``, and the context it came from) so
that the Neosyntis telemetry API can aggregate it; Myntrix devices fill it through the
:class:`~actors.myntrix.devices.recorder.TelemetryRecorder`, agents and ``/telemetry/ingest`` can
add their own ``source`` later without a new table.

It is a kernel table (on the kernel's migration branch, ``0003_telemetry``) rather than a domain's,
because several domains write it and one reads it. There is no foreign key to ``devices``: the
history of a deleted device is kept until it ages out (``telemetry_keep_days``), and a cascade
over millions of rows would stall the single writer.

Rows are written with Core ``insert()`` in batches (``executemany``), never as ORM objects: at
tens of thousands of samples a second, the unit of work would cost more than the database.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, Float, Index, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from vareon_runtime.store.models import Base, UTCDateTime

__all__ = ["TelemetryRecord"]


class TelemetryRecord(Base):
    """One sample: ``metric_name`` was ``value`` at ``timestamp``, reported by ``source``."""

    __tablename__ = "telemetry"
    __table_args__ = (
        # A device's series of one metric over a range: the dashboard's charts and Neosyntis.
        Index("ix_telemetry_device_id_metric_name_timestamp", "device_id", "metric_name", "timestamp"),
        # Ranges over every source, and the pruning of old rows.
        Index("ix_telemetry_timestamp", "timestamp"),
    )

    # 64-bit on PostgreSQL: at 20,000 samples a second a 32-bit id runs out in about 30 hours.
    # SQLite's rowid is already 64-bit and only an INTEGER PRIMARY KEY aliases it.
    id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer(), "sqlite"), primary_key=True, autoincrement=True
    )
    timestamp: Mapped[datetime] = mapped_column(UTCDateTime())
    # What reported it: "device" (Myntrix devices), later "agent", "ingest", ...
    source: Mapped[str] = mapped_column(String(32))
    device_id: Mapped[str | None] = mapped_column(String(36), nullable=True)
    metric_name: Mapped[str] = mapped_column(String(255))
    value: Mapped[float] = mapped_column(Float())

    def __repr__(self) -> str:
        return (
            f"TelemetryRecord(id={self.id!r}, device_id={self.device_id!r}, "
            f"metric_name={self.metric_name!r}, value={self.value!r})"
        )
