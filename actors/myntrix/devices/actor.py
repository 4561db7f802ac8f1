"""The device actor: one device, owning at most one open link, keeping it as the user asked.

Statuses (persisted to ``devices`` and published on ``device.<id>.status`` as
``{"id", "status", "lastSeen", "lastError", "firmwareVersion"}``)::

    disconnected --connect--> connecting --link open, identified--> connected
         ^                        |                                     |
         |                        '--config error--> error              | link dropped
         |                        '--cannot open---> disconnected ------+ (lastError says why;
         '--disconnect-- (any)                        ^                    reconnect after a backoff)
                                                      '--------------------'

While the desired state is ``connected`` a *keeper* task
(:class:`~actors.myntrix.devices.keeper.LinkKeeper`) opens the link, and when it drops or cannot
open, tries again after a backoff. A connection string that cannot work as it is makes the status
``error`` with the reason and stops the retries until a user connects again.

While the link is open, a reader task splits what arrives into lines (the configuration's
encoding; ``\\n``, ``\\r\\n`` or a lone ``\\r`` end a line; blank lines are skipped), notes
``lastSeen`` (exact in memory and on the module's :class:`~actors.myntrix.devices.seen.SeenBoard`,
written to the row at most every ``seen_interval`` seconds and with every status change, by
:class:`~actors.myntrix.devices.row.DeviceRow`), hands each batch to the device's
:class:`~actors.myntrix.devices.telemetry.DeviceStream`, and routes it to whoever holds the
command slot.

The *command slot* (a fair lock) makes the link one conversation at a time: the identify command
on connect, then each queued command in arrival order
(:class:`~actors.myntrix.devices.commands.CommandExchange`), and an upload for its whole length
(:class:`~actors.myntrix.devices.upload_job.UploadJob`). :class:`SendCommand` answers a
:class:`~actors.myntrix.devices.commands.CommandTicket` at once; the command runs in the actor's
nursery and the caller awaits the ticket, so the mailbox (state reads, disconnects) is never held
up by a slow device, and a caller that leaves takes its command out of the queue. A reply that
comes after its command timed out is not taken for the next command's
(:class:`~actors.myntrix.devices.commands.OwedReplies`).
"""

from __future__ import annotations

import logging
import random
from dataclasses import dataclass, field
from datetime import datetime
from functools import partial
from pathlib import Path

import trio

from drivers.errors import LinkError
from drivers.link import Link, LinkRegistry, mask_connection_string
from vareon_runtime.actor import Actor, handles
from vareon_runtime.bus import EventBus
from vareon_runtime.clock import utcnow
from vareon_runtime.errors import (
    ConflictError,
    InvalidRequestError,
    NotFoundError,
    ServiceError,
    StoreError,
    UnavailableError,
)
from vareon_runtime.store import Store

from actors.kit.jobs import Jobs
from .commands import CommandExchange, CommandTicket
from .configuration import DeviceConfiguration
from .firmware import firmware_version
from .keeper import LinkKeeper
from .lines import LineRouter, LineSplitter
from .messages import (
    CancelUpload,
    ConnectDevice,
    DisconnectDevice,
    GetDeviceState,
    ReleaseDevice,
    RenameDevice,
    SendCommand,
    UploadFile,
)
from .models import load_device
from .row import DeviceRow
from .schemas import Device, DeviceDesiredState, DeviceStatus
from .seen import SeenBoard
from .session import LinkSession
from .settings import DeviceSettings
from .telemetry import DeviceStream
from .upload import UploadTimeoutError
from .upload_job import Sent, UploadJob

__all__ = [
    "DeviceServices","DeviceActor", "status_topic"]

log = logging.getLogger("vareon.devices.device")


def status_topic(device_id: str) -> str:
    """The bus topic a device's status changes are published on."""
    return f"device.{device_id}.status"


