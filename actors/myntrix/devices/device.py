"""The device actor: one device, owning at most one open link, keeping it as the user asked.

Statuses (persisted to ``devices`` and published on ``device.<id>.status`` as
``{"id", "status", "lastSeen", "lastError", "firmwareVersion"}``)::

    disconnected --connect--> connecting --link open, identified--> connected
         ^                        |                                     |
         |                        '--config error--> error              | link dropped
         |                        '--cannot open---> disconnected ------+ (lastError says why;
         '--disconnect-- (any)                        ^                    reconnect after a backoff)
                                                      '--------------------'

While the desired state is ``connected`` a *keeper* task opens the link
(:func:`drivers.link.open_link`), and when it drops or cannot open, waits an exponential backoff
with jitter (the first retry at once, then from ``reconnect_initial`` doubling up to
``reconnect_max``) and tries again. A connection string that cannot work as it is
(:class:`~drivers.errors.LinkConfigError`) makes the status ``error`` with the reason and stops
the retries until a user connects again: retrying cannot fix it.

While the link is open, a reader task splits what arrives into lines (the configuration's
encoding; ``\\n``, ``\\r\\n`` or a lone ``\\r`` end a line; blank lines are skipped), notes
``lastSeen`` (exact in memory and on the module's :class:`SeenBoard`, written to the row at most
every ``seen_interval`` seconds and with every status change), hands each batch to the device's
:class:`~actors.myntrix.devices.telemetry.DeviceStream`, and routes it to whoever holds the
command slot.

The *command slot* (a fair lock) makes the link one conversation at a time: the identify command
on connect, then each queued command in arrival order, and an upload for its whole length.
:class:`SendCommand` answers a :class:`CommandTicket` at once; the command runs in the actor's
nursery and the caller awaits the ticket, so the mailbox (state reads, disconnects) is never held
up by a slow device, and a caller that leaves takes its command out of the queue.
"""

from __future__ import annotations

import logging
import random
import re
from collections.abc import Sequence
from contextlib import aclosing
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import trio
from sqlalchemy import update
from sqlalchemy.orm import Session

from drivers.errors import LinkClosedError, LinkConfigError, LinkError
from drivers.link import Link, mask_connection_string, open_link
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
    UpstreamTimeoutError,
    VareonError,
)
from vareon_runtime.store import Store
from vareon_runtime.supervisor import Backoff

from ..jobs import Jobs
from ..schemas import JobStatus
from .configuration import DeviceConfiguration, UploadMode
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
from .models import DeviceRecord, load_device
from .schemas import CommandReply, Device, DeviceDesiredState, DeviceStatus
from .settings import DeviceSettings
from .telemetry import DeviceStream
from .upload import count_gcode_lines, gcode_lines, send_chunks, send_gcode

__all__ = [
    "MARLIN_FIRMWARE_PATTERN",
    "CommandTicket",
    "DeviceActor",
    "SeenBoard",
    "firmware_version",
    "status_topic",
]

log = logging.getLogger("vareon.devices.device")

MARLIN_FIRMWARE_PATTERN = r"FIRMWARE_NAME:\s*(?P<version>.+?)(?=\s+[A-Z][A-Z_]*:|$)"
"""What an identify reply is searched for when the configuration names no ``firmwarePattern``:
Marlin's ``FIRMWARE_NAME:Marlin 2.1.2 (...) SOURCE_CODE_URL:...`` gives ``Marlin 2.1.2 (...)``.
A reply without it gives its first line (a SCPI ``*IDN?`` answer, for example)."""

_MARLIN = re.compile(MARLIN_FIRMWARE_PATTERN)
_FIRMWARE_MAX = 255  # the column's length


def status_topic(device_id: str) -> str:
    """The bus topic a device's status changes are published on."""
    return f"device.{device_id}.status"


