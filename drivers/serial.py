"""Serial links: a device path with options, or one of pyserial's URL handlers.

::

    /dev/ttyUSB0?baudrate=115200&bytesize=8&parity=N&stopbits=1&rtscts=0&xonxoff=0
    socket://host:port          a serial port shared over TCP (ser2net raw mode, a simulator)
    rfc2217://host:port         a remote serial port with control lines (RFC 2217)
    loop://                     a loopback: what is sent comes back (tests, demos)

A device path is opened with pyserial, which configures the port (raw mode, speed, framing,
flow control); from then on the runtime reads and writes the port's file descriptor itself,
waiting with :func:`trio.lowlevel.wait_readable` / ``wait_writable``, so a quiet device costs no
thread and no polling. A pseudo-terminal (a simulator's ``os.openpty()`` slave) is a device path
like any other. A character device that is not a terminal, a FIFO, or a pseudo-terminal that
refuses a setting, is used as it is, without port settings (the description says so). A regular
file is refused: commands would be written into it.

pyserial's URL handlers have no descriptor the runtime could wait on (or hide it behind their
own buffering), so their blocking calls run in worker threads, each read waiting at most
:data:`READ_POLL` seconds so a cancelled read returns promptly without losing what it read.
They are for compatibility; ``tcp://`` reaches a raw TCP device faster.

pyserial is imported on first use, never when :mod:`drivers.link` is imported.
"""

from __future__ import annotations

import errno
import fcntl
import logging
import os
import stat
import termios
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import trio

from drivers._options import check_known, flag, host_and_port, one_of, positive_int
from drivers.errors import LinkClosedError, LinkConfigError, LinkUnavailableError
from drivers.link import ConnectionTarget, mask_connection_string

if TYPE_CHECKING:
    import serial as pyserial

__all__ = [
    "DEFAULT_BAUDRATE",
    "MAX_BAUDRATE",
    "READ_POLL",
    "WRITE_TIMEOUT",
    "SerialDriver",
    "SerialLink",
    "SerialSettings",
    "SerialUrlLink",
]

log = logging.getLogger("vareon.drivers.serial")

DEFAULT_BAUDRATE = 115200
"""The speed of a port whose connection string names none (Marlin, most Arduino sketches)."""

MAX_BAUDRATE = 50_000_000
"""Beyond any UART; larger numbers overflow the kernel's speed field."""

READ_POLL = 0.05
"""Seconds one threaded read waits for a byte; bounds how long cancelling it takes."""

WRITE_TIMEOUT = 10.0
"""Seconds a URL handler may refuse to take data before the link is considered gone."""

_WRITE_CHUNK = 1024  # a threaded write is cut in pieces so cancellation takes effect between them
_URL_SCHEMES = ("socket", "rfc2217", "loop")
_PARITIES = {"N": "N", "E": "E", "O": "O", "M": "M", "S": "S", "none": "N", "even": "E", "odd": "O", "mark": "M", "space": "S"}
_STOPBITS = {"1": 1, "1.5": 1.5, "2": 2}
_BYTESIZES = {"5": 5, "6": 6, "7": 7, "8": 8}
_PORT_OPTIONS = ("baudrate", "bytesize", "parity", "stopbits", "rtscts", "xonxoff", "dsrdtr", "exclusive")
_URL_OPTIONS = ("baudrate", "bytesize", "parity", "stopbits", "rtscts", "xonxoff", "dsrdtr")
_PTY_MAJORS = range(136, 144)  # Unix98 pseudo-terminal slaves (/dev/pts/N) on Linux


