"""``DeviceRow``: what a device's actor writes to its row in ``devices``, and the status events
that follow the writes."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import update
from sqlalchemy.orm import Session

from vareon_runtime.bus import EventBus
from vareon_runtime.store import Store

from .models import DeviceRecord
from .schemas import Device, DeviceDesiredState, DeviceStatus

__all__ = ["DeviceRow"]


class DeviceRow:
    """A device's row as its actor keeps it: the observed state in one UPDATE, published on the
    status topic when it changed; ``lastSeen`` alone, as often as the actor asks.

    Args:
        device_id: the device.
        store: where the row is.
        bus: where status changes are published.
        topic: the device's status topic.
    """

    def __init__(self, device_id: str, store: Store, bus: EventBus, topic: str) -> None:
        self.device_id = device_id
        self.dirty = False  # the last save failed: the state is to be written again
        self._store = store
        self._bus = bus
        self._topic = topic
        self._saved_seen: datetime | None = None
        self._published: tuple[str, str | None, str | None] | None = None

    def loaded(self, device: Device) -> None:
        """Start from the row as loaded: what it holds is written, and was published."""
        self._saved_seen = device.last_seen
        self._published = (device.status.value, device.last_error, device.firmware_version)

    async def save(
        self,
        *,
        status: DeviceStatus,
        desired: DeviceDesiredState,
        last_seen: datetime | None,
        firmware_version: str | None,
        last_error: str | None,
        updated_at: datetime,
    ) -> None:
        """Write the observed state, then publish it if it changed.

        Raises:
            StoreError: the write failed (the state is published all the same, and :attr:`dirty`
                says it is to be written again).
        """
        values = {
            "status": status.value,
            "desired_state": desired.value,
            "last_seen": last_seen,
            "firmware_version": firmware_version,
            "last_error": last_error,
            "updated_at": updated_at,
        }
        device_id = self.device_id

        def save(session: Session) -> None:
            session.execute(update(DeviceRecord).where(DeviceRecord.id == device_id).values(**values))

        try:
            await self._store.write(save)
        except BaseException:
            self.dirty = True
            raise
        else:
            self.dirty = False
            self._saved_seen = last_seen
        finally:
            # Published even if the write failed: the transition happened all the same.
            state = (status.value, last_error, firmware_version)
            if state != self._published:
                self._published = state
                self._bus.publish(
                    self._topic,
                    {
                        "id": device_id,
                        "status": status.value,
                        "lastSeen": last_seen,
                        "lastError": last_error,
                        "firmwareVersion": firmware_version,
                    },
                )

    async def save_seen(self, seen: datetime | None) -> None:
        """Write ``lastSeen`` alone, if it moved since it was last written.

        Raises:
            StoreError: the write failed.
        """
        if seen is None or seen == self._saved_seen:
            return
        device_id = self.device_id

        def save(session: Session) -> None:
            session.execute(update(DeviceRecord).where(DeviceRecord.id == device_id).values(last_seen=seen))

        await self._store.write(save)
        self._saved_seen = seen
