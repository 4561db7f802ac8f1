"""Links: byte streams to devices, behind one Protocol, chosen by the connection string's scheme.

A connection string names the driver and where the device is::

    /dev/ttyUSB0?baudrate=115200        serial port by device path, options as a query
    socket://host:port, rfc2217://host:port, loop://
                                        pyserial's URL handlers (serial driver)
    tcp://host:port                     a raw TCP socket
    mqtt://broker:port/topic            a device that speaks MQTT

:data:`LINKS` maps each scheme to a :class:`LinkDriver`, registered by the path of its class so
that this module imports none of them. :func:`parse_connection_string` checks a string without
opening anything (so a bad one is refused when the device is created, as a 422 naming the known
schemes); :func:`open_link` opens it.

A :class:`Link` is opened once and closed once; it is never reopened (the device actor opens a
new one to reconnect). Every foreign exception (``OSError``, ``serial.SerialException``, the MQTT
client's errors) is translated into :class:`~drivers.errors.LinkError` and its subclasses at the
driver boundary, chained as the cause.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Protocol, runtime_checkable
from urllib.parse import parse_qsl, urlsplit

from drivers.errors import LinkConfigError, UnknownSchemeError
from vareon_runtime.keyed import Keyed

__all__ = [
    "LINKS",
    "ConnectionTarget",
    "Link",
    "LinkDriver",
    "LinkRegistry",
    "mask_connection_string",
    "open_link",
    "parse_connection_string",
]


@dataclass(frozen=True)
class ConnectionTarget:
    """A parsed connection string.

    Attributes:
        raw: the string as the user wrote it.
        scheme: the registry key: ``serial`` for a device path, else the URL scheme, lower case.
        location: what the driver connects to: the device path, ``host:port``, the pyserial URL,
            or ``broker:port``.
        path: the URL path without its leading slash (the MQTT topic), ``""`` when none.
        options: the query parameters (``baudrate=115200``), last value wins.
    """

    raw: str
    scheme: str
    location: str
    path: str = ""
    options: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))

    def __repr__(self) -> str:
        # A target ends up in logs and tracebacks; its password must not.
        return (
            f"ConnectionTarget(raw={mask_connection_string(self.raw)!r}, scheme={self.scheme!r},"
            f" location={mask_connection_string('x://' + self.location)[4:]!r}, path={self.path!r},"
            f" options={dict(self.options)!r})"
        )


@runtime_checkable
class Link(Protocol):
    """An open byte stream to one device.

    ``receive`` returns the next bytes that arrived (at least one, at most ``max_bytes``);
    ``send`` writes all of ``data``. Neither blocks the event loop. Each raises one error per
    fault: :class:`~drivers.errors.LinkBrokenError` when the far end went away (unplugged,
    connection reset, broker gone), with the same words for every use after the first break
    whoever noticed it, and :class:`~drivers.errors.LinkClosedError` during or after our own
    ``aclose``, which is idempotent and never raises.
    """

    @property
    def description(self) -> str:
        """A short human description, without secrets (``/dev/ttyUSB0 at 115200 baud``)."""
        ...

    async def receive(self, max_bytes: int = 65536) -> bytes: ...

    async def send(self, data: bytes) -> None: ...

    async def aclose(self) -> None: ...


class LinkDriver(Protocol):
    """What a driver registers under a scheme."""

    def check(self, target: ConnectionTarget) -> None:
        """Refuse a target this driver cannot use, without any I/O.

        Raises:
            LinkConfigError: names what is wrong (an unknown option, a bad baud rate, no port).
        """
        ...

    async def open(self, target: ConnectionTarget) -> Link:
        """Open the link.

        Raises:
            LinkConfigError: the target is wrong.
            LinkUnavailableError: the device or host is not there now (retry later).
        """
        ...


def _check_scheme(scheme: str) -> None:
    if not scheme.replace("+", "").replace("-", "").isalnum() or scheme != scheme.lower():
        raise ValueError(f"a link scheme is a lower-case word, not {scheme!r}")


class LinkRegistry(Keyed[LinkDriver]):
    """Link drivers by scheme (a :class:`~vareon_runtime.keyed.Keyed` registry).

    :meth:`register` takes what makes a driver, not the driver: each is made on its first use.
    Registering a scheme twice is a :class:`~vareon_runtime.errors.DuplicateKeyError`; an unknown
    scheme is an :class:`~drivers.errors.UnknownSchemeError` (422, naming the known ones).
    """

    def __init__(self) -> None:
        super().__init__("link driver", field="connectionString", unknown=UnknownSchemeError, check_key=_check_scheme)

    def register(self, scheme: str, driver: Callable[[], LinkDriver] | str) -> None:  # type: ignore[override]
        """Register the driver ``driver`` makes on first use: a zero-argument factory, or the
        ``"module:attribute"`` path of one (so a driver's module and its foreign library are
        imported only when a link needs them).

        Raises:
            DuplicateKeyError: the scheme is taken.
            ValueError: the scheme is not a lower-case word.
        """
        self.register_lazy(scheme, driver)

    def schemes(self) -> list[str]:
        """The known schemes, sorted."""
        return self.keys()

    def driver(self, scheme: str) -> LinkDriver:
        """The driver of a scheme (made now if this is its first use).

        Raises:
            UnknownSchemeError: no driver has that scheme; the message names the known ones.
        """
        return self[scheme]


def _split(raw: str) -> ConnectionTarget:
    text = raw.strip()
    if not text:
        raise LinkConfigError("a connection string cannot be empty")
    if text.startswith("/"):
        location, _, query = text.partition("?")
        # Blank values are kept so that "?baudrate=" is refused by the driver, not ignored.
        options = MappingProxyType(dict(parse_qsl(query, keep_blank_values=True)))
        return ConnectionTarget(raw=raw, scheme="serial", location=location, options=options)
    if "://" not in text:
        raise LinkConfigError(
            f"{raw!r} is neither a device path (/dev/ttyUSB0) nor a URL (tcp://host:port)"
        )
    # No scheme uses fragments, and MQTT's multi-level wildcard is a "#" in the topic (the path).
    parts = urlsplit(text, allow_fragments=False)
    return ConnectionTarget(
        raw=raw,
        scheme=parts.scheme.lower(),
        location=parts.netloc,
        path=parts.path.lstrip("/"),
        options=MappingProxyType(dict(parse_qsl(parts.query, keep_blank_values=True))),
    )


def mask_connection_string(raw: str) -> str:
    """``raw`` with the password of a URL-like connection string replaced by ``***``.

    ``mqtt://user:secret@broker:1883/t`` becomes ``mqtt://user:***@broker:1883/t``; a string
    without a password (a device path, ``tcp://host:port``, ``mqtt://user@broker/t``) comes back
    unchanged. Use it wherever a connection string is shown or logged.
    """
    scheme, separator, rest = raw.partition("://")
    if not separator:
        return raw
    query = len(rest) if "?" not in rest else rest.index("?")
    netloc = min([query] + [rest.find(d) for d in "/#" if rest.find(d) != -1])
    at = rest.rfind("@", 0, netloc)
    if at == -1:
        # A password with an unescaped "/" or "#" ends the URL's host part early; mask it anyway.
        at = rest.rfind("@", 0, query)
    user, colon, password = rest[: max(at, 0)].partition(":")
    if at == -1 or not colon or not password:
        return raw
    return f"{scheme}://{user}:***@{rest[at + 1:]}"


LINKS = LinkRegistry()
"""The drivers every runtime knows, each registered by the path of its class: a driver's module
(and pyserial, the MQTT client) is imported on first use, which an edge box without such devices
never pays for."""
for _scheme in ("serial", "socket", "rfc2217", "loop"):  # a device path, and pyserial's URL handlers
    LINKS.register(_scheme, "drivers.serial:SerialDriver")
LINKS.register("tcp", "drivers.tcp:TcpDriver")
LINKS.register("mqtt", "drivers.mqtt:MqttDriver")


def parse_connection_string(raw: str, *, registry: LinkRegistry | None = None) -> ConnectionTarget:
    """Parse and check a connection string without opening it.

    Raises:
        UnknownSchemeError: no driver has that scheme (422; names the known ones).
        LinkConfigError: the string or its options are wrong for its driver (422).
    """
    links = registry if registry is not None else LINKS
    target = _split(raw)
    links.driver(target.scheme).check(target)
    return target


async def open_link(raw: str | ConnectionTarget, *, registry: LinkRegistry | None = None) -> Link:
    """Open the link a connection string names.

    Raises:
        UnknownSchemeError, LinkConfigError: as :func:`parse_connection_string`.
        LinkUnavailableError: the device or host is not reachable now.
    """
    links = registry if registry is not None else LINKS
    target = raw if isinstance(raw, ConnectionTarget) else parse_connection_string(raw, registry=links)
    return await links.driver(target.scheme).open(target)