@dataclass(frozen=True)
class SerialSettings:
    """The checked options of a serial connection string.

    Attributes:
        baudrate: bits per second (any positive integer; the port may refuse exotic ones).
        bytesize: data bits, 5 to 8.
        parity: ``N``, ``E``, ``O``, ``M`` or ``S``.
        stopbits: 1, 1.5 or 2.
        rtscts: hardware (RTS/CTS) flow control.
        xonxoff: software (XON/XOFF) flow control.
        dsrdtr: DSR/DTR flow control.
        exclusive: take an exclusive lock on a device path, so a second program (or a second
            device record) cannot interleave its bytes with ours. On by default.
    """

    baudrate: int = DEFAULT_BAUDRATE
    bytesize: int = 8
    parity: str = "N"
    stopbits: float = 1
    rtscts: bool = False
    xonxoff: bool = False
    dsrdtr: bool = False
    exclusive: bool = True

    @classmethod
    def from_options(cls, options: Mapping[str, str], *, known: tuple[str, ...], what: str) -> SerialSettings:
        """Check ``options`` (the query of a connection string) and build the settings.

        Raises:
            LinkConfigError: an unknown option or a bad value; the message names it.
        """
        check_known(options, known, what=what)
        values: dict[str, Any] = {}
        if "baudrate" in options:
            values["baudrate"] = positive_int("baudrate", options["baudrate"], maximum=MAX_BAUDRATE)
        if "bytesize" in options:
            values["bytesize"] = one_of("bytesize", options["bytesize"], _BYTESIZES)
        if "parity" in options:
            values["parity"] = one_of("parity", options["parity"], _PARITIES)
        if "stopbits" in options:
            values["stopbits"] = one_of("stopbits", options["stopbits"], _STOPBITS)
        for name in ("rtscts", "xonxoff", "dsrdtr", "exclusive"):
            if name in options:
                values[name] = flag(name, options[name])
        return cls(**values)

    def framing(self) -> str:
        """``115200 baud 8N1`` plus any flow control."""
        text = f"{self.baudrate} baud {self.bytesize}{self.parity}{self.stopbits:g}"
        controls = [name for name in ("rtscts", "xonxoff", "dsrdtr") if getattr(self, name)]
        return " ".join([text, *controls])

    def pyserial_arguments(self) -> dict[str, Any]:
        """Keyword arguments of ``serial.Serial`` (without the port and timeouts)."""
        return {
            "baudrate": self.baudrate,
            "bytesize": self.bytesize,
            "parity": self.parity,
            "stopbits": self.stopbits,
            "rtscts": self.rtscts,
            "xonxoff": self.xonxoff,
            "dsrdtr": self.dsrdtr,
        }


class SerialDriver:
    """The driver of device paths and of pyserial's ``socket://``, ``rfc2217://`` and ``loop://``."""

    def check(self, target: ConnectionTarget) -> None:
        """Refuse a bad path, location or option, without touching the device.

        Raises:
            LinkConfigError: names the option or part that is wrong, and what is accepted.
        """
        self._settings(target)

    async def open(self, target: ConnectionTarget) -> SerialLink | SerialUrlLink:
        """Open the port (configured) or the URL handler.

        Raises:
            LinkConfigError: the target is wrong, or the port refuses its settings.
            LinkUnavailableError: no such device now, permission denied, in use, or refused.
        """
        settings = self._settings(target)
        if target.scheme == "serial":
            return await _open_path(target.location, settings)
        return await _open_url(_pyserial_url(target), settings)

    @staticmethod
    def _settings(target: ConnectionTarget) -> SerialSettings:
        if target.scheme == "serial":
            path = target.location
            if "\0" in path or not path.startswith("/") or path.endswith("/"):
                raise LinkConfigError(
                    f"a serial device path is absolute and names a device, e.g. /dev/ttyUSB0, not {path!r}"
                )
            return SerialSettings.from_options(target.options, known=_PORT_OPTIONS, what="a serial port")
        if target.scheme not in _URL_SCHEMES:
            raise LinkConfigError(
                f"the serial driver knows {', '.join(s + '://' for s in _URL_SCHEMES)} and device paths,"
                f" not {target.scheme}://"
            )
        what = f"a {target.scheme}:// link"
        if target.scheme == "loop":
            if target.location or target.path:
                raise LinkConfigError(f"loop:// takes no host or path, not {mask_connection_string(target.raw)!r}")
        else:
            if "@" in target.location:
                raise LinkConfigError(f"{target.scheme}:// takes no user name or password; write {target.scheme}://host:port")
            if target.path:
                raise LinkConfigError(f"{target.scheme}:// takes no path; write {target.scheme}://host:port")
            host_and_port(target.location, scheme=target.scheme)
        return SerialSettings.from_options(target.options, known=_URL_OPTIONS, what=what)


