"""Lines of a child's output pipe: :class:`LineReader`."""

from __future__ import annotations

import trio

__all__ = ["MAX_LINE", "LineReader"]

MAX_LINE = 8192
"""Bytes in one line at most; a longer line is split into pieces of this size."""


class LineReader:
    """Decoded lines of one output pipe; iterate it, or await :meth:`receive_line`.

    Lines are decoded as UTF-8 with undecodable bytes replaced, without their line ending. A
    line longer than ``max_line`` bytes comes out in pieces of ``max_line`` bytes. A final line
    without a newline is returned at end of file.
    """

    def __init__(self, stream: trio.abc.ReceiveStream | None, max_line: int = MAX_LINE) -> None:
        if max_line < 1:
            raise ValueError(f"max_line must be at least 1 byte, not {max_line!r}")
        self._stream = stream
        self._max_line = max_line
        self._buffer = bytearray()
        self._eof = stream is None

    async def receive_line(self) -> str | None:
        """The next line, or None at end of file (the pipe closed, or the reader was closed)."""
        buffer, limit = self._buffer, self._max_line
        while True:
            newline = buffer.find(b"\n", 0, limit + 1)
            if newline >= 0:
                line = bytes(buffer[:newline])
                del buffer[: newline + 1]
                return _decode(line)
            if len(buffer) >= limit:
                piece = bytes(buffer[:limit])
                del buffer[:limit]
                return _decode(piece)
            if self._eof:
                if buffer:
                    rest = bytes(buffer)
                    buffer.clear()
                    return _decode(rest)
                await trio.lowlevel.checkpoint()
                return None
            assert self._stream is not None
            try:
                data = await self._stream.receive_some(65536)
            except (trio.ClosedResourceError, trio.BrokenResourceError):
                data = b""  # closed by us, or the pipe broke: either way nothing more comes
            if data:
                buffer += data
            else:
                self._eof = True

    def __aiter__(self) -> LineReader:
        return self

    async def __anext__(self) -> str:
        line = await self.receive_line()
        if line is None:
            raise StopAsyncIteration
        return line

    async def aclose(self) -> None:
        """Close the pipe; a pending :meth:`receive_line` returns what it has, then None."""
        self._eof = True
        if self._stream is not None:
            await self._stream.aclose()


def _decode(raw: bytes) -> str:
    return raw.decode("utf-8", "replace").removesuffix("\r")
