"""Messages of the device actors.

To a device's actor (``device/<uuid>`` in the registry), from the
:class:`~actors.myntrix.devices.devices.Devices` face or anyone holding its ref:

- :class:`ConnectDevice`, :class:`DisconnectDevice`: change the desired state, persist it, and
  answer the :class:`~actors.myntrix.devices.schemas.Device` (a connect answers at once; the link
  opens in the actor's background, watch ``device.<id>.status``).
- :class:`ReleaseDevice`: close the link but keep the desired state (before the device is
  deleted or reconfigured; the next actor opens it again).
- :class:`SendCommand`: queue a command; answers a :class:`~actors.myntrix.devices.commands.CommandTicket`
  the caller awaits, so the actor's mailbox is never held up by a slow device.
- :class:`UploadFile`, :class:`CancelUpload`: run or cancel an upload job.
- :class:`GetDeviceState`: the device as its actor sees it this instant; :class:`RenameDevice`.
"""

from __future__ import annotations

from pydantic import Field

from vareon_runtime.messages import Message

from .schemas import MAX_COMMAND

__all__ = [
    "CancelUpload",
    "ConnectDevice",
    "DisconnectDevice",
    "GetDeviceState",
    "ReleaseDevice",
    "RenameDevice",
    "SendCommand",
    "UploadFile",
]


class ConnectDevice(Message):
    """Desired state becomes connected: open the link (again, if it is in error), keep it open."""


class DisconnectDevice(Message):
    """Desired state becomes disconnected: close the link and stop reconnecting.

    Refused (409) while an upload runs: cancel it first.
    """


class ReleaseDevice(Message):
    """Close the link but keep the desired state (the device is deleted or reconfigured).

    ``force``: a running upload is cancelled with ``reason``; otherwise it is refused (409).
    """

    reason: str
    force: bool = False


class RenameDevice(Message):
    """The device's name or type changed in the database; show the new ones."""

    name: str
    type: str


class GetDeviceState(Message):
    """Answer the device as it is now (:class:`~actors.myntrix.devices.schemas.Device`)."""


class SendCommand(Message):
    """Queue ``command`` (without its terminator); ``timeout`` seconds for the reply, else the
    device's configured one, else the runtime's."""

    command: str = Field(min_length=1, max_length=MAX_COMMAND)
    timeout: float | None = Field(None, gt=0)


class UploadFile(Message):
    """Send the file at ``path`` to the device as the job ``job_id`` (already recorded, pending)."""

    path: str
    filename: str
    job_id: str


class CancelUpload(Message):
    """Cancel the running upload; its job fails with "cancelled by <by>". Answers the job's id."""

    by: str