class SerialLink:
    """A serial port (or pseudo-terminal) read and written through its file descriptor.

    One task may receive while another sends; concurrent senders (or receivers) are served in turn.
    """

    def __init__(self, port: pyserial.Serial | None, fd: int, description: str) -> None:
        self._port = port  # None when the path was opened without pyserial (not a terminal)
        self._fd = fd
        self._description = description
        self._receive_lock = trio.Lock()
        self._send_lock = trio.Lock()
        self._closed = False

    @property
    def description(self) -> str:
        """``/dev/ttyUSB0 at 115200 baud 8N1``."""
        return self._description

    def fileno(self) -> int:
        """The descriptor the link reads and writes."""
        return self._fd

    async def receive(self, max_bytes: int = 65536) -> bytes:
        """The next bytes from the device (at least one).

        Raises:
            LinkClosedError: the device went away (unplugged, the far end of a pty closed) or
                we closed the link.
        """
        async with self._receive_lock:
            await trio.lowlevel.checkpoint_if_cancelled()
            while True:
                self._check_open()
                try:
                    data = os.read(self._fd, max_bytes)
                except BlockingIOError:
                    await self._wait(trio.lowlevel.wait_readable)
                    continue
                except OSError as exc:
                    raise self._gone(exc) from exc
                if not data:
                    # Readable but empty: the terminal was hung up (USB unplugged).
                    raise LinkClosedError(f"{self._description} went away (hung up)")
                await trio.lowlevel.cancel_shielded_checkpoint()
                return data

    async def send(self, data: bytes) -> None:
        """Write all of ``data``. A cancelled send may have written a part of it.

        Raises:
            LinkClosedError: the device went away, or we closed the link.
        """
        async with self._send_lock:
            await trio.lowlevel.checkpoint_if_cancelled()
            self._check_open()
            view = memoryview(data)
            while view:
                self._check_open()
                try:
                    written = os.write(self._fd, view)
                except BlockingIOError:
                    await self._wait(trio.lowlevel.wait_writable)
                    continue
                except OSError as exc:
                    raise self._gone(exc) from exc
                view = view[written:]
            await trio.lowlevel.cancel_shielded_checkpoint()

    async def aclose(self) -> None:
        """Close the port. Idempotent; never raises (a failed close is logged).

        A task blocked in ``receive`` or ``send`` gets :class:`LinkClosedError`. The close itself
        runs in a thread: the kernel may wait for unsent output to drain.
        """
        if self._closed:
            await trio.lowlevel.checkpoint()
            return
        self._closed = True
        trio.lowlevel.notify_closing(self._fd)
        close = self._port.close if self._port is not None else (lambda: os.close(self._fd))
        try:
            await trio.to_thread.run_sync(close, abandon_on_cancel=True)
        except OSError as exc:
            log.warning("closing %s failed: %s", self._description, exc)

    async def _wait(self, wait: Any) -> None:
        try:
            await wait(self._fd)
        except trio.ClosedResourceError as exc:
            raise LinkClosedError(f"the link to {self._description} was closed") from exc

    def _check_open(self) -> None:
        if self._closed:
            raise LinkClosedError(f"the link to {self._description} is closed")

    def _gone(self, exc: OSError) -> LinkClosedError:
        if self._closed:
            return LinkClosedError(f"the link to {self._description} was closed")
        return LinkClosedError(f"{self._description} went away: {exc.strerror or exc}")