def firmware_version(reply: Sequence[str], pattern: str | None = None, reply_terminator: str | None = "ok") -> str | None:
    """The firmware version in the reply to an identify command, or None when there is none.

    Args:
        reply: the reply lines.
        pattern: a regular expression searched in each line; its group ``version`` (else the
            whole match) is the version. None: :data:`MARLIN_FIRMWARE_PATTERN`, else the first
            line that is not the reply terminator.
        reply_terminator: the line that ends a reply (not a version).
    """
    if pattern is not None:
        regex = re.compile(pattern)
        for line in reply:
            match = regex.search(line)
            if match is not None:
                found = match.groupdict().get("version") or match.group(0)
                return found.strip()[:_FIRMWARE_MAX] or None
        return None
    for line in reply:
        match = _MARLIN.search(line)
        if match is not None:
            return match.group("version").strip()[:_FIRMWARE_MAX] or None
    for line in reply:
        text = line.strip()
        if text and not (reply_terminator and text.startswith(reply_terminator)):
            return text[:_FIRMWARE_MAX]
    return None


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


class CommandTicket:
    """A command queued on a device; :meth:`reply` waits for the answer.

    Leaving :meth:`reply` early (the caller was cancelled) takes the command out of the queue if it
    has not reached the device yet; once on the wire, it runs to its end so that the next command
    does not read its reply.
    """

    def __init__(self, command: str, timeout: float) -> None:
        self.command = command
        self.timeout = timeout
        self.abandoned = False
        self._done = trio.Event()
        self._reply: CommandReply | None = None
        self._error: ServiceError | None = None

    @property
    def done(self) -> bool:
        return self._done.is_set()

    def _set(self, reply: CommandReply) -> None:
        self._reply = reply
        self._done.set()

    def _fail(self, error: ServiceError) -> None:
        self._error = error
        self._done.set()

    async def reply(self) -> CommandReply:
        """The device's reply.

        Raises:
            UpstreamTimeoutError: no complete reply in time (504); ``details["received"]`` holds
                the lines that came.
            ConflictError: the device is not connected (any more) or is uploading (409).
            UnavailableError: the link dropped while waiting, or the actor stopped (503).
        """
        try:
            await self._done.wait()
        except BaseException:
            self.abandoned = True
            raise
        if self._error is not None:
            raise self._error
        assert self._reply is not None
        return self._reply


class _LinkChannel:
    """The :class:`~actors.myntrix.devices.upload.LineChannel` an upload gets: the actor's link
    for writing, the lines the reader routes to the slot holder for reading."""

    def __init__(self, actor: DeviceActor, link: Link, inbox: trio.MemoryReceiveChannel[str], *, echo: bool) -> None:
        self._actor = actor
        self._link = link
        self._inbox = inbox
        self._echo = echo

    async def send(self, data: bytes) -> None:
        await self._link.send(data)
        if self._echo:
            self._actor.stream.sent(data.decode(self._actor.config.encoding, "replace").rstrip("\r\n"), utcnow())

    async def receive_line(self) -> str:
        try:
            return await self._inbox.receive()
        except (trio.EndOfChannel, trio.ClosedResourceError):
            raise LinkClosedError(f"the link dropped: {self._actor._lines.reason}") from None


@dataclass(eq=False)
class _Keeper:
    """The task keeping the link open while the desired state is connected."""

    scope: trio.CancelScope = field(default_factory=trio.CancelScope)
    done: trio.Event = field(default_factory=trio.Event)


@dataclass(eq=False)
class _Session:
    """One open link and the scope of the tasks using it."""

    link: Link
    scope: trio.CancelScope
    reason: str | None = None  # why it ended, once it did


@dataclass(eq=False)
class _Upload:
    job_id: str
    filename: str
    path: Path
    scope: trio.CancelScope = field(default_factory=trio.CancelScope)
    done: trio.Event = field(default_factory=trio.Event)
    cancel_note: str | None = None