@dataclass(frozen=True)
class DeviceServices:
    """What every device's actor of one module works with.

    Attributes:
        store: where the rows are kept.
        bus: where statuses and telemetry are published.
        jobs: where uploads report their progress.
        settings: the module's tunables.
        seen: the module's board of exact ``lastSeen`` times.
        rng: randomness for the backoff jitter (tests pass a seeded one).
        links: the link drivers by scheme (None: :data:`drivers.link.LINKS`; tests pass their own).
    """

    store: Store
    bus: EventBus
    jobs: Jobs
    settings: DeviceSettings = field(default_factory=DeviceSettings)
    seen: SeenBoard = field(default_factory=SeenBoard)
    rng: random.Random = field(default_factory=random.Random)
    links: LinkRegistry | None = None


class DeviceActor(Actor):
    """The actor of one device (registry name ``device/<uuid>``); see the module docstring.

    Args:
        device_id: the device's id; its row must exist when the actor starts.
        services: what the module's devices share.
    """

    mailbox_size = 64

    def __init__(self, device_id: str, services: DeviceServices) -> None:
        super().__init__()
        self.device_id = device_id
        self.store = store = services.store
        self.bus = bus = services.bus
        self.jobs = services.jobs
        self.settings = services.settings
        self.seen = services.seen
        self._rng = services.rng
        self._links = services.links
        # The device as loaded from its row; the observed fields change below.
        self.device_name = ""
        self.device_type = ""
        self.connection_string = ""
        self.config = DeviceConfiguration()
        self.created_at: datetime = utcnow()
        self.updated_at: datetime = self.created_at
        self.status = DeviceStatus.DISCONNECTED
        self.desired = DeviceDesiredState.DISCONNECTED
        self.last_seen: datetime | None = None
        self.firmware_version: str | None = None
        self.last_error: str | None = None
        self.stream = DeviceStream(device_id, self.config.telemetry, bus)
        # The link and who uses it.
        self._session: LinkSession | None = None
        self._lines = LineRouter()
        self._commands = self._command_exchange()
        self._slot = trio.Lock()  # fair: commands and uploads take turns in arrival order
        self._waiting = 0  # tickets not finished yet
        self._keeper: LinkKeeper | None = None
        self._upload: UploadJob | None = None
        self._row = DeviceRow(device_id, store, bus, status_topic(device_id))

    # ------------------------------------------------------------------ lifecycle

    async def on_start(self) -> None:
        loaded = await self.store.read(load_device(self.device_id))
        if loaded is None:
            raise NotFoundError(f"device {self.device_id} does not exist")
        device, self.connection_string = loaded
        self.device_name, self.device_type = device.name, device.type
        self.config = device.configuration
        self.created_at, self.updated_at = device.created_at, device.updated_at
        self.desired, self.last_seen = device.desired_state, device.last_seen
        self.firmware_version, self.last_error = device.firmware_version, device.last_error
        self._row.loaded(device)
        self.stream = DeviceStream(self.device_id, self.config.telemetry, self.bus)
        self._commands = self._command_exchange()
        self.nursery.start_soon(self._seen_loop)
        if self.desired is DeviceDesiredState.CONNECTED:
            self._start_keeper()  # a runtime restart retries a device in error too
        elif device.status is not DeviceStatus.DISCONNECTED:
            # Whatever the row said (a crashed runtime), no link of ours is open now.
            self._set_status(DeviceStatus.DISCONNECTED)
            await self._save_quietly()

    async def on_stop(self) -> None:
        # Every task of the actor has ended by now: the link is closed, an upload's job failed.
        if self.status is not DeviceStatus.DISCONNECTED and self.status is not DeviceStatus.ERROR:
            self._set_status(DeviceStatus.DISCONNECTED)
        await self._save_quietly()

    # ------------------------------------------------------------------ requests

    @handles(ConnectDevice)
    async def connect(self, msg: ConnectDevice) -> Device:
        if self.status is DeviceStatus.CONNECTED:
            raise ConflictError(
                f"device {self.device_name!r} is already connected", details={"status": self.status.value}
            )
        # Also "try now" for a device waiting to reconnect, or one in error.
        self.desired = DeviceDesiredState.CONNECTED
        await self._stop_keeper()
        self.last_error = None
        self._set_status(DeviceStatus.CONNECTING)
        await self._save()
        self._start_keeper()
        return self.snapshot()

    @handles(DisconnectDevice)
    async def disconnect(self, msg: DisconnectDevice) -> Device:
        if self._upload is not None:
            raise self._uploading()
        if self.desired is DeviceDesiredState.DISCONNECTED and self._keeper is None:
            raise ConflictError(
                f"device {self.device_name!r} is already disconnected", details={"status": self.status.value}
            )
        self.desired = DeviceDesiredState.DISCONNECTED
        await self._stop_keeper()
        self.last_error = None
        self._set_status(DeviceStatus.DISCONNECTED)
        await self._save()
        return self.snapshot()

    @handles(ReleaseDevice)
    async def release(self, msg: ReleaseDevice) -> Device:
        upload = self._upload
        if upload is not None:
            if not msg.force:
                raise self._uploading()
            await upload.cancel(f"cancelled: {msg.reason}", wait=self._upload_cancel_wait())
        await self._stop_keeper()
        if self.status is DeviceStatus.CONNECTED or self.status is DeviceStatus.CONNECTING:
            self._set_status(DeviceStatus.DISCONNECTED)
            await self._save_quietly()
        return self.snapshot()

    @handles(RenameDevice)
    async def rename(self, msg: RenameDevice) -> Device:
        self.device_name, self.device_type = msg.name, msg.type
        return self.snapshot()

    @handles(GetDeviceState)
    async def state(self, msg: GetDeviceState) -> Device:
        return self.snapshot()

    @handles(SendCommand)
    async def command(self, msg: SendCommand) -> CommandTicket:
        self._check_ready()
        try:
            msg.command.encode(self.config.encoding)
        except UnicodeEncodeError as exc:
            raise InvalidRequestError(
                f"the command cannot be sent in the device's encoding {self.config.encoding!r}: {exc.reason}"
                f" at character {exc.start}; use characters of that encoding or change the configuration's encoding",
                details={"field": "command"},
            ) from None
        if self._waiting >= self.settings.queue_max:
            raise ConflictError(
                f"device {self.device_name!r} has {self._waiting} commands waiting (the most it queues);"
                " wait for their replies and send again",
                details={"waiting": self._waiting},
            )
        timeout = msg.timeout or self.config.command_timeout or self.settings.command_timeout
        ticket = CommandTicket(msg.command, timeout)
        self._waiting += 1
        self.nursery.start_soon(self._run_ticket, ticket)
        return ticket

    @handles(UploadFile)
    async def upload(self, msg: UploadFile) -> None:
        self._check_ready()
        upload = UploadJob(msg.job_id, msg.filename, Path(msg.path), jobs=self.jobs, actor=self.name)
        self._upload = upload
        self.nursery.start_soon(self._run_upload, upload)

    @handles(CancelUpload)
    async def cancel_upload(self, msg: CancelUpload) -> str:
        upload = self._upload
        if upload is None:
            raise ConflictError(
                f"no upload is running on device {self.device_name!r}", details={"status": self.status.value}
            )
        await upload.cancel(f"cancelled by {msg.by}", wait=self._upload_cancel_wait())
        return upload.job_id

    def snapshot(self) -> Device:
        """The device as it is now (its connection string masked)."""
        return Device(
            id=self.device_id,
            name=self.device_name,
            type=self.device_type,
            connection_string=mask_connection_string(self.connection_string),
            status=self.status,
            last_seen=self.last_seen,
            firmware_version=self.firmware_version,
            configuration=self.config,
            desired_state=self.desired,
            last_error=self.last_error,
            created_at=self.created_at,
            updated_at=self.updated_at,
        )

    def _check_ready(self) -> None:
        if self._upload is not None:
            raise self._uploading()
        if self.status is not DeviceStatus.CONNECTED or self._session is None:
            hint = " (connect it first)" if self.desired is DeviceDesiredState.DISCONNECTED else ""
            raise ConflictError(
                f"device {self.device_name!r} is {self.status.value}, not connected{hint}",
                details={"status": self.status.value, "lastError": self.last_error},
            )

    def _uploading(self) -> ConflictError:
        assert self._upload is not None
        return ConflictError(
            f"device {self.device_name!r} is busy uploading {self._upload.filename!r} (job {self._upload.job_id});"
            " wait for it to finish or cancel it (DELETE .../upload)",
            details={"jobId": self._upload.job_id},
        )

    # ------------------------------------------------------------------ the link

    def _start_keeper(self) -> None:
        keeper = self._keeper = LinkKeeper(
            self.connection_string,
            use=self._use,
            report=self._link_changed,
            settings=self.settings,
            reconnect=self.config.reconnect,
            rng=self._rng,
            label=f"{self.name} ({self.device_name})",
            links=self._links,
        )
        self.nursery.start_soon(self._keep, keeper)

    async def _stop_keeper(self) -> None:
        if self._keeper is not None:
            await self._keeper.stop()

    async def _keep(self, keeper: LinkKeeper) -> None:
        try:
            await keeper.run()
        except Exception as exc:
            # A bug (ours or a driver's): the actor crashes and its supervisor starts it again;
            # meanwhile the device shows why (on_stop persists it).
            self.last_error = f"the device's actor failed: {type(exc).__name__}: {exc}"
            self._set_status(DeviceStatus.ERROR)
            raise
        finally:
            if self._keeper is keeper:
                self._keeper = None

    async def _link_changed(self, status: DeviceStatus, error: str | None) -> None:
        """The keeper's report: connecting (the last error kept), or down with why."""
        if error is not None:
            self.last_error = error
        self._set_status(status)
        await self._save_quietly()

    async def _use(self, link: Link) -> str:
        """Read from the open link, identify the device, and hold the link until it drops.

        Returns:
            Why it ended.
        """
        session: LinkSession | None = None
        try:
            async with trio.open_nursery() as nursery:
                session = self._session = LinkSession(link, nursery.cancel_scope)
                self._lines.open()
                self._commands.owed.clear()
                nursery.start_soon(self._read, session)
                async with self._slot:
                    firmware = await self._identify(session)
                    await trio.lowlevel.checkpoint()  # the link may have dropped meanwhile
                    if firmware is not None:
                        self.firmware_version = firmware
                    self.last_error = None
                    self._set_status(DeviceStatus.CONNECTED)
                    await self._save_quietly()
                log.info("%s (%s): connected to %s", self.name, self.device_name, link.description)
                await trio.sleep_forever()
        finally:
            reason = (session.reason if session is not None else None) or "the link closed"
            self._session = None
            self._lines.close(reason)
            self._commands.owed.clear()
            with trio.CancelScope(shield=True):
                await link.aclose()
        return reason

    async def _read(self, session: LinkSession) -> None:
        config = self.config
        splitter = LineSplitter(config.encoding, self.settings.max_line, lone_cr=config.line_terminator == "\r")
        link, size, device_id = session.link, self.settings.receive_size, self.device_id
        try:
            while True:
                data = await link.receive(size)
                now = utcnow()
                self.last_seen = now
                self.seen.note(device_id, now)
                lines = splitter.feed(data)
                if lines:
                    self.stream.received(lines, now)
                    self._lines.deliver(self._commands.owed.screen(lines))
        except LinkError as exc:
            session.failed(exc)  # the first break ends the session, whoever noticed it

    async def _identify(self, session: LinkSession) -> str | None:
        command = self.config.identify_command
        if not command:
            return None
        try:
            reply = await self._commands.exchange(session, command, self._reply_timeout(), device=self.device_name)
        except ServiceError as exc:
            log.warning("%s (%s): no firmware version: %s", self.name, self.device_name, exc)
            return None
        return firmware_version(reply.reply, self.config.firmware_pattern, self.config.reply_terminator)

    # ------------------------------------------------------------------ commands

    async def _run_ticket(self, ticket: CommandTicket) -> None:
        try:
            async with self._slot:
                await self._commands.owed.settled()  # a timed-out command's late reply first
                if ticket.abandoned:
                    return
                try:
                    session = self._session
                    if session is None:
                        raise ConflictError(
                            f"device {self.device_name!r} is {self.status.value}, not connected",
                            details={"status": self.status.value, "lastError": self.last_error},
                        )
                    reply = await self._commands.exchange(session, ticket.command, ticket.timeout, device=self.device_name)
                except ServiceError as exc:
                    ticket._fail(exc)
                else:
                    ticket._set(reply)
        finally:
            self._waiting -= 1
            if not ticket.done:
                ticket._fail(UnavailableError(f"device {self.device_name!r} stopped before the command ran; send it again"))

    def _command_exchange(self) -> CommandExchange:
        label = f"{self.name} ({self.device_name})"
        grace = self._reply_timeout()
        return CommandExchange(self.config, self._lines, self.stream, grace=grace, label=label)

    def _reply_timeout(self) -> float:
        return self.config.command_timeout or self.settings.command_timeout

    # ------------------------------------------------------------------ uploads

    def _upload_cancel_wait(self) -> float:
        # The line on the wire gets its reply first (bounded by the reply timeout).
        return self._reply_timeout() + 5.0

    async def _run_upload(self, upload: UploadJob) -> None:
        def ended() -> None:
            if self._upload is upload:
                self._upload = None

        await upload.run(partial(self._send_file, upload), ended=ended, device=self.device_name)

    async def _send_file(self, upload: UploadJob) -> Sent:
        async with self._slot:
            await self._commands.owed.settled()  # a timed-out command's late reply first
            session = self._session
            if session is None:
                raise ConflictError(f"device {self.device_name!r} disconnected before the upload started")
            try:
                return await upload.send(
                    session,
                    self._lines,
                    self.config,
                    self.stream,
                    reply_timeout=self._reply_timeout(),
                    device=self.device_name,
                )
            except UploadTimeoutError:
                # The line on the wire may still be answered: its reply is owed, like a command's.
                self._commands.owed.owe(f"a line of {upload.filename}", self._reply_timeout())
                raise

    # ------------------------------------------------------------------ state

    def _set_status(self, status: DeviceStatus) -> None:
        """Change the status; published by the next :meth:`_save`, once persisted."""
        self.status = status

    async def _save(self) -> None:
        """Persist the observed state (one UPDATE of the row), then publish it if it changed.

        Raises:
            StoreError: the write failed (the state is published all the same, and written
                again by the seen loop).
        """
        self.updated_at = utcnow()
        await self._row.save(
            status=self.status,
            desired=self.desired,
            last_seen=self.last_seen,
            firmware_version=self.firmware_version,
            last_error=self.last_error,
            updated_at=self.updated_at,
        )

    async def _save_quietly(self) -> None:
        try:
            await self._save()
        except StoreError as exc:
            log.warning("%s: the state was not persisted (retried later): %s", self.name, exc)

    async def _seen_loop(self) -> None:
        """Write ``lastSeen`` at most every ``seen_interval`` while data flows (and a state whose
        write failed)."""
        while True:
            await trio.sleep(self.settings.seen_interval)
            if self._row.dirty:
                await self._save_quietly()
                continue
            try:
                await self._row.save_seen(self.last_seen)
            except StoreError as exc:
                log.warning("%s: lastSeen not persisted: %s", self.name, exc)
