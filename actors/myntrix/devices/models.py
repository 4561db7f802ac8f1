"""The ``devices`` table.

It lives on the kernel's :class:`~vareon_runtime.store.Base`; its migration is the revision
``0001_devices`` on the ``devices`` branch (``actors/myntrix/devices/migrations``).

A row holds what the user configured (``name``, ``type``, ``connection_string``,
``configuration``, ``desired_state``) beside what the device's actor observed (``status``,
``last_seen``, ``firmware_version``, ``last_error``). Only the device's own actor writes the
observed columns and ``desired_state``; the :class:`~actors.myntrix.devices.devices.Devices` face
writes the configured ones. ``connection_string`` is kept as the user wrote it, password
included (the runtime needs it to connect); it leaves the process only through
:class:`~actors.myntrix.devices.schemas.Device`, masked.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Index, String, Text
from sqlalchemy.orm import Mapped, Session, mapped_column

from vareon_runtime.clock import utcnow
from vareon_runtime.store.models import Base, UTCDateTime

from .schemas import Device

__all__ = ["DeviceRecord", "load_device", "read_device"]


class DeviceRecord(Base):
    """One device: something the runtime talks to over a serial port, TCP or MQTT."""

    __tablename__ = "devices"
    __table_args__ = (Index("ix_devices_status", "status"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    name: Mapped[str] = mapped_column(String(255))
    type: Mapped[str] = mapped_column(String(64), default="generic")
    # As the user wrote it, password included; masked whenever it is shown.
    connection_string: Mapped[str] = mapped_column(Text)
    # disconnected | connecting | connected | error
    status: Mapped[str] = mapped_column(String(16), default="disconnected")
    # connected | disconnected: what the user asked for; survives runtime restarts.
    desired_state: Mapped[str] = mapped_column(String(16), default="disconnected")
    # Written at most about once a second while data flows, and with every status change.
    last_seen: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    firmware_version: Mapped[str | None] = mapped_column(String(255), nullable=True)
    # A DeviceConfiguration, camelCase keys (its wire form).
    configuration: Mapped[dict[str, Any]] = mapped_column(JSON)
    last_error: Mapped[str | None] = mapped_column(Text, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, onupdate=utcnow)

    def __repr__(self) -> str:
        return f"DeviceRecord(id={self.id!r}, name={self.name!r}, status={self.status!r})"


def read_device(device_id: str) -> Callable[[Session], Device | None]:
    """A store read returning the device's wire shape (None when there is no such row)."""

    def read(session: Session) -> Device | None:
        row = session.get(DeviceRecord, device_id)
        return Device.model_validate(row) if row is not None else None

    return read


def load_device(device_id: str) -> Callable[[Session], tuple[Device, str] | None]:
    """A store read returning the device and its connection string in clear, for its actor only."""

    def load(session: Session) -> tuple[Device, str] | None:
        row = session.get(DeviceRecord, device_id)
        return (Device.model_validate(row), row.connection_string) if row is not None else None

    return load
