"""Uploads to a device, with flow control: G-code line by line, or a file in raw chunks.

The sender knows nothing of actors or links: it talks to a :class:`LineChannel` (raw bytes out,
complete lines in), so the device actor can hand it the link it owns while its reader task
keeps dispatching the lines, and a test can hand it a pty.

G-code follows the Marlin host protocol, the one OctoPrint and Pronterface speak:

- ``;`` comments and blank lines are dropped (the printer would only answer ``ok`` to them);
- with line numbers, ``M110 N0`` resets the printer's count, then every line goes out as
  ``N<n> <command>*<checksum>``, the checksum being the XOR of the bytes before ``*``;
- each line waits for its ``ok`` (stop and wait: the printer's buffer never overflows).
  Temperature reports and ``echo:`` lines in between are ignored; ``busy:`` restarts the
  reply timeout (a long move or a heat-up is not a dead printer);
- ``Resend: <n>`` means line ``n`` arrived garbled: the sender goes back to ``n`` after the
  ``ok`` that follows, and gives up after ``max_resends`` attempts at the same line;
- an ``Error:`` line that is not about transmission (``Printer halted``, thermal runaway) ends
  the upload at once: the printer has stopped and will not answer.

Cancelling the upload (its cancel scope) stops between lines: the line on the wire has its reply
awaited first (shielded, bounded by the reply timeout), so the next command on the channel does
not read a stale ``ok``.
"""

from __future__ import annotations

import re
from collections import deque
from collections.abc import AsyncGenerator, AsyncIterable, AsyncIterator, Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import trio

from vareon_runtime.errors import ServiceError, UpstreamTimeoutError

__all__ = [
    "LineChannel",
    "Progress",
    "UploadError",
    "UploadResult",
    "UploadTimeoutError",
    "count_gcode_lines",
    "gcode_checksum",
    "gcode_lines",
    "send_chunks",
    "send_gcode",
]

Progress = Callable[[int, int], Awaitable[None]]
"""Called as ``progress(done, total)``: lines (G-code) or bytes (chunks)."""

PROGRESS_INTERVAL = 0.1
"""Seconds between progress calls, at most; a call also comes at every whole percent and at the end."""

READ_SIZE = 64 * 1024
"""Bytes read from a G-code file at a time."""

RECEIVED_KEPT = 20
"""How many of the last received lines an error carries in its details."""

HISTORY = 256
"""How many sent lines are kept for a resend; Marlin asks for the line after its last good one,
which stop-and-wait keeps within one line, so this is ample."""

_RESEND = re.compile(r"^(?:resend|rs)\s*:?\s*N?:?\s*(?P<number>\d+)", re.IGNORECASE)
# Marlin's transmission errors (they come with a Resend:); any other Error: means it stopped.
_TRANSMISSION_ERROR = re.compile(r"checksum|line ?number|last line", re.IGNORECASE)


class LineChannel(Protocol):
    """A device as the sender sees it."""

    async def send(self, data: bytes) -> None:
        """Write raw bytes to the device."""
        ...

    async def receive_line(self) -> str:
        """The next complete line from the device, without its terminator."""
        ...


@dataclass(frozen=True)
class UploadResult:
    """What an upload did.

    Attributes:
        lines_sent: G-code lines delivered (each counted once), or chunks sent in chunk mode.
        resends: lines sent again because the device asked.
        bytes_sent: every byte written, resends and ``M110`` included.
        duration: seconds, by the trio clock.
    """

    lines_sent: int
    resends: int
    bytes_sent: int
    duration: float


class UploadError(ServiceError):
    """The device refused the upload: it stopped with an error, or kept asking for the same line."""

    status = 502
    code = "upload_failed"


class UploadTimeoutError(UploadError, UpstreamTimeoutError):
    """The device did not acknowledge a line within the reply timeout (504)."""

    status = 504
    code = "timeout"


def gcode_checksum(data: bytes) -> int:
    """The Marlin checksum: the XOR of the bytes (everything before ``*``)."""
    checksum = 0
    for byte in data:
        checksum ^= byte
    return checksum


def _command(raw: str) -> str:
    """``raw`` without its ``;`` comment and surrounding whitespace (``""`` when nothing is left)."""
    return raw.split(";", 1)[0].strip()


def count_gcode_lines(path: Path) -> int:
    """How many lines of the file :func:`send_gcode` will send (comments and blank lines excluded).

    Blocking: call it from a worker thread for a large file.
    """
    with path.open(encoding="utf-8", errors="replace") as file:
        return sum(1 for raw in file if _command(raw))


