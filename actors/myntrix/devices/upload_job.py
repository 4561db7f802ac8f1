"""``UploadJob``: one file going to a device as a job, run by the device's actor.

The actor holds the command slot for the whole upload and hands :meth:`UploadJob.send` its link's
session;
the job sends the file with :func:`~actors.myntrix.devices.upload.send_gcode` or
:func:`~actors.myntrix.devices.upload.send_chunks` (reading the lines the device's reader routes to
it), reports progress in whole percents into its ``jobs`` row, and records the outcome: what was
sent, or why it failed or was cancelled.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from contextlib import aclosing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import trio

from drivers.errors import LinkError
from vareon_runtime.clock import utcnow
from vareon_runtime.errors import ServiceError, VareonError

from actors.kit.jobs import Jobs
from actors.kit.states import RunState
from .configuration import DeviceConfiguration, UploadMode
from .lines import LineRouter
from .session import LinkSession
from .telemetry import DeviceStream
from .upload import count_gcode_lines, gcode_lines, send_chunks, send_gcode

__all__ = ["Sent", "UploadJob", "sweep_uploads"]

log = logging.getLogger("vareon.devices.device")

Sent = tuple[str, dict[str, Any]]
"""What a finished upload reports: its job's last log line and details."""


@dataclass(frozen=True, eq=False)
class _LinkChannel:
    """The :class:`~actors.myntrix.devices.upload.LineChannel` an upload gets: the device's link
    for writing, the lines the reader routes to the slot holder for reading.

    Both fail with why the link's session ended, so a pulled plug reads the same in the job
    whoever noticed it first: this channel's own write, or the reader (a later write then meets
    the link the session closed, and the awaited line never comes).
    """

    _session: LinkSession
    _inbox: trio.MemoryReceiveChannel[str]
    _echo: DeviceStream | None
    _encoding: str

    async def send(self, data: bytes) -> None:
        try:
            await self._session.link.send(data)
        except LinkError as exc:
            raise self._session.failed(exc) from exc
        if self._echo is not None:
            self._echo.sent(data.decode(self._encoding, "replace").rstrip("\r\n"), utcnow())

    async def receive_line(self) -> str:
        try:
            return await self._inbox.receive()
        except (trio.EndOfChannel, trio.ClosedResourceError):
            raise self._session.ended() from None


