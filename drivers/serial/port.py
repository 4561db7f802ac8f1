"""A serial port by its device path, read and written on its file descriptor: :class:`SerialLink`
and :func:`open_port`.

pyserial opens and configures the port (raw mode, speed, framing, flow control); from then on
the link reads and writes the descriptor itself, waiting with :func:`trio.lowlevel.wait_readable`
/ ``wait_writable``, so a quiet device costs no thread and no polling. A pseudo-terminal (a
simulator's ``os.openpty()`` slave) is a device path like any other. A character device that is
not a terminal, a FIFO, or a pseudo-terminal that refuses a setting, is used as it is, without
port settings (the description says so). A regular file is refused: commands would be written
into it.
"""

from __future__ import annotations

import errno
import fcntl
import logging
import os
import stat
import termios
from collections.abc import Awaitable, Callable
from functools import partial
from typing import TYPE_CHECKING, Any, TypeVar

import trio

from drivers._link_base import LinkBase, hand_over
from drivers.errors import LinkConfigError, LinkUnavailableError

from .settings import SerialSettings

if TYPE_CHECKING:
    import serial as pyserial

__all__ = ["SerialLink", "open_port"]

log = logging.getLogger("vareon.drivers.serial")

_PTY_MAJORS = range(136, 144)  # Unix98 pseudo-terminal slaves (/dev/pts/N) on Linux

_T = TypeVar("_T")


class SerialLink(LinkBase):
    """A serial port (or pseudo-terminal) read and written through its file descriptor; its
    description reads ``/dev/ttyUSB0 at 115200 baud 8N1``.

    One task may receive while another sends; concurrent senders (or receivers) are served in turn.
    """

    def __init__(self, port: pyserial.Serial | None, fd: int, description: str) -> None:
        super().__init__(description)
        self._port = port  # None when the path was opened without pyserial (not a terminal)
        self._fd = fd

    def fileno(self) -> int:
        """The descriptor the link reads and writes."""
        return self._fd

    async def receive(self, max_bytes: int = 65536) -> bytes:
        """The next bytes from the device (at least one).

        Raises:
            LinkBrokenError: the device went away (unplugged, the far end of a pty closed).
            LinkClosedError: we closed the link.
        """
        async with self._receive_lock:
            await trio.lowlevel.checkpoint_if_cancelled()
            data = await self._attempt(partial(os.read, self._fd, max_bytes), trio.lowlevel.wait_readable)
            if not data:
                # Readable but empty: the terminal was hung up (USB unplugged).
                raise self._broke(f"{self._description} went away (hung up)")
            await trio.lowlevel.cancel_shielded_checkpoint()
            return data

    async def send(self, data: bytes) -> None:
        """Write all of ``data``. A cancelled send may have written a part of it.

        Raises:
            LinkBrokenError: the device went away.
            LinkClosedError: we closed the link.
        """
        async with self._send_lock:
            await trio.lowlevel.checkpoint_if_cancelled()
            self._check_open()
            view = memoryview(data)
            while view:
                written = await self._attempt(partial(os.write, self._fd, view), trio.lowlevel.wait_writable)
                view = view[written:]
            await trio.lowlevel.cancel_shielded_checkpoint()

    async def _attempt(self, call: Callable[[], _T], wait: Callable[[int], Awaitable[None]]) -> _T:
        """``call()`` (a read or write on the non-blocking descriptor), waiting with ``wait``
        until the descriptor is ready each time it would block."""
        while True:
            self._check_open()
            try:
                return call()
            except BlockingIOError:
                pass
            except OSError as exc:
                raise self._gone(exc.strerror or exc) from exc
            try:
                await wait(self._fd)
            except trio.ClosedResourceError as exc:
                raise self._closed_error() from exc

    async def _close(self) -> None:
        # notify_closing wakes a task blocked on the descriptor; the close itself runs in a
        # thread, as the kernel may wait for unsent output to drain.
        trio.lowlevel.notify_closing(self._fd)
        close = self._port.close if self._port is not None else (lambda: os.close(self._fd))
        try:
            await trio.to_thread.run_sync(close, abandon_on_cancel=True)
        except OSError as exc:
            log.warning("closing %s failed: %s", self._description, exc)


async def open_port(path: str, settings: SerialSettings) -> SerialLink:
    """Open and configure the port at ``path`` (in a thread: opening may block).

    Raises:
        LinkConfigError: the path is not a device, or a real port refuses the settings.
        LinkUnavailableError: no such device now, permission denied, or in use.
    """
    port, fd, note = await trio.to_thread.run_sync(_open_port_blocking, path, settings)
    description = f"{path} at {settings.framing()}" if not note else f"{path} ({note})"
    return await hand_over(SerialLink(port, fd, description))