async def gcode_lines(path: Path) -> AsyncIterator[str]:
    """The lines of a G-code file, read in blocks by a worker thread (never the whole file).

    :func:`send_gcode` closes it when the upload ends; elsewhere use ``contextlib.aclosing``.
    """
    async with await trio.open_file(path, "rb") as file:
        rest = b""
        while block := await file.read(READ_SIZE):
            *lines, rest = (rest + block).split(b"\n")
            for line in lines:
                yield line.decode("utf-8", errors="replace")
        if rest:
            yield rest.decode("utf-8", errors="replace")


class _Reporter:
    """Calls ``progress`` at most every PROGRESS_INTERVAL, at each whole percent, and at the end."""

    def __init__(self, progress: Progress, total: int) -> None:
        self._progress = progress
        self.total = max(total, 0)
        self._last_time = -float("inf")
        self._last_percent = -1

    async def __call__(self, done: int, *, final: bool = False) -> None:
        self.total = max(self.total, done)
        now = trio.current_time()
        percent = 100 * done // self.total if self.total else 100
        if final or percent > self._last_percent or now - self._last_time >= PROGRESS_INTERVAL:
            self._last_time, self._last_percent = now, percent
            await self._progress(done, self.total)


@dataclass(eq=False, kw_only=True)
class _GcodeSender:
    """Sends numbered G-code lines over ``channel``, each after the ``ok`` of the one before."""

    channel: LineChannel
    line_numbers: bool
    terminator: bytes
    reply_timeout: float
    max_resends: int
    history: deque[tuple[int, str]] = field(default_factory=lambda: deque(maxlen=HISTORY))
    received: deque[str] = field(default_factory=lambda: deque(maxlen=RECEIVED_KEPT))
    resends: int = 0
    bytes_sent: int = 0

    def _frame(self, number: int, command: str) -> bytes:
        if not self.line_numbers or number == 0:
            return command.encode() + self.terminator
        body = f"N{number} {command}".encode()
        return body + b"*" + str(gcode_checksum(body)).encode() + self.terminator

    async def deliver(self, number: int, command: str) -> None:
        """Send line ``number`` and wait for its ``ok``, resending as the device asks."""
        self.history.append((number, command))
        queue: deque[tuple[int, str]] = deque([(number, command)])
        attempts: dict[int, int] = {}
        while queue:
            current, text = queue.popleft()
            resend = await self._exchange(current, text)
            if resend is None:
                continue
            if not self.line_numbers:
                resend = current  # without numbers the device can only mean the line it just got
            if resend > current:
                continue  # it already has this line (a duplicate): nothing to send again
            attempts[resend] = attempts.get(resend, 0) + 1
            if attempts[resend] > self.max_resends:
                raise UploadError(
                    f"the device asked for line {resend} {attempts[resend]} times; expected it to accept"
                    f" the line within {self.max_resends} resends. Check the cable and the baud rate",
                    details={"line": resend, "received": list(self.received)},
                )
            queue = deque(self._since(resend))
            self.resends += len(queue)

    def _since(self, number: int) -> list[tuple[int, str]]:
        lines = [(n, text) for n, text in self.history if n >= number]
        if not lines or lines[0][0] != number:
            raise UploadError(
                f"the device asked to resend line {number}, which is no longer kept"
                f" (the last {HISTORY} lines are); restart the upload",
                details={"line": number, "received": list(self.received)},
            )
        return lines

    async def _exchange(self, number: int, command: str) -> int | None:
        """Send one line; its reply: ``None`` for ``ok``, else the line number the device wants."""
        frame = self._frame(number, command)
        # A half-written line would garble the next command, so the write is not interrupted.
        with trio.CancelScope(shield=True):
            with trio.move_on_after(self.reply_timeout) as sending:
                await self.channel.send(frame)
        if sending.cancelled_caught:
            raise self._timeout(number, command, "accept")
        self.bytes_sent += len(frame)
        try:
            return await self._reply(number, command)
        except trio.Cancelled:
            # Collect the reply of the line on the wire, so the channel stays in step for the
            # next command; bounded, and whatever it says no longer matters.
            with trio.CancelScope(shield=True):
                with trio.move_on_after(self.reply_timeout):
                    try:
                        await self._reply(number, command)
                    except Exception:  # a failing link shows itself to its next user
                        pass
            raise

    async def _reply(self, number: int, command: str) -> int | None:
        deadline = trio.current_time() + self.reply_timeout
        resend: int | None = None
        while True:
            with trio.move_on_at(deadline):
                line = (await self.channel.receive_line()).strip()
                self.received.append(line)
                if line == "ok" or line.startswith("ok "):
                    return resend
                if (match := _RESEND.match(line)) is not None:
                    resend = int(match.group("number"))
                elif "busy:" in line:
                    deadline = trio.current_time() + self.reply_timeout
                elif (line.startswith("Error:") and not _TRANSMISSION_ERROR.search(line)) or line.startswith("!!"):
                    raise UploadError(
                        f"the device stopped the upload at line {number} ({command}): {line!r};"
                        " fix the printer (it usually needs a reset) and upload again",
                        details={"line": number, "command": command, "received": list(self.received)},
                    )
                continue
            raise self._timeout(number, command, "answer")

    def _timeout(self, number: int, command: str, what: str) -> UploadTimeoutError:
        return UploadTimeoutError(
            f"the device did not {what} line {number} ({command}) within"
            f" {self.reply_timeout:g} s; expected 'ok'. Check that it is on and connected, or raise"
            " the device's commandTimeout if it needs longer",
            details={"line": number, "command": command, "received": list(self.received)},
        )


