"""Raw TCP links: ``tcp://host:port[?timeout=5]``.

For devices that listen on a TCP port and speak lines over it (lab instruments on their LAN
port, serial-to-Ethernet bridges in raw mode, ESP8266 firmwares). The socket is trio's own
(:func:`trio.open_tcp_stream`, which sets ``TCP_NODELAY``), so nothing blocks the event loop
and no thread is involved; this is the fastest link the runtime has.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager

import trio

from drivers._link_base import LinkBase
from drivers._options import check_known, host_and_port, positive_float
from drivers.errors import LinkConfigError, LinkUnavailableError
from drivers.link import ConnectionTarget

__all__ = ["CONNECT_TIMEOUT", "TcpDriver", "TcpLink"]

log = logging.getLogger("vareon.drivers.tcp")

CONNECT_TIMEOUT = 5.0
"""Seconds a connection may take unless ``?timeout=`` says otherwise."""

_OPTIONS = ("timeout",)


class TcpDriver:
    """The driver of ``tcp://host:port``. Its only option is ``timeout`` (seconds to connect)."""

    def check(self, target: ConnectionTarget) -> None:
        """Refuse a target without a valid port, with a path, or with an unknown option.

        Raises:
            LinkConfigError: says which part is wrong.
        """
        self._settings(target)

    async def open(self, target: ConnectionTarget) -> TcpLink:
        """Connect within the target's timeout.

        Raises:
            LinkConfigError: the target is wrong.
            LinkUnavailableError: refused, unreachable, unknown host, or no answer in time.
        """
        host, port, timeout = self._settings(target)
        where = _where(host, port)
        try:
            with trio.fail_after(timeout):
                stream = await trio.open_tcp_stream(host, port)
        except trio.TooSlowError as exc:
            raise LinkUnavailableError(
                f"no TCP connection to {where} within {timeout:g} s; is the device on and reachable?"
            ) from exc
        except OSError as exc:
            reason = exc.strerror or str(exc)
            raise LinkUnavailableError(
                f"cannot connect to {where}: {reason}; is the device on and listening on that port?"
            ) from exc
        return TcpLink(stream, f"TCP {where}")

    @staticmethod
    def _settings(target: ConnectionTarget) -> tuple[str, int, float]:
        check_known(target.options, _OPTIONS, what="a TCP link")
        if "@" in target.location:
            raise LinkConfigError("a TCP link takes no user name or password; write tcp://host:port")
        if target.path:
            raise LinkConfigError(
                f"a TCP link has no path; write tcp://host:port, not {target.location}/{target.path}"
            )
        host, port = host_and_port(target.location, scheme="tcp")
        timeout = positive_float("timeout", target.options["timeout"]) if "timeout" in target.options else CONNECT_TIMEOUT
        return host, port, timeout


class TcpLink(LinkBase):
    """An open TCP connection to a device; its description reads ``TCP host:port``.

    One task may receive while another sends; concurrent senders (or receivers) are served in turn.
    """

    def __init__(self, stream: trio.SocketStream, description: str) -> None:
        super().__init__(description)
        self._stream = stream

    async def receive(self, max_bytes: int = 65536) -> bytes:
        """The next bytes from the device (at least one).

        Raises:
            LinkBrokenError: the device closed or reset the connection.
            LinkClosedError: we closed the link.
        """
        self._check_open()
        async with self._receive_lock:
            with self._translated():
                data = await self._stream.receive_some(max_bytes)
            if not data:
                raise self._broke(f"{self._description} closed the connection")
        return data

    async def send(self, data: bytes) -> None:
        """Write all of ``data``.

        Raises:
            LinkBrokenError: the device closed or reset the connection.
            LinkClosedError: we closed the link.
        """
        self._check_open()
        async with self._send_lock:
            with self._translated():
                await self._stream.send_all(data)

    async def _close(self) -> None:
        try:
            await self._stream.aclose()
        except (OSError, trio.BrokenResourceError) as exc:
            log.debug("closing %s: %s", self._description, exc)

    @contextmanager
    def _translated(self) -> Iterator[None]:
        """trio's and the socket's errors as ours: closed by us, or broken by the far end."""
        try:
            yield
        except trio.ClosedResourceError as exc:
            raise self._closed_error() from exc
        except (trio.BrokenResourceError, OSError) as exc:
            raise self._broke(f"the connection to {self._description} was reset: {_reason(exc)}") from exc


def _where(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _reason(exc: BaseException) -> str:
    cause = exc.__cause__ if isinstance(exc, trio.BrokenResourceError) and exc.__cause__ else exc
    if isinstance(cause, OSError) and cause.strerror:
        return cause.strerror
    return str(cause) or type(cause).__name__