class DeviceActor(Actor):
    """The actor of one device (registry name ``device/<uuid>``); see the module docstring.

    Args:
        device_id: the device's id; its row must exist when the actor starts.
        store: where the row is kept.
        bus: where statuses and telemetry are published.
        jobs: where uploads report their progress.
        settings: the module's tunables.
        seen: the module's board of exact ``lastSeen`` times.
        rng: randomness for the backoff jitter (tests pass a seeded one).
    """

    mailbox_size = 64

    def __init__(
        self,
        device_id: str,
        *,
        store: Store,
        bus: EventBus,
        jobs: Jobs,
        settings: DeviceSettings | None = None,
        seen: SeenBoard | None = None,
        rng: random.Random | None = None,
    ) -> None:
        super().__init__()
        self.device_id = device_id
        self.store = store
        self.bus = bus
        self.jobs = jobs
        self.settings = settings or DeviceSettings()
        self.seen = seen if seen is not None else SeenBoard()
        self._rng = rng or random.Random()
        self._topic = status_topic(device_id)
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
        self._error_pattern: re.Pattern[str] | None = None
        # The link and who uses it.
        self._session: _Session | None = None
        self._lines = LineRouter()
        self._slot = trio.Lock()  # fair: commands and uploads take turns in arrival order
        self._waiting = 0  # tickets not finished yet
        self._keeper: _Keeper | None = None
        self._upload: _Upload | None = None
        # Persistence.
        self._published: tuple[str, str | None, str | None] | None = None
        self._saved_seen: datetime | None = None
        self._dirty = False  # the last save failed: the seen loop writes the state again

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
        self._saved_seen = device.last_seen
        self._published = (device.status.value, device.last_error, device.firmware_version)
        self._error_pattern = re.compile(self.config.error_pattern) if self.config.error_pattern else None
        self.stream = DeviceStream(self.device_id, self.config.telemetry, self.bus)
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
            await self._cancel_upload(upload, f"cancelled: {msg.reason}")
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
        upload = _Upload(job_id=msg.job_id, filename=msg.filename, path=Path(msg.path))
        self._upload = upload
        self.nursery.start_soon(self._run_upload, upload)

    @handles(CancelUpload)
    async def cancel_upload(self, msg: CancelUpload) -> str:
        upload = self._upload
        if upload is None:
            raise ConflictError(
                f"no upload is running on device {self.device_name!r}", details={"status": self.status.value}
            )
        await self._cancel_upload(upload, f"cancelled by {msg.by}")
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
        keeper = self._keeper = _Keeper()
        self.nursery.start_soon(self._keep, keeper)

    async def _stop_keeper(self) -> None:
        keeper = self._keeper
        if keeper is None:
            return
        keeper.scope.cancel()
        await keeper.done.wait()

    async def _keep(self, keeper: _Keeper) -> None:
        try:
            with keeper.scope:
                await self._keep_connected()
        except Exception as exc:
            # A bug (ours or a driver's): the actor crashes and its supervisor starts it again;
            # meanwhile the device shows why (on_stop persists it).
            self.last_error = f"the device's actor failed: {type(exc).__name__}: {exc}"
            self._set_status(DeviceStatus.ERROR)
            raise
        finally:
            if self._keeper is keeper:
                self._keeper = None
            keeper.done.set()

    async def _keep_connected(self) -> None:
        """Open the link, use it until it drops, wait, open it again; until cancelled, or an
        error retrying cannot fix, or a drop of a device configured not to reconnect."""
        backoff = Backoff(self.settings.reconnect_initial, self.settings.reconnect_max)
        attempt = 0
        where = mask_connection_string(self.connection_string)
        while True:
            self._set_status(DeviceStatus.CONNECTING)
            await self._save_quietly()
            try:
                link = await open_link(self.connection_string)
            except LinkConfigError as exc:
                self.last_error = f"cannot connect to {where}: {exc}"
                log.error("%s (%s): %s; not retried", self.name, self.device_name, self.last_error)
                self._set_status(DeviceStatus.ERROR)
                await self._save_quietly()
                return
            except LinkError as exc:
                reason = f"cannot connect to {where}: {exc}"
            else:
                opened = trio.current_time()
                reason = await self._use(link)
                if trio.current_time() - opened >= self.settings.stable_after:
                    attempt = 0
            self.last_error = reason
            self._set_status(DeviceStatus.DISCONNECTED)
            await self._save_quietly()
            if not self.config.reconnect:
                log.warning("%s (%s): %s; not reconnecting (reconnect is off)", self.name, self.device_name, reason)
                return
            delay = backoff.delay(attempt, self._rng)
            attempt += 1
            log.info("%s (%s): %s; reconnecting in %.2fs", self.name, self.device_name, reason, delay)
            await trio.sleep(delay)

    async def _use(self, link: Link) -> str:
        """Read from the open link, identify the device, and hold the link until it drops.

        Returns:
            Why it ended.
        """
        session: _Session | None = None
        try:
            async with trio.open_nursery() as nursery:
                session = self._session = _Session(link, nursery.cancel_scope)
                self._lines.open()
                nursery.start_soon(self._read, session)
                async with self._slot:
                    firmware = await self._identify()
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
            with trio.CancelScope(shield=True):
                await link.aclose()
        return reason

    def _drop(self, reason: str) -> None:
        """End the current session (a write failed): the keeper reconnects."""
        session = self._session
        if session is not None and session.reason is None:
            session.reason = reason
            session.scope.cancel()

    async def _read(self, session: _Session) -> None:
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
                    self._lines.deliver(lines)
        except LinkError as exc:
            self._drop(f"the link dropped: {exc}")

    async def _identify(self) -> str | None:
        command = self.config.identify_command
        if not command:
            return None
        timeout = self.config.command_timeout or self.settings.command_timeout
        try:
            reply = await self._exchange(command, timeout)
        except ServiceError as exc:
            log.warning("%s (%s): no firmware version: %s", self.name, self.device_name, exc)
            return None
        return firmware_version(reply.reply, self.config.firmware_pattern, self.config.reply_terminator)

    # ------------------------------------------------------------------ commands

    async def _run_ticket(self, ticket: CommandTicket) -> None:
        try:
            async with self._slot:
                if ticket.abandoned:
                    return
                try:
                    if self._session is None:
                        raise ConflictError(
                            f"device {self.device_name!r} is {self.status.value}, not connected",
                            details={"status": self.status.value, "lastError": self.last_error},
                        )
                    reply = await self._exchange(ticket.command, ticket.timeout)
                except ServiceError as exc:
                    ticket._fail(exc)
                else:
                    ticket._set(reply)
        finally:
            self._waiting -= 1
            if not ticket.done:
                ticket._fail(UnavailableError(f"device {self.device_name!r} stopped before the command ran; send it again"))

    async def _exchange(self, command: str, timeout: float) -> CommandReply:
        """Send one command and collect its reply (the caller holds the slot).

        Raises:
            UpstreamTimeoutError: the reply did not complete within ``timeout``.
            UnavailableError: the link failed or dropped meanwhile.
            ConflictError: there is no link.
        """
        session = self._session
        if session is None:
            raise ConflictError(f"device {self.device_name!r} is not connected", details={"status": self.status.value})
        config = self.config
        terminator = config.reply_terminator
        try:
            data = (command + config.line_terminator).encode(config.encoding)
        except UnicodeEncodeError as exc:
            raise InvalidRequestError(
                f"{command!r} cannot be sent in the device's encoding {config.encoding!r} ({exc.reason});"
                " use characters of that encoding or change the configuration's encoding",
                details={"command": command},
            ) from None
        inbox = self._lines.attach()
        received: list[str] = []
        try:
            started = trio.current_time()
            deadline = started + timeout
            try:
                with trio.move_on_at(deadline) as sending:
                    await session.link.send(data)
            except LinkError as exc:
                self._drop(f"the link dropped: {exc}")
                raise UnavailableError(
                    f"could not send {command!r} to device {self.device_name!r}: {exc}",
                    details={"command": command, "received": received},
                ) from exc
            if sending.cancelled_caught:
                raise UpstreamTimeoutError(
                    f"device {self.device_name!r} did not take {command!r} within {timeout:g}s (its input is blocked)",
                    details={"command": command, "timeout": timeout, "received": received},
                )
            self.stream.sent(command, utcnow())
            ok = True
            with trio.move_on_at(deadline) as waiting:
                while True:
                    try:
                        line = await inbox.receive()
                    except trio.EndOfChannel:
                        raise UnavailableError(
                            f"the link to device {self.device_name!r} dropped while waiting for the reply to"
                            f" {command!r}: {self._lines.reason}",
                            details={"command": command, "received": received},
                        ) from None
                    received.append(line)
                    if self._error_pattern is not None and self._error_pattern.search(line):
                        ok = False
                        break
                    if terminator is None or line.startswith(terminator):
                        break
            if waiting.cancelled_caught:
                expected = f"a line starting with {terminator!r}" if terminator is not None else "one line"
                raise UpstreamTimeoutError(
                    f"device {self.device_name!r} did not finish its reply to {command!r} within {timeout:g}s:"
                    f" expected {expected}, received {len(received)} line(s). Send a longer 'timeout' (or set"
                    " the configuration's commandTimeout) if it needs more time",
                    details={"command": command, "timeout": timeout, "received": received},
                )
            duration = (trio.current_time() - started) * 1000
            return CommandReply(command=command, reply=received, ok=ok, duration_ms=round(duration, 3))
        finally:
            self._lines.detach()

    # ------------------------------------------------------------------ uploads

    async def _cancel_upload(self, upload: _Upload, note: str) -> None:
        if upload.cancel_note is None:
            upload.cancel_note = note
        upload.scope.cancel()
        # The line on the wire gets its reply first (bounded by the reply timeout).
        with trio.move_on_after(self._reply_timeout() + 5.0):
            await upload.done.wait()

    def _reply_timeout(self) -> float:
        return self.config.command_timeout or self.settings.command_timeout

    async def _run_upload(self, upload: _Upload) -> None:
        ok, note, details = False, "the device's actor stopped during the upload", None
        try:
            with upload.scope:
                async with self._slot:
                    ok, note, details = await self._send_file(upload)
            if upload.scope.cancelled_caught:
                ok, note, details = False, upload.cancel_note or "cancelled", None
        except (ServiceError, LinkError) as exc:
            ok, note, details = False, f"failed: {exc}", getattr(exc, "details", None)
        except OSError as exc:
            ok, note, details = False, f"failed: cannot read the uploaded file: {exc}", None
        except Exception as exc:
            ok, note = False, f"failed: {type(exc).__name__}: {exc}"
            raise  # a bug: the actor crashes and its supervisor starts it again
        finally:
            if self._upload is upload:
                self._upload = None
            with trio.CancelScope(shield=True):
                try:
                    await self.jobs.finish(upload.job_id, ok=ok, log=note, details=_jsonable(details))
                except VareonError as exc:
                    log.error("%s: the outcome of upload job %s (%s) was not recorded: %s", self.name, upload.job_id, note, exc)
            upload.done.set()
            log.info("%s (%s): upload of %s: %s", self.name, self.device_name, upload.filename, note)

    async def _send_file(self, upload: _Upload) -> tuple[bool, str, dict[str, Any]]:
        session = self._session
        if session is None:
            raise ConflictError(f"device {self.device_name!r} disconnected before the upload started")
        settings = self.config.upload
        await self._job_note(upload, status=JobStatus.RUNNING, line=f"sending {upload.filename} to {self.device_name} ({settings.mode.value})")
        last = -1

        async def progress(done: int, total: int) -> None:
            nonlocal last
            percent = min(100, 100 * done // total) if total else 100
            if percent != last:
                last = percent
                await self._job_note(upload, progress=percent)

        gcode = settings.mode is UploadMode.GCODE
        channel = _LinkChannel(self, session.link, self._lines.attach(), echo=gcode)
        try:
            if gcode:
                total = await trio.to_thread.run_sync(count_gcode_lines, upload.path)
                async with aclosing(gcode_lines(upload.path)) as lines:
                    result = await send_gcode(
                        lines,
                        channel,
                        total=total,
                        line_numbers=settings.line_numbers,
                        line_terminator=self.config.line_terminator,
                        reply_timeout=self._reply_timeout(),
                        progress=progress,
                    )
            else:
                result = await send_chunks(upload.path, channel, chunk_size=settings.chunk_size, progress=progress)
        finally:
            self._lines.detach()
        unit = "lines" if gcode else "chunks"
        note = (
            f"sent {result.lines_sent} {unit} ({result.bytes_sent} bytes, {result.resends} resent)"
            f" in {result.duration:.2f}s"
        )
        details = {
            "linesSent": result.lines_sent,
            "resends": result.resends,
            "bytesSent": result.bytes_sent,
            "durationMs": round(result.duration * 1000, 3),
        }
        return True, note, details

    async def _job_note(
        self, upload: _Upload, *, progress: int | None = None, status: JobStatus | None = None, line: str | None = None
    ) -> None:
        """Report into the upload's job; a database failure must not stop the upload."""
        try:
            await self.jobs.update(upload.job_id, progress=progress, status=status, log=line)
        except VareonError as exc:
            log.warning("%s: upload job %s not updated: %s", self.name, upload.job_id, exc)

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
        values = {
            "status": self.status.value,
            "desired_state": self.desired.value,
            "last_seen": self.last_seen,
            "firmware_version": self.firmware_version,
            "last_error": self.last_error,
            "updated_at": self.updated_at,
        }
        device_id = self.device_id

        def save(session: Session) -> None:
            session.execute(update(DeviceRecord).where(DeviceRecord.id == device_id).values(**values))

        try:
            await self.store.write(save)
        except BaseException:
            self._dirty = True
            raise
        else:
            self._dirty = False
            self._saved_seen = values["last_seen"]
        finally:
            # Published even if the write failed: the transition happened all the same.
            state = (self.status.value, self.last_error, self.firmware_version)
            if state != self._published:
                self._published = state
                self.bus.publish(
                    self._topic,
                    {
                        "id": self.device_id,
                        "status": self.status.value,
                        "lastSeen": self.last_seen,
                        "lastError": self.last_error,
                        "firmwareVersion": self.firmware_version,
                    },
                )

    async def _save_quietly(self) -> None:
        try:
            await self._save()
        except StoreError as exc:
            log.warning("%s: the state was not persisted (retried later): %s", self.name, exc)

    async def _seen_loop(self) -> None:
        """Write ``lastSeen`` at most every ``seen_interval`` while data flows (and a state whose
        write failed)."""
        device_id = self.device_id
        while True:
            await trio.sleep(self.settings.seen_interval)
            if self._dirty:
                await self._save_quietly()
                continue
            seen = self.last_seen
            if seen is None or seen == self._saved_seen:
                continue

            def save(session: Session, seen: datetime = seen) -> None:
                session.execute(update(DeviceRecord).where(DeviceRecord.id == device_id).values(last_seen=seen))

            try:
                await self.store.write(save)
            except StoreError as exc:
                log.warning("%s: lastSeen not persisted: %s", self.name, exc)
            else:
                self._saved_seen = seen


def _jsonable(details: Any) -> dict[str, Any] | None:
    """Job details must be a JSON object; an error's details may be a list or a string."""
    if details is None or isinstance(details, dict):
        return details
    return {"details": details}
