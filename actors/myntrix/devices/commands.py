"""Commands on a device's link: a queued command (:class:`CommandTicket`), one command's exchange
with the device (:class:`CommandExchange`), and the replies still owed by commands that timed out
(:class:`OwedReplies`).

A line protocol has no request ids: a reply is whatever lines come after the command, up to a line
starting with the reply terminator (Marlin's ``ok``), one line when there is none (SCPI), or a line
matching the error pattern. So a reply that comes after its command timed out would be taken for
the next command's; :class:`OwedReplies` keeps count of such replies so that it is not.
"""

from __future__ import annotations

import logging
import re
from collections import deque

import trio

from drivers.errors import LinkError
from vareon_runtime.clock import utcnow
from vareon_runtime.errors import InvalidRequestError, ServiceError, UnavailableError, UpstreamTimeoutError

from .configuration import DeviceConfiguration
from .lines import LineRouter
from .schemas import CommandReply
from .session import LinkSession
from .telemetry import DeviceStream

__all__ = ["CommandExchange", "CommandTicket", "OwedReplies"]

log = logging.getLogger("vareon.devices.device")


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


class OwedReplies:
    """The reply terminators a device still owes for commands (or upload lines) that timed out.

    A timed-out command may still be answered: a printer finishes a long move and says ``ok``.
    Each one owes a line starting with the reply terminator until ``grace`` seconds (trio's clock)
    after it gave up. The reader passes every batch of lines through :meth:`screen`, where such a
    line pays the oldest debt and goes no further than the device's log. The next command waits
    for :meth:`settled` before it goes on the wire, so a late terminator is never taken for its
    reply, and a command the device dropped costs the next one a wait of ``grace``, not its reply.
    A new link starts with nothing owed (:meth:`clear`). Without a reply terminator (a reply is
    one line, as on a SCPI instrument) no line can be told for a late reply: nothing is owed.

    Args:
        terminator: the device's reply terminator (None: none).
        label: names the device in the log.
    """

    def __init__(self, terminator: str | None, *, label: str) -> None:
        self._terminator = terminator
        self._label = label
        self._due: deque[tuple[float, str]] = deque()  # (expires at, what owes it), oldest first
        self._changed = trio.Event()
        self.paid = 0  # late replies recognised
        self.expired = 0  # owed replies that never came

    def __len__(self) -> int:
        return len(self._due)

    def owe(self, what: str, grace: float) -> None:
        """``what`` timed out: its reply terminator is owed for ``grace`` seconds."""
        if self._terminator is not None:
            self._due.append((trio.current_time() + grace, what))

    def screen(self, lines: list[str]) -> list[str]:
        """``lines`` without the reply terminators that pay owed replies (the oldest debt first)."""
        if not self._due:
            return lines
        self._expire()
        terminator = self._terminator
        assert terminator is not None, "nothing is owed without a reply terminator"
        kept: list[str] = []
        for line in lines:
            if self._due and line.startswith(terminator):
                _, what = self._due.popleft()
                self.paid += 1
                log.info("%s: %r is the late reply to %r, which timed out; logged, not taken as a reply", self._label, line, what)
            else:
                kept.append(line)
        self._wake()
        return kept

    def clear(self) -> None:
        """Owe nothing (a new link: what the old one owed will not come over it)."""
        self._due.clear()
        self._wake()

    async def settled(self) -> None:
        """Return once nothing is owed: each owed reply came, or its grace passed."""
        while True:
            self._expire()
            if not self._due:
                return
            changed = self._changed
            with trio.move_on_at(self._due[0][0]):
                await changed.wait()

    def _expire(self) -> None:
        now = trio.current_time()
        while self._due and self._due[0][0] <= now:
            _, what = self._due.popleft()
            self.expired += 1
            log.warning("%s: no late reply to %r came within its grace; the device dropped it", self._label, what)

    def _wake(self) -> None:
        self._changed.set()
        self._changed = trio.Event()


class CommandExchange:
    """One command at a time over a device's link: framed, sent, and its reply collected.

    A reply that did not complete in time is owed (:attr:`owed`) for ``grace`` seconds.

    Args:
        config: the device's configuration (framing, reply terminator, error pattern).
        lines: the router the device's reader hands received lines to.
        stream: where each command sent is echoed.
        grace: how long a timed-out reply is waited for (the device's command timeout).
        label: names the device in the log.
    """

    def __init__(
        self,
        config: DeviceConfiguration,
        lines: LineRouter,
        stream: DeviceStream,
        *,
        grace: float,
        label: str,
    ) -> None:
        self.config = config
        self.owed = OwedReplies(config.reply_terminator, label=label)
        self._lines = lines
        self._stream = stream
        self._grace = grace
        self._error_pattern = re.compile(config.error_pattern) if config.error_pattern else None

    async def exchange(self, session: LinkSession, command: str, timeout: float, *, device: str) -> CommandReply:
        """Send one command and collect its reply (the caller holds the device's command slot).

        Args:
            session: the open link; a write that fails ends it (the keeper reconnects).
            command: the command, without its line terminator.
            timeout: seconds for the device to take the command and finish its reply.
            device: the device's name, for messages.

        Raises:
            InvalidRequestError: the command does not fit the device's encoding.
            UpstreamTimeoutError: the reply did not complete within ``timeout`` (it is then owed).
            UnavailableError: the link failed or dropped meanwhile; the message says why the
                link ended (the first break, whoever noticed it).
        """
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
                raise UnavailableError(
                    f"could not send {command!r} to device {device!r}: {session.failed(exc)}",
                    details={"command": command, "received": received},
                ) from exc
            if sending.cancelled_caught:
                raise UpstreamTimeoutError(
                    f"device {device!r} did not take {command!r} within {timeout:g}s (its input is blocked)",
                    details={"command": command, "timeout": timeout, "received": received},
                )
            self._stream.sent(command, utcnow())
            ok = True
            with trio.move_on_at(deadline) as waiting:
                while True:
                    try:
                        line = await inbox.receive()
                    except trio.EndOfChannel:
                        raise UnavailableError(
                            f"no reply to {command!r} from device {device!r}: {session.ended()}",
                            details={"command": command, "received": received},
                        ) from None
                    received.append(line)
                    if self._error_pattern is not None and self._error_pattern.search(line):
                        ok = False
                        break
                    if terminator is None or line.startswith(terminator):
                        break
            if waiting.cancelled_caught:
                self.owed.owe(command, self._grace)
                expected = f"a line starting with {terminator!r}" if terminator is not None else "one line"
                raise UpstreamTimeoutError(
                    f"device {device!r} did not finish its reply to {command!r} within {timeout:g}s:"
                    f" expected {expected}, received {len(received)} line(s). Send a longer 'timeout' (or set"
                    " the configuration's commandTimeout) if it needs more time",
                    details={"command": command, "timeout": timeout, "received": received},
                )
            duration = (trio.current_time() - started) * 1000
            return CommandReply(command=command, reply=received, ok=ok, duration_ms=round(duration, 3))
        finally:
            self._lines.detach()
