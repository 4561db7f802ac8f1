"""``Devices``: the Myntrix devices domain as the web front (and tests) use it.

Each method is safe to call from many tasks at once. Reads (``get``, ``list``) come from the
``devices`` table, which every device actor updates at each status change, with ``lastSeen``
taken from the module's :class:`~actors.myntrix.devices.seen.SeenBoard` (exact; the row lags
by up to a second while data flows). Connection requests and commands are messages to the
device's actor. ``create``, ``update`` and ``delete`` write the row and add, replace or remove
the actor under the module's ``devices`` supervisor.

Refusals are the kernel's ``ServiceError`` subclasses, which the web front maps to HTTP:
``NotFoundError`` (404) for an unknown id; ``InvalidRequestError`` (422) for invalid fields or a
connection string no driver takes (the message names the known schemes); ``ConflictError``
(409) for a command to a device that is not connected or is uploading, a connect of a connected
device, a disconnect of a disconnected one; ``UpstreamTimeoutError`` (504) for a reply that did
not complete in time, with the lines received so far; ``UnavailableError`` (503) when the link
drops mid-reply or the device's actor is not answering.

Uploads are jobs (type ``device.upload`` in ``jobs``): :meth:`Devices.upload` records the job,
the device's actor sends the file and reports progress into it, and ends it: succeeded, failed,
or cancelled (by whom).

A :class:`~actors.kit.resources.Resources` of the ``devices`` table, with an actor per device
(:class:`~actors.kit.resources.EntityActors`, ``device/<uuid>``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import trio
from sqlalchemy import select
from sqlalchemy.orm import Session

from actors.kit.parsing import parse_model
from actors.kit.resources import EntityActors, Filter, Resources
from actors.kit.schemas import Job
from actors.kit.states import RunState
from drivers.link import mask_connection_string, parse_connection_string
from vareon_runtime.auth import Principal
from vareon_runtime.bus import Overflow
from vareon_runtime.clock import utcnow
from vareon_runtime.errors import ConflictError, NotFoundError, VareonError
from vareon_runtime.supervisor import Supervisor

from .actor import DeviceActor, DeviceServices, status_topic
from .commands import CommandTicket
from .messages import (
    CancelUpload,
    ConnectDevice,
    DisconnectDevice,
    ReleaseDevice,
    RenameDevice,
    SendCommand,
    UploadFile,
)
from .models import DeviceRecord
from .schemas import (
    CommandReply,
    Device,
    DeviceCreate,
    DeviceDesiredState,
    DeviceStatus,
    DeviceStatusReport,
    DeviceUpdate,
)
from .upload_job import sweep_uploads

__all__ = ["UPLOAD_JOB_TYPE", "Devices"]

log = logging.getLogger("vareon.devices")

UPLOAD_JOB_TYPE = "device.upload"
_ASK = 5.0  # seconds for requests that do not wait on the device


def _check_connection_string(raw: str) -> None:
    """Refuse a connection string no driver takes, without opening anything (422, naming why)."""
    parse_connection_string(raw)  # LinkConfigError / UnknownSchemeError are InvalidRequestErrors


class Devices(Resources[Device]):
    """The devices of one runtime.

    Args:
        services: what the module's devices share (the store, the bus, the jobs, the settings...).
        supervisor: the module's ``devices`` supervisor
            (:func:`~actors.kit.module.entity_supervisor`); it registers each actor as
            ``device/<uuid>``.
    """

    noun = "device"
    title = "devices module"
    record = DeviceRecord
    item = Device
    filters = {"status": Filter(DeviceRecord.status, DeviceStatus)}

    def __init__(self, services: DeviceServices, supervisor: Supervisor) -> None:
        super().__init__(services.store, services.bus)
        self.jobs = services.jobs
        self.settings = settings = services.settings
        self.seen = services.seen
        self.actors = EntityActors(
            supervisor,
            "device",
            lambda device_id: DeviceActor(device_id, services),
            self.locks,
            shutdown=settings.command_timeout + 5.0,
            max_restarts=settings.actor_max_restarts,
            period=settings.actor_period,
        )

    def shape(self, items: list[Device]) -> list[Device]:
        """Each device with its exact ``lastSeen`` (the row lags by up to a second while data flows)."""
        return [self._live(device) for device in items]

    def _live(self, device: Device) -> Device:
        seen = self.seen.get(device.id)
        if seen is not None and (device.last_seen is None or seen > device.last_seen):
            return device.model_copy(update={"last_seen": seen})
        return device

    # ------------------------------------------------------------------ reads

    async def status_report(self, device_id: str) -> DeviceStatusReport:
        """The live part of one device (seed 002's ``/hardware/{id}/status``).

        Raises:
            NotFoundError: no device has that id.
        """
        device = await self.get(device_id)
        return DeviceStatusReport(
            id=device.id,
            status=device.status,
            connected=device.status is DeviceStatus.CONNECTED,
            last_seen=device.last_seen,
            firmware_version=device.firmware_version,
            desired_state=device.desired_state,
            last_error=device.last_error,
        )

    # ------------------------------------------------------------------ changes

    async def create(self, data: DeviceCreate | Mapping[str, Any], by: Principal | None = None) -> Device:
        """Add a device (disconnected) and its actor.

        Raises:
            InvalidRequestError: invalid fields, or a connection string no driver takes (the
                message names the known schemes).
        """
        request = parse_model(DeviceCreate, data)
        _check_connection_string(request.connection_string)
        device_id, now = self.new_id(), utcnow()
        await self.insert(
            {
                "id": device_id,
                "name": request.name,
                "type": request.type,
                "connection_string": request.connection_string,
                "status": DeviceStatus.DISCONNECTED.value,
                "desired_state": DeviceDesiredState.DISCONNECTED.value,
                "configuration": request.configuration.wire(),
                "created_at": now,
                "updated_at": now,
            }
        )
        await self.actors.start(device_id)
        log.info("device %s (%s) created: %s", device_id, request.name, mask_connection_string(request.connection_string))
        return self.announce("created", await self.get(device_id))

    async def update(self, device_id: str, data: DeviceUpdate | Mapping[str, Any], by: Principal | None = None) -> Device:
        """Change a device's name, type, connection string or configuration.

        A new connection string or configuration replaces the device's actor: an open link is
        closed and opened again with it; the desired state is kept. A connection string sent
        back exactly as the API shows it (password masked) counts as unchanged.

        Raises:
            NotFoundError: no device has that id.
            InvalidRequestError: invalid fields, or a connection string no driver takes.
            ConflictError: the link would change while an upload runs.
        """
        async with self.locked(device_id) as device_id:
            current = await self.get(device_id)
            request = parse_model(DeviceUpdate, data)
            raw = await self.store.read(_connection_string_of(current.id))
            if raw is None:
                raise NotFoundError(f"no device has the id {current.id!r}")
            connection_string = raw
            if request.connection_string is not None and request.connection_string != current.connection_string:
                _check_connection_string(request.connection_string)
                connection_string = request.connection_string
            configuration = request.configuration if request.configuration is not None else current.configuration
            name = request.name if request.name is not None else current.name
            kind = request.type if request.type is not None else current.type
            values: dict[str, Any] = {
                "name": name,
                "type": kind,
                "connection_string": connection_string,
                "configuration": configuration.wire(),
                "updated_at": utcnow(),
            }
            relink = connection_string != raw or configuration != current.configuration
            # The actor reads its link and configuration when it starts: a new one replaces it.
            return await self.rewrite(
                current.id,
                values,
                release=ReleaseDevice(reason="the device was reconfigured") if relink else None,
                release_timeout=self._slow_ask(current),
                tell=RenameDevice(name=name, type=kind) if (name, kind) != (current.name, current.type) else None,
            )

    async def delete(self, device_id: str, by: Principal | None = None) -> None:
        """Close the device's link (cancelling an upload), remove its actor and its row.

        Its upload jobs and recorded telemetry stay (they are history).

        Raises:
            NotFoundError: no device has that id.
        """
        async with self.locked(device_id) as device_id:
            current = await self.get(device_id)
            await self.actors.release(
                current.id, ReleaseDevice(reason="the device was deleted", force=True), timeout=self._slow_ask(current)
            )
            await self.remove(current.id)
            self.seen.forget(current.id)
        log.info("device %s (%s) deleted", current.id, current.name)
        self.announce_deleted(current.id)

    async def connect(self, device_id: str, *, wait: float | None = None) -> Device:
        """Connect the device and keep it connected (reconnecting after drops), also across
        runtime restarts.

        Waits until the link is open and the device identified, the connection string turns
        out not to work (``error``), or an attempt fails (``disconnected`` with ``lastError``;
        the retries go on), at most ``wait`` seconds (default ``connect_wait``); then answers
        the device as it is.

        Raises:
            NotFoundError: no device has that id.
            ConflictError: it is already connected.
        """
        current = await self.get(device_id)
        wait = self.settings.connect_wait if wait is None else wait
        with self.bus.subscribe(status_topic(current.id), queue_size=64) as subscription:
            await self.actors.ask(current.id, ConnectDevice(), timeout=_ASK)
            with trio.move_on_after(wait):
                while True:
                    item = await subscription.receive()
                    if isinstance(item, Overflow):
                        continue
                    status, error = item.data["status"], item.data["lastError"]
                    if status in (DeviceStatus.CONNECTED.value, DeviceStatus.ERROR.value) or (
                        status == DeviceStatus.DISCONNECTED.value and error is not None
                    ):
                        break
        return await self.get(current.id)

    async def disconnect(self, device_id: str) -> Device:
        """Close the device's link and stop reconnecting.

        Raises:
            NotFoundError: no device has that id.
            ConflictError: it is already disconnected, or an upload runs (cancel it first).
        """
        current = await self.get(device_id)
        await self.actors.ask(current.id, DisconnectDevice(), timeout=_ASK)
        return await self.get(current.id)

    async def command(self, device_id: str, command: str, *, timeout: float | None = None) -> CommandReply:
        """Send one command and return the device's reply.

        Commands to one device run one at a time, in arrival order; at most ``queue_max`` wait.

        Raises:
            NotFoundError: no device has that id.
            InvalidRequestError: the command is empty, too long, has line breaks, or does not fit
                the device's encoding.
            ConflictError: the device is not connected, is uploading, or has a full queue.
            UpstreamTimeoutError: the reply did not complete in time; ``details["received"]``.
            UnavailableError: the link dropped while waiting.
        """
        current = await self.get(device_id)
        message = parse_model(SendCommand, {"command": command, "timeout": timeout})
        ticket: CommandTicket = await self.actors.ask(current.id, message, timeout=_ASK)
        return await ticket.reply()

    async def upload(self, device_id: str, path: Path, filename: str, *, size: int, by: str) -> Job:
        """Send a file already saved at ``path`` to the device, as a job; answers the job at once.

        The file is the job's from then on: it is removed when the job ends (sent, failed or
        cancelled), and at the next boot if the runtime stopped first.

        Raises:
            NotFoundError: no device has that id.
            ConflictError: the device is not connected or is already uploading (the job is
                recorded as failed with the reason).
        """
        current = self.check_uploadable(await self.get(device_id))
        job = await self.jobs.create(
            f"upload {filename} to {current.name}",
            UPLOAD_JOB_TYPE,
            state=RunState.PENDING,
            log=f"uploaded by {by}",
            details={
                "deviceId": current.id,
                "filename": filename,
                "size": size,
                "mode": current.configuration.upload.mode.value,
            },
        )
        try:
            await self.actors.ask(current.id, UploadFile(path=str(path), filename=filename, job_id=job.id), timeout=_ASK)
        except BaseException as exc:
            with trio.CancelScope(shield=True):  # a refused upload still leaves its outcome
                try:
                    await self.jobs.finish(job.id, RunState.FAILED, log=f"refused: {exc}")
                except VareonError as error:
                    log.error("job %s: its refusal was not recorded: %s", job.id, error)
            raise
        return await self.jobs.get(job.id)

    @staticmethod
    def check_uploadable(device: Device) -> Device:
        """``device`` if it is connected (before an upload's body is read); the device's actor
        checks again when the upload starts.

        Raises:
            ConflictError: it is not connected.
        """
        if device.status is not DeviceStatus.CONNECTED:
            raise ConflictError(
                f"device {device.name!r} is {device.status.value}, not connected; connect it before uploading",
                details={"status": device.status.value, "lastError": device.last_error},
            )
        return device

    async def cancel_upload(self, device_id: str, *, by: str) -> Job:
        """Cancel the device's running upload; its job fails with "cancelled by <by>".

        Raises:
            NotFoundError: no device has that id.
            ConflictError: no upload is running.
        """
        current = await self.get(device_id)
        job_id: str = await self.actors.ask(current.id, CancelUpload(by=by), timeout=self._slow_ask(current))
        return await self.jobs.get(job_id)

    # ------------------------------------------------------------------ actors

    async def boot(self) -> None:
        """Start every device's actor (each connects if its desired state is connected); the
        uploads a crash interrupted are failed and their files removed."""
        await self.jobs.recover([UPLOAD_JOB_TYPE], "the runtime stopped (crash or kill) during the upload")
        if self.settings.uploads is not None:
            swept = await trio.to_thread.run_sync(sweep_uploads, self.settings.uploads)
            if swept:
                log.info("devices: removed %d file(s) of uploads the runtime did not finish", swept)
        await self.actors.boot(await self.ids())

    def _slow_ask(self, device: Device) -> float:
        """Seconds for a request that may wait for the line on the wire to be answered."""
        return (device.configuration.command_timeout or self.settings.command_timeout) + 10.0


def _connection_string_of(device_id: str) -> Callable[[Session], str | None]:
    def read(session: Session) -> str | None:
        return session.scalar(select(DeviceRecord.connection_string).where(DeviceRecord.id == device_id))

    return read