async def send_gcode(
    lines: AsyncIterable[str] | Iterable[str],
    channel: LineChannel,
    *,
    total: int,
    line_numbers: bool,
    line_terminator: str,
    reply_timeout: float,
    progress: Progress,
    max_resends: int = 5,
) -> UploadResult:
    """Send G-code line by line, each waiting for its ``ok`` (see the module docstring).

    Args:
        lines: the G-code, raw (comments and blank lines are dropped here); an async generator
            (:func:`gcode_lines`) is closed when the upload ends, however it ends.
        channel: the device.
        total: how many lines will be sent (:func:`count_gcode_lines`), for progress.
        line_numbers: number and checksum every line (Marlin), after ``M110 N0``.
        line_terminator: what ends a line on the wire (``"\\n"``).
        reply_timeout: seconds to wait for each line's ``ok`` (restarted by ``busy:``).
        progress: called with ``(lines done, total)``.
        max_resends: how many times the same line may be asked for again before giving up.

    Returns:
        What was sent.

    Raises:
        UploadTimeoutError: a line got no ``ok`` in time (504); details hold the last lines received.
        UploadError: the device stopped with an error, or kept refusing a line.
        ValueError: a bad argument.
    """
    if reply_timeout <= 0:
        raise ValueError(f"reply_timeout must be positive seconds, not {reply_timeout!r}")
    if max_resends < 0:
        raise ValueError(f"max_resends must be 0 or more, not {max_resends!r}")
    started = trio.current_time()
    sender = _GcodeSender(
        channel=channel,
        line_numbers=line_numbers,
        terminator=line_terminator.encode(),
        reply_timeout=reply_timeout,
        max_resends=max_resends,
    )
    report = _Reporter(progress, total)
    await report(0)
    if line_numbers:
        await sender.deliver(0, "M110 N0")
    done = 0

    async def step(raw: str) -> None:
        nonlocal done
        command = _command(raw)
        if command:
            await sender.deliver(done + 1, command)
            done += 1
            await report(done)

    if isinstance(lines, AsyncIterable):
        iterator = aiter(lines)
        try:
            async for raw in iterator:
                await step(raw)
        finally:
            if isinstance(iterator, AsyncGenerator):  # a file reader: close the file now, not at GC
                await iterator.aclose()
    else:
        for raw in lines:
            await step(raw)
    await report(done, final=True)
    return UploadResult(done, sender.resends, sender.bytes_sent, trio.current_time() - started)


async def send_chunks(path: Path, channel: LineChannel, *, chunk_size: int, progress: Progress) -> UploadResult:
    """Send a file as raw chunks of ``chunk_size`` bytes, for devices without a line protocol.

    No reply is awaited: the link's own flow control (the write blocking) paces it.

    Args:
        path: the file.
        channel: the device.
        chunk_size: bytes per write.
        progress: called with ``(bytes done, file size)``.

    Returns:
        What was sent; ``lines_sent`` counts chunks.

    Raises:
        ValueError: ``chunk_size`` is not positive.
    """
    if chunk_size <= 0:
        raise ValueError(f"chunk_size must be a positive number of bytes, not {chunk_size!r}")
    started = trio.current_time()
    total = (await trio.Path(path).stat()).st_size
    report = _Reporter(progress, total)
    await report(0)
    chunks = done = 0
    async with await trio.open_file(path, "rb") as file:
        while chunk := await file.read(chunk_size):
            await channel.send(chunk)
            chunks += 1
            done += len(chunk)
            await report(done)
    await report(done, final=True)
    return UploadResult(chunks, 0, done, trio.current_time() - started)
