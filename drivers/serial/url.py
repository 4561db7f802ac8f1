"""pyserial's URL handlers (``socket://``, ``rfc2217://``, ``loop://``) driven from worker
threads: :class:`SerialUrlLink` and :func:`open_url`.

The handlers have no descriptor the runtime could wait on (or hide it behind their own
buffering), so their blocking calls run in worker threads, each read waiting at most
:data:`READ_POLL` seconds so a cancelled read returns promptly without losing what it read.
They are for compatibility; ``tcp://`` reaches a raw TCP device faster.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import trio

from drivers._link_base import LinkBase, hand_over
from drivers.errors import LinkConfigError, LinkUnavailableError

from .settings import SerialSettings

if TYPE_CHECKING:
    import serial as pyserial

__all__ = ["READ_POLL", "WRITE_TIMEOUT", "SerialUrlLink", "open_url"]

log = logging.getLogger("vareon.drivers.serial")

READ_POLL = 0.05
"""Seconds one threaded read waits for a byte; bounds how long cancelling it takes."""

WRITE_TIMEOUT = 10.0
"""Seconds a URL handler may refuse to take data before the link is considered gone."""

_WRITE_CHUNK = 1024  # a threaded write is cut in pieces so cancellation takes effect between them


class SerialUrlLink(LinkBase):
    """A pyserial URL handler driven from worker threads; its description reads
    ``socket://host:port (pyserial)``.

    Each read waits at most :data:`READ_POLL` in its thread and is never abandoned, so a
    cancelled ``receive`` returns within that time and no byte read by the thread is lost.
    Writes go in pieces of 1 KiB, each bounded by :data:`WRITE_TIMEOUT`. A pending ``receive``
    ends with :class:`~drivers.errors.LinkClosedError` within :data:`READ_POLL` of our close; the
    far end going away is a :class:`~drivers.errors.LinkBrokenError`.
    """

    def __init__(self, port: pyserial.Serial, description: str) -> None:
        super().__init__(description)
        self._port = port
        # Our own limiter: a link's threads (reader, writer, closer) never starve the store's.
        self._limiter = trio.CapacityLimiter(3)

    async def receive(self, max_bytes: int = 65536) -> bytes:
        """The next bytes from the device (at least one).

        Raises:
            LinkBrokenError: the far end went away.
            LinkClosedError: we closed the link.
        """
        async with self._receive_lock:
            while True:
                self._check_open()
                try:
                    data = await trio.to_thread.run_sync(self._read, max_bytes, limiter=self._limiter)
                except OSError as exc:  # serial.SerialException is an OSError
                    raise self._gone(exc) from exc
                if data:
                    return data

    async def send(self, data: bytes) -> None:
        """Write all of ``data``. A cancelled send may have written a part of it.

        Raises:
            LinkBrokenError: the far end went away, or took nothing for :data:`WRITE_TIMEOUT`
                seconds.
            LinkClosedError: we closed the link.
        """
        async with self._send_lock:
            self._check_open()
            for start in range(0, len(data), _WRITE_CHUNK):
                self._check_open()
                piece = data[start : start + _WRITE_CHUNK]
                try:
                    await trio.to_thread.run_sync(self._write, piece, limiter=self._limiter)
                except OSError as exc:
                    raise self._gone(exc) from exc

    async def _open(self) -> None:
        await trio.to_thread.run_sync(self._port.open, limiter=self._limiter)

    async def _close(self) -> None:
        try:
            # socket:// sleeps 0.3 s in close(); a cancelled aclose need not wait for that.
            await trio.to_thread.run_sync(self._port.close, abandon_on_cancel=True, limiter=self._limiter)
        except Exception as exc:  # noqa: BLE001 - a handler's close may fail in any way; closing must not
            log.warning("closing %s failed: %s", self._description, exc)

    def _read(self, max_bytes: int) -> bytes:
        port = self._port
        try:
            data = port.read(1)  # waits at most READ_POLL (the port's timeout)
        except Exception:
            if self._closed:  # closed under our feet by aclose: whatever broke, the link is closed
                return b""
            raise
        try:
            while data and len(data) < max_bytes:
                waiting = port.in_waiting
                if not waiting:
                    break
                data += port.read(min(waiting, max_bytes - len(data)))
        except Exception:  # hand over what arrived; the next read meets the error again
            log.debug("%s: read ended early", self._description, exc_info=True)
        return data

    def _write(self, piece: bytes) -> None:
        try:
            self._port.write(piece)
        except Exception:
            if self._closed:
                raise self._closed_error() from None
            raise


async def open_url(url: str, settings: SerialSettings) -> SerialUrlLink:
    """Open pyserial's handler of ``url`` (its options are passed as ``settings``, not in it).

    Raises:
        LinkConfigError: pyserial refuses the URL or the settings.
        LinkUnavailableError: the handler cannot connect (nothing listens there).
    """
    import serial

    try:
        port = serial.serial_for_url(
            url, do_not_open=True, timeout=READ_POLL, write_timeout=WRITE_TIMEOUT, **settings.pyserial_arguments()
        )
    except (ValueError, serial.SerialException) as exc:
        raise LinkConfigError(f"pyserial refuses {url}: {exc}") from exc
    # socket:// ignores the port settings; saying "115200 baud" would mislead.
    shown = url if url.startswith("socket:") else f"{url} at {settings.framing()}"
    link = SerialUrlLink(port, f"{shown} (pyserial)")
    try:
        await link._open()
    except (OSError, ValueError) as exc:  # serial.SerialException is an OSError
        raise LinkUnavailableError(f"cannot open {url}: {_pyserial_reason(exc)}; is the server listening?") from exc
    return await hand_over(link)


def _pyserial_reason(exc: BaseException) -> str:
    # pyserial wraps the OS error's text in its own; keep the innermost useful part.
    text = str(exc)
    return text.rpartition(": ")[2] if ": " in text else text
