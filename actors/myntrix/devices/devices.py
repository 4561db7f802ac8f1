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
the device's actor sends the file and reports progress into it, and completes or fails it.
"""

from __future__ import annotations

import logging
import random
import uuid
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import trio
from sqlalchemy import delete, func, select, update
from sqlalchemy.orm import Session

from drivers.link import mask_connection_string, parse_connection_string
from vareon_runtime.actor import ActorRef
from vareon_runtime.bus import EventBus, Overflow
from vareon_runtime.clock import utcnow
from vareon_runtime.errors import (
    ActorStoppedError,
    AskTimeoutError,
    ConflictError,
    DuplicateChildError,
    NotFoundError,
    UnavailableError,
    UnknownChildError,
    VareonError,
)
from vareon_runtime.messages import Message
from vareon_runtime.store import Store
from vareon_runtime.supervisor import ChildSpec, ChildStatus, Restart, Supervisor

from ..parsing import check_page, enum_value, parse_id, parse_model
from ..jobs import Jobs
from ..schemas import Job, JobStatus
from .commands import CommandTicket
from .device import DeviceActor, status_topic
from .settings import DeviceSettings
from .messages import (
    CancelUpload,
    ConnectDevice,
    DisconnectDevice,
    ReleaseDevice,
    RenameDevice,
    SendCommand,
    UploadFile,
)
from .models import DeviceRecord, device_from_record
from .schemas import (
    CommandReply,
    Device,
    DeviceCreate,
    DeviceDesiredState,
    DevicePage,
    DeviceStatus,
    DeviceStatusReport,
    DeviceUpdate,
)
from .seen import SeenBoard

__all__ = ["LIST_LIMIT_MAX", "UPLOAD_JOB_TYPE", "Devices"]

log = logging.getLogger("vareon.devices")

LIST_LIMIT_MAX = 500
UPLOAD_JOB_TYPE = "device.upload"
_ASK = 5.0  # seconds for requests that do not wait on the device


def _check_connection_string(raw: str) -> None:
    """Refuse a connection string no driver takes, without opening anything (422, naming why)."""
    parse_connection_string(raw)  # LinkConfigError / UnknownSchemeError are InvalidRequestErrors


class Devices:
    """The devices of one runtime.

    Args:
        store: the runtime's store.
        supervisor: the module's ``devices`` supervisor (one_for_one, no supervisor-wide limit);
            it registers each actor as ``device/<uuid>``.
        bus: where the actors publish.
        jobs: where uploads are reported.
        settings: the module's tunables.
        seen: the module's board of exact ``lastSeen`` times.
        rng: randomness for backoff jitter (tests pass a seeded one).
    """

    def __init__(
        self,
        store: Store,
        supervisor: Supervisor,
        bus: EventBus,
        *,
        jobs: Jobs | None = None,
        settings: DeviceSettings | None = None,
        seen: SeenBoard | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.store = store
        self.supervisor = supervisor
        self.bus = bus
        self.jobs = jobs if jobs is not None else Jobs(store)
        self.settings = settings or DeviceSettings()
        self.seen = seen if seen is not None else SeenBoard()
        self._rng = rng or random.Random()
        # Per device: delete, update and (re)starting an actor never interleave.
        self._locks: dict[str, trio.Lock] = {}

    def _lock(self, device_id: str) -> trio.Lock:
        lock = self._locks.get(device_id)
        if lock is None:
            lock = self._locks[device_id] = trio.Lock()
        return lock

    # ------------------------------------------------------------------ reads

    def _live(self, device: Device) -> Device:
        seen = self.seen.get(device.id)
        if seen is not None and (device.last_seen is None or seen > device.last_seen):
            return device.model_copy(update={"last_seen": seen})
        return device

    async def get(self, device_id: str) -> Device:
        """One device.

        Raises:
            NotFoundError: no device has that id.
        """
        device_id = parse_id(device_id, "device")

        def read(session: Session) -> Device | None:
            row = session.get(DeviceRecord, device_id)
            return device_from_record(row) if row is not None else None

        device = await self.store.read(read)
        if device is None:
            raise NotFoundError(f"no device has the id {device_id!r}")
        return self._live(device)

    async def list(self, *, limit: int = 50, offset: int = 0, status: str | None = None) -> DevicePage:
        """A page of devices, oldest first, and the total (``status`` filters).

        Raises:
            InvalidRequestError: ``limit`` outside 1..500, a negative ``offset``, or an unknown status.
        """
        check_page(limit, offset, LIST_LIMIT_MAX)
        if status is not None:
            status = enum_value(DeviceStatus, status)

        def page(session: Session) -> DevicePage:
            query = select(DeviceRecord)
            count = select(func.count()).select_from(DeviceRecord)
            if status is not None:
                query = query.where(DeviceRecord.status == status)
                count = count.where(DeviceRecord.status == status)
            rows = session.scalars(
                query.order_by(DeviceRecord.created_at, DeviceRecord.id).limit(limit).offset(offset)
            ).all()
            return DevicePage([device_from_record(row) for row in rows], session.scalar(count) or 0)

        found = await self.store.read(page)
        return DevicePage([self._live(device) for device in found.items], found.total)

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

    async def create(self, data: DeviceCreate | Mapping[str, Any]) -> Device:
        """Add a device (disconnected) and its actor.

        Raises:
            InvalidRequestError: invalid fields, or a connection string no driver takes (the
                message names the known schemes).
        """
        request = parse_model(DeviceCreate, data)
        _check_connection_string(request.connection_string)
        device_id = str(uuid.uuid4())
        now = utcnow()
        record = {
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

        def insert(session: Session) -> None:
            session.add(DeviceRecord(**record))

        await self.store.write(insert)
        await self.start_actor(device_id)
        log.info("device %s (%s) created: %s", device_id, request.name, mask_connection_string(request.connection_string))
        return self._announce("created", await self.get(device_id))

    async def update(self, device_id: str, data: DeviceUpdate | Mapping[str, Any]) -> Device:
        """Change a device's name, type, connection string or configuration.

        A new connection string or configuration replaces the device's actor: an open link is
        closed and opened again with it; the desired state is kept. A connection string sent
        back exactly as the API shows it (password masked) counts as unchanged.

        Raises:
            NotFoundError: no device has that id.
            InvalidRequestError: invalid fields, or a connection string no driver takes.
            ConflictError: the link would change while an upload runs.
        """
        async with self._lock(parse_id(device_id, "device")):
            return self._announce("updated", await self._update(device_id, data))

    async def _update(self, device_id: str, data: DeviceUpdate | Mapping[str, Any]) -> Device:
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
        relink = connection_string != raw or configuration != current.configuration
        name = request.name if request.name is not None else current.name
        kind = request.type if request.type is not None else current.type
        values: dict[str, Any] = {
            "name": name,
            "type": kind,
            "connection_string": connection_string,
            "configuration": configuration.wire(),
            "updated_at": utcnow(),
        }

        def change(session: Session) -> None:
            session.execute(update(DeviceRecord).where(DeviceRecord.id == current.id).values(**values))

        if relink:
            # The actor reads its link and configuration when it starts: replace it.
            await self._stop_actor(current, reason="the device was reconfigured", force=False)
            await self.store.write(change)
            await self.start_actor(current.id)
        else:
            await self.store.write(change)
            if (name, kind) != (current.name, current.type):
                ref = await self._ref_locked(current.id)
                await self._ask(ref, RenameDevice(name=name, type=kind))
        return await self.get(current.id)

    async def delete(self, device_id: str) -> None:
        """Close the device's link (cancelling an upload), remove its actor and its row.

        Its upload jobs and recorded telemetry stay (they are history).

        Raises:
            NotFoundError: no device has that id.
        """
        async with self._lock(parse_id(device_id, "device")):
            current = await self.get(device_id)
            await self._stop_actor(current, reason="the device was deleted", force=True)

            def remove(session: Session) -> None:
                session.execute(delete(DeviceRecord).where(DeviceRecord.id == current.id))

            await self.store.write(remove)
            self.seen.forget(current.id)
        log.info("device %s (%s) deleted", current.id, current.name)
        self.bus.publish(f"device.{current.id}.deleted", {"id": current.id})

    def _announce(self, change: str, device: Device) -> Device:
        # device.<id>.created / .updated, as the API shows it (password masked): the scene follows.
        self.bus.publish(f"device.{device.id}.{change}", device.model_dump(mode="json", by_alias=True))
        return device

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
            ref = await self._ref(current.id)
            await self._ask(ref, ConnectDevice())
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
        ref = await self._ref(current.id)
        await self._ask(ref, DisconnectDevice())
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
        ref = await self._ref(current.id)
        ticket: CommandTicket = await self._ask(ref, message)
        return await ticket.reply()

    async def upload(self, device_id: str, path: Path, filename: str, *, size: int, by: str) -> Job:
        """Send a file already saved at ``path`` to the device, as a job; answers the job at once.

        The file is kept after the upload (the user may want to send it again).

        Raises:
            NotFoundError: no device has that id.
            ConflictError: the device is not connected or is already uploading (the job is
                recorded as failed with the reason).
        """
        current = self.check_uploadable(await self.get(device_id))
        ref = await self._ref(current.id)
        job = await self.jobs.create(
            f"upload {filename} to {current.name}",
            UPLOAD_JOB_TYPE,
            status=JobStatus.PENDING,
            log=f"uploaded by {by}",
            details={
                "deviceId": current.id,
                "filename": filename,
                "size": size,
                "mode": current.configuration.upload.mode.value,
            },
        )
        try:
            await self._ask(ref, UploadFile(path=str(path), filename=filename, job_id=job.id))
        except BaseException as exc:
            with trio.CancelScope(shield=True):  # a refused upload still leaves its outcome
                try:
                    await self.jobs.finish(job.id, ok=False, log=f"refused: {exc}")
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
        ref = await self._ref(current.id)
        job_id: str = await self._ask(ref, CancelUpload(by=by), timeout=self._slow_ask(current))
        return await self.jobs.get(job_id)

    # ------------------------------------------------------------------ actors

    async def boot(self) -> None:
        """Start every device's actor (each connects if its desired state is connected)."""
        ids = await self.store.read(_device_ids)
        for device_id in ids:
            try:
                await self.start_actor(device_id)
            except Exception:
                # One broken device must not keep the others down; a request retries its actor.
                log.exception("device %s: its actor did not start", device_id)

    async def start_actor(self, device_id: str) -> ActorRef:
        """Start the actor of a device whose row exists."""
        store, bus, jobs, settings, seen, rng = self.store, self.bus, self.jobs, self.settings, self.seen, self._rng

        def factory() -> DeviceActor:
            return DeviceActor(device_id, store=store, bus=bus, jobs=jobs, settings=settings, seen=seen, rng=rng)

        spec = ChildSpec(
            f"device/{device_id}",
            factory,
            restart=Restart.PERMANENT,
            shutdown=settings.command_timeout + 5.0,
            max_restarts=settings.actor_max_restarts,
            period=settings.actor_period,
        )
        try:
            ref = await self.supervisor.start_child(spec)
        except DuplicateChildError as exc:
            raise ConflictError(f"device {device_id} is being changed by another request; try again") from exc
        assert isinstance(ref, ActorRef)
        return ref

    async def _ref(self, device_id: str) -> ActorRef:
        """The device's actor, started again if it failed or never started."""
        async with self._lock(device_id):
            return await self._ref_locked(device_id)

    async def _ref_locked(self, device_id: str) -> ActorRef:
        name = f"device/{device_id}"
        try:
            info = self.supervisor.child(name)
        except UnknownChildError:
            return await self.start_actor(device_id)
        if info.status in (ChildStatus.FAILED, ChildStatus.STOPPED):
            ref = await self.supervisor.restart_child(name)
            assert isinstance(ref, ActorRef)
            return ref
        return self.supervisor.ref(name)

    def _slow_ask(self, device: Device) -> float:
        """Seconds for a request that may wait for the line on the wire to be answered."""
        return (device.configuration.command_timeout or self.settings.command_timeout) + 10.0

    async def _ask(self, ref: ActorRef, message: Message, *, timeout: float = _ASK) -> Any:
        try:
            return await ref.ask(message, timeout=timeout)
        except (AskTimeoutError, ActorStoppedError) as exc:
            raise UnavailableError(f"the device's actor is not answering ({exc}); try again") from exc

    async def _stop_actor(self, device: Device, *, reason: str, force: bool) -> None:
        name = f"device/{device.id}"
        if name not in self.supervisor:
            return
        try:
            await self.supervisor.ref(name).ask(ReleaseDevice(reason=reason, force=force), timeout=self._slow_ask(device))
        except (ActorStoppedError, UnknownChildError, AskTimeoutError):
            pass  # not running, or stuck: deleting the child stops it all the same
        await self.supervisor.delete_child(name)


def _connection_string_of(device_id: str) -> Callable[[Session], str | None]:
    def read(session: Session) -> str | None:
        return session.scalar(select(DeviceRecord.connection_string).where(DeviceRecord.id == device_id))

    return read


def _device_ids(session: Session) -> list[str]:
    return list(session.scalars(select(DeviceRecord.id).order_by(DeviceRecord.created_at, DeviceRecord.id)).all())
