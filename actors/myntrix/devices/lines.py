"""Lines on a device's link: bytes split into lines (:class:`LineSplitter`), and lines routed to
whoever holds the device's command slot (:class:`LineRouter`). Used by the device actor."""

from __future__ import annotations

import codecs
import math

import trio

__all__ = ["LineRouter", "LineSplitter"]


class LineSplitter:
    """Bytes into lines: decoded incrementally, any of ``\\n``, ``\\r\\n``, ``\\r`` ending a line."""

    def __init__(self, encoding: str, max_line: int, *, lone_cr: bool) -> None:
        self._decoder = codecs.getincrementaldecoder(encoding)(errors="replace")
        self._partial = ""
        self._max = max_line
        # A "\r" at the end of a read may be half of a "\r\n" still on its way; a device whose
        # lines end in a lone "\r" would then wait for its next byte, unless configured so.
        self._lone_cr = lone_cr

    def feed(self, data: bytes) -> list[str]:
        text = self._partial + self._decoder.decode(data)
        hold = ""
        if text.endswith("\r") and not self._lone_cr:
            text, hold = text[:-1], "\r"
        if "\r" in text:
            text = text.replace("\r\n", "\n").replace("\r", "\n")
        *lines, rest = text.split("\n")
        if len(rest) > self._max:
            lines.append(rest)
            rest = ""
        self._partial = rest + hold
        return [line for line in lines if line and not line.isspace()]


class LineRouter:
    """Routes received lines to the one holder of the command slot (if any)."""

    def __init__(self) -> None:
        self._send: trio.MemorySendChannel[str] | None = None
        self._open = False
        self.reason = "the device is not connected"

    def open(self) -> None:
        self._open = True
        self.reason = "the link closed"

    def close(self, reason: str) -> None:
        """The link is gone: the holder's receive ends (``EndOfChannel``)."""
        self._open = False
        self.reason = reason
        if self._send is not None:
            self._send.close()

    def attach(self) -> trio.MemoryReceiveChannel[str]:
        assert self._send is None, "one holder of the command slot at a time"
        send, receive = trio.open_memory_channel[str](math.inf)
        if not self._open:
            send.close()
        self._send = send
        return receive

    def detach(self) -> None:
        if self._send is not None:
            self._send.close()
            self._send = None

    def deliver(self, lines: list[str]) -> None:
        send = self._send
        if send is not None and self._open:
            for line in lines:
                send.send_nowait(line)
