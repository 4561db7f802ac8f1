"""``SeenBoard``: when each device last sent anything, exactly."""

from __future__ import annotations

from datetime import datetime

__all__ = ["SeenBoard"]


class SeenBoard:
    """When each device last sent anything, exactly (its row lags by up to ``seen_interval``).

    The module's device actors write it on every read; the
    :class:`~actors.myntrix.devices.devices.Devices` face reads it over the rows it answers.
    """

    def __init__(self) -> None:
        self._seen: dict[str, datetime] = {}

    def note(self, device_id: str, moment: datetime) -> None:
        self._seen[device_id] = moment

    def get(self, device_id: str) -> datetime | None:
        return self._seen.get(device_id)

    def forget(self, device_id: str) -> None:
        self._seen.pop(device_id, None)