def _open_port_blocking(path: str, settings: SerialSettings) -> tuple[Any, int, str]:
    """Open and configure ``path``; fall back to the bare descriptor where settings cannot apply.

    Returns ``(pyserial port or None, fd, note)``; ``note`` says why settings were not applied.
    """
    import serial

    port = serial.Serial(
        port=None, timeout=0, write_timeout=0, exclusive=settings.exclusive or None, **settings.pyserial_arguments()
    )
    port.port = path
    try:
        port.open()
    except serial.SerialException as exc:
        if exc.errno is not None:
            raise _open_error(path, exc) from exc
        problem: Exception = exc
    except (ValueError, termios.error, OSError) as exc:
        problem = exc
    else:
        fd = port.fileno()
        os.set_blocking(fd, False)
        _read_returns_eagain(fd)
        return port, fd, ""
    return _open_bare(path, settings, problem)


def _open_bare(path: str, settings: SerialSettings, problem: Exception) -> tuple[None, int, str]:
    """Open ``path`` without pyserial, if it is not a terminal or is a pseudo-terminal."""
    try:
        fd = os.open(path, os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as exc:
        raise _open_error(path, exc) from exc
    try:
        mode = os.fstat(fd).st_mode
        if not (stat.S_ISCHR(mode) or stat.S_ISFIFO(mode)):
            raise LinkConfigError(
                f"{path} is not a device (a character device or a FIFO); give the port's path, such as /dev/ttyUSB0",
                details={"path": path},
            )
        if os.isatty(fd) and os.major(os.fstat(fd).st_rdev) not in _PTY_MAJORS:
            # A real port that refuses its settings would talk garbage at the wrong speed.
            raise LinkConfigError(
                f"{path} refused the settings {settings.framing()}: {problem}; check the baud rate and framing",
                details={"path": path},
            )
        note = "a pseudo-terminal" if os.isatty(fd) else "not a terminal"
        if os.isatty(fd):
            _make_raw(fd)
        if settings.exclusive:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as exc:
                raise _open_error(path, exc) from exc
    except BaseException:
        os.close(fd)
        raise
    log.warning("%s: port settings not applied (%s): %s", path, note, problem)
    return None, fd, f"{note}, port settings not applied"


def _open_error(path: str, exc: OSError) -> LinkUnavailableError:
    code = exc.errno
    if code in (errno.ENOENT, errno.ENODEV, errno.ENXIO):
        return LinkUnavailableError(f"{path} does not exist; is the device plugged in? (will retry)")
    if code in (errno.EACCES, errno.EPERM):
        return LinkUnavailableError(
            f"permission denied on {path}; add the user running Vareon to the dialout group"
            " (sudo usermod -aG dialout $USER, then log in again)"
        )
    if code in (errno.EBUSY, errno.EWOULDBLOCK):
        return LinkUnavailableError(f"{path} is in use by another program (it holds the port's lock)")
    if _is_directory(path):
        return LinkUnavailableError(f"{path} is a directory, not a device")
    return LinkUnavailableError(f"cannot open {path}: {exc.strerror or exc}")


def _is_directory(path: str) -> bool:
    try:
        return stat.S_ISDIR(os.stat(path).st_mode)
    except OSError:
        return False


def _read_returns_eagain(fd: int) -> None:
    # pyserial sets VMIN=0, VTIME=0: a read with nothing waiting returns b"" like an end of
    # file. VMIN=1 makes it fail with EAGAIN (the descriptor is non-blocking), so b"" means hung up.
    try:
        attributes = termios.tcgetattr(fd)
        attributes[6][termios.VMIN] = 1
        attributes[6][termios.VTIME] = 0
        termios.tcsetattr(fd, termios.TCSANOW, attributes)
    except termios.error as exc:
        log.debug("cannot set VMIN on fd %d: %s", fd, exc)


def _make_raw(fd: int) -> None:
    # The bits pyserial would have set, without touching the speed the pty refused.
    try:
        iflag, oflag, cflag, lflag, ispeed, ospeed, cc = termios.tcgetattr(fd)
        cflag |= termios.CLOCAL | termios.CREAD
        lflag &= ~(termios.ICANON | termios.ECHO | termios.ECHOE | termios.ECHOK | termios.ECHONL | termios.ISIG | termios.IEXTEN)
        oflag &= ~(termios.OPOST | termios.ONLCR | termios.OCRNL)
        iflag &= ~(termios.INLCR | termios.IGNCR | termios.ICRNL | termios.IGNBRK | termios.IXON | termios.IXOFF)
        cc[termios.VMIN] = 1
        cc[termios.VTIME] = 0
        termios.tcsetattr(fd, termios.TCSANOW, [iflag, oflag, cflag, lflag, ispeed, ospeed, cc])
    except termios.error as exc:
        log.debug("cannot make fd %d raw: %s", fd, exc)