class UploadJob:
    """One upload to a device, reported into its job.

    Args:
        job_id: the ``device.upload`` job, recorded (pending) by the caller.
        filename: the file's name, as uploaded.
        path: where the file is saved.
        jobs: where the job is reported.
        actor: the device actor's name, for the log.
    """

    def __init__(self, job_id: str, filename: str, path: Path, *, jobs: Jobs, actor: str) -> None:
        self.job_id = job_id
        self.filename = filename
        self.path = path
        self.scope = trio.CancelScope()
        self.done = trio.Event()
        self.cancel_note: str | None = None
        self._jobs = jobs
        self._actor = actor

    async def cancel(self, note: str, *, wait: float) -> None:
        """Stop the upload between two lines and wait (at most ``wait`` seconds) for it to end;
        its job fails with ``note`` (the first note given, if cancelled twice)."""
        if self.cancel_note is None:
            self.cancel_note = note
        self.scope.cancel()
        with trio.move_on_after(wait):
            await self.done.wait()

    async def run(self, send: Callable[[], Awaitable[Sent]], *, ended: Callable[[], None], device: str) -> None:
        """Run ``send`` within the upload's cancel scope and record its outcome in the job.

        Args:
            send: takes the device's command slot and sends the file (:meth:`send`).
            ended: called as soon as the upload ended, before its outcome is recorded.
            device: the device's name, for the log.

        Raises:
            Exception: a bug (not a device's, a link's or the file's failure), after recording it.
        """
        state, note, details = RunState.FAILED, "the device's actor stopped during the upload", None
        try:
            with self.scope:
                note, details = await send()
                state = RunState.SUCCEEDED
            if self.scope.cancelled_caught:
                state, note, details = RunState.CANCELLED, self.cancel_note or "cancelled", None
        except (ServiceError, LinkError) as exc:
            state, note, details = RunState.FAILED, f"failed: {exc}", getattr(exc, "details", None)
        except OSError as exc:
            state, note, details = RunState.FAILED, f"failed: cannot read the uploaded file: {exc}", None
        except Exception as exc:
            state, note = RunState.FAILED, f"failed: {type(exc).__name__}: {exc}"
            raise  # a bug: the actor crashes and its supervisor starts it again
        finally:
            ended()
            with trio.CancelScope(shield=True):
                # Sent, failed or cancelled: nothing reads the file again. Removed before the
                # outcome is recorded, so a job seen ended has left nothing behind.
                try:
                    await trio.Path(self.path).unlink(missing_ok=True)
                except OSError as exc:
                    log.warning("%s: the file of upload job %s stays at %s: %s", self._actor, self.job_id, self.path, exc)
                try:
                    await self._jobs.finish(self.job_id, state, log=note, details=_jsonable(details))
                except VareonError as exc:
                    log.error("%s: the outcome of upload job %s (%s) was not recorded: %s", self._actor, self.job_id, note, exc)
            self.done.set()
            log.info("%s (%s): upload of %s: %s", self._actor, device, self.filename, note)

    async def send(
        self,
        session: LinkSession,
        lines: LineRouter,
        config: DeviceConfiguration,
        stream: DeviceStream,
        *,
        reply_timeout: float,
        device: str,
    ) -> Sent:
        """Send the file over ``link`` (the caller holds the device's command slot).

        Args:
            session: the open link.
            lines: the router the device's reader hands received lines to.
            config: the device's configuration (upload mode, framing).
            stream: where G-code lines sent are echoed.
            reply_timeout: seconds each G-code line has for its ``ok``.
            device: the device's name, for the job's log.

        Returns:
            The job's last log line and details: what was sent.

        Raises:
            UploadError: the device stopped the upload or kept refusing a line (502; 504 when a
                line got no reply in time).
            LinkError: the link failed; the message says why its session ended (the first break).
            OSError: the file cannot be read.
        """
        settings = config.upload
        await self._note(state=RunState.RUNNING, line=f"sending {self.filename} to {device} ({settings.mode.value})")
        last = -1

        async def progress(done: int, total: int) -> None:
            nonlocal last
            percent = min(100, 100 * done // total) if total else 100
            if percent != last:
                last = percent
                await self._note(progress=percent)

        gcode = settings.mode is UploadMode.GCODE
        channel = _LinkChannel(session, lines.attach(), stream if gcode else None, config.encoding)
        try:
            if gcode:
                total = await trio.to_thread.run_sync(count_gcode_lines, self.path)
                async with aclosing(gcode_lines(self.path)) as source:
                    result = await send_gcode(
                        source,
                        channel,
                        total=total,
                        line_numbers=settings.line_numbers,
                        line_terminator=config.line_terminator,
                        reply_timeout=reply_timeout,
                        progress=progress,
                    )
            else:
                result = await send_chunks(self.path, channel, chunk_size=settings.chunk_size, progress=progress)
        finally:
            lines.detach()
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
        return note, details

    async def _note(self, *, progress: int | None = None, state: RunState | None = None, line: str | None = None) -> None:
        """Report into the job; a database failure must not stop the upload."""
        try:
            await self._jobs.update(self.job_id, progress=progress, state=state, log=line)
        except VareonError as exc:
            log.warning("%s: upload job %s not updated: %s", self._actor, self.job_id, exc)


def _jsonable(details: Any) -> dict[str, Any] | None:
    """Job details must be a JSON object; an error's details may be a list or a string."""
    if details is None or isinstance(details, dict):
        return details
    return {"details": details}


def sweep_uploads(directory: Path) -> int:
    """Remove every file in ``directory`` (at boot, when no upload runs: what a crash or a kill
    left there); return how many went. A missing directory is an empty one."""
    removed = 0
    try:
        entries = list(directory.iterdir())
    except FileNotFoundError:
        return 0
    for entry in entries:
        if entry.is_file() or entry.is_symlink():
            try:
                entry.unlink()
                removed += 1
            except OSError as exc:
                log.warning("cannot remove %s, left by an unfinished upload: %s", entry, exc)
    return removed