class SerialUrlLink:
    """A pyserial URL handler (``socket://``, ``rfc2217://``, ``loop://``) driven from worker threads.

    Each read waits at most :data:`READ_POLL` in its thread and is never abandoned, so a
    cancelled ``receive`` returns within that time and no byte read by the thread is lost.
    Writes go in pieces of 1 KiB, each bounded by :data:`WRITE_TIMEOUT`.
    """

    def __init__(self, port: pyserial.Serial, description: str) -> None:
        self._port = port
        self._description = description
        # Our own limiter: a link's threads (reader, writer, closer) never starve the store's.
        self._limiter = trio.CapacityLimiter(3)
        self._receive_lock = trio.Lock()
        self._send_lock = trio.Lock()
        self._closed = False

    @property
    def description(self) -> str:
        """``socket://host:port (pyserial)``."""
        return self._description

    async def receive(self, max_bytes: int = 65536) -> bytes:
        """The next bytes from the device (at least one).

        Raises:
            LinkClosedError: the far end went away, or we closed the link.
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
            LinkClosedError: the far end went away, took nothing for :data:`WRITE_TIMEOUT`
                seconds, or we closed the link.
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

    async def aclose(self) -> None:
        """Close the handler. Idempotent; never raises (a failed close is logged).

        A pending ``receive`` ends with :class:`LinkClosedError` within :data:`READ_POLL`.
        """
        if self._closed:
            await trio.lowlevel.checkpoint()
            return
        self._closed = True
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
        except Exception:  # noqa: BLE001 - hand over what arrived; the next read meets the error again
            log.debug("%s: read ended early", self._description, exc_info=True)
        return data

    def _write(self, piece: bytes) -> None:
        try:
            self._port.write(piece)
        except Exception:
            if self._closed:
                raise LinkClosedError(f"the link to {self._description} was closed") from None
            raise

    def _check_open(self) -> None:
        if self._closed:
            raise LinkClosedError(f"the link to {self._description} is closed")

    def _gone(self, exc: OSError) -> LinkClosedError:
        if self._closed:
            return LinkClosedError(f"the link to {self._description} was closed")
        return LinkClosedError(f"{self._description} went away: {exc}")


def _pyserial() -> Any:
    import serial

    return serial


def _pyserial_url(target: ConnectionTarget) -> str:
    # Our options were checked and are passed as arguments; pyserial sees the bare URL.
    return f"{target.scheme}://{target.location}"


async def _open_path(path: str, settings: SerialSettings) -> SerialLink:
    opened = await trio.to_thread.run_sync(_open_port_blocking, path, settings)
    port, fd, note = opened
    description = f"{path} at {settings.framing()}" if not note else f"{path} ({note})"
    link = SerialLink(port, fd, description)
    try:
        await trio.lowlevel.checkpoint_if_cancelled()
    except trio.Cancelled:
        with trio.CancelScope(shield=True):
            await link.aclose()
        raise
    return link


def _open_port_blocking(path: str, settings: SerialSettings) -> tuple[Any, int, str]:
    """Open and configure ``path``; fall back to the bare descriptor where settings cannot apply.

    Returns ``(pyserial port or None, fd, note)``; ``note`` says why settings were not applied.
    """
    serial = _pyserial()
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


async def _open_url(url: str, settings: SerialSettings) -> SerialUrlLink:
    serial = _pyserial()
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
        await trio.to_thread.run_sync(port.open, limiter=link._limiter)
    except (OSError, ValueError) as exc:  # serial.SerialException is an OSError
        raise LinkUnavailableError(f"cannot open {url}: {_pyserial_reason(exc)}; is the server listening?") from exc
    try:
        await trio.lowlevel.checkpoint_if_cancelled()
    except trio.Cancelled:
        with trio.CancelScope(shield=True):
            await link.aclose()
        raise
    return link


def _pyserial_reason(exc: BaseException) -> str:
    # pyserial wraps the OS error's text in its own; keep the innermost useful part.
    text = str(exc)
    return text.rpartition(": ")[2] if ": " in text else text
