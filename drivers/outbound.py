"""Outbound calls a user can aim (an ``api`` task; workflow ``http`` steps, pipelines' ``http``
modules, LLM provider base URLs and integrations as they arrive): where they may go, checked
after DNS resolution, and an httpx transport that connects only to the address it checked.

The rule (docs/decisions/0024-outbound-destinations.md), after OWASP's SSRF prevention cheat
sheet: a destination is its host *as resolved*. Every address a name resolves to is checked, and
the connection goes to one of those very addresses, so a DNS answer that changes between the
check and the connect (rebinding) reaches nothing that was not checked.

- A **public** (globally routable unicast) address may be reached by anyone who may aim a call.
- An **internal** one may be reached only by a caller allowed internal destinations (an admin:
  the domain says who) or when ``[outbound] allow`` lists it. Internal is: loopback, private
  (RFC 1918, unique local), shared (carrier-grade NAT), link-local (cloud metadata at
  169.254.169.254), unspecified (``0.0.0.0``, ``::``: they reach this host), multicast,
  broadcast, documentation, benchmarking and the other reserved ranges, any IPv6 address outside
  global unicast (``2000::/3``), and the IPv4-mapped, 6to4 and NAT64 forms of internal IPv4
  addresses (``::ffff:127.0.0.1``, ``2002:7f00:1::``, ``64:ff9b::7f00:1``).
- ``[outbound] allow`` lists addresses, networks and host names. A listed address or network
  allows itself (an IPv4-mapped, 6to4 or NAT64 form too); a listed name allows what it resolves
  to, except loopback and unspecified addresses (this host), which only a listed address allows:
  a name's answer is not ours to trust that far.
- Redirects are the caller's business: the transport follows none by itself, and httpx clients
  made for outbound calls must keep ``follow_redirects=False`` (a redirect is a new destination).

:class:`OutboundGuard` holds the allow-list and applies the rule: :meth:`~OutboundGuard.check_destination`
for a URL (when a user defines the call, and before a run when wanted),
:meth:`~OutboundGuard.check_host` for a host and port, :meth:`~OutboundGuard.transport` for the
httpx transport that checks and pins each connection. :func:`internal_kind` says why an address
is internal. Its errors: :class:`OutboundRefusedError` (422: the caller may not reach it) and
:class:`OutboundUnresolvedError` (the name does not resolve now).
"""

from __future__ import annotations

import ipaddress
import math
import socket
import urllib.parse
from collections.abc import Awaitable, Callable, Iterable
from contextlib import nullcontext
from typing import TYPE_CHECKING, Any

import trio


from .errors import OutboundError, OutboundRefusedError, OutboundUnresolvedError

if TYPE_CHECKING:
    import httpx

__all__ = [
    "DEFAULT_PORTS",
    "IPAddress",
    "Internal",
    "OutboundGuard",
    "Resolver",
    "internal_kind",
    "system_resolver",
]

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Resolver = Callable[[str, int], Awaitable[list[IPAddress]]]
"""``(host, port) -> addresses``: how a guard resolves names (:func:`system_resolver`; tests pass
their own). Raises :class:`OutboundUnresolvedError` when there is no address."""
Internal = bool | Callable[[], Awaitable[bool]]
"""Whether the caller may reach internal destinations, or an async function answering it (asked
only when a destination is internal and not allowed, so a public call costs no lookup)."""

DEFAULT_PORTS = {"http": 80, "https": 443}
"""The port of a URL that names none, by scheme."""

RESOLVE_TIMEOUT = 10.0
"""Seconds a name may take to resolve before the check gives up on it."""


def _nets(*pairs: tuple[str, str]) -> tuple[tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, str], ...]:
    return tuple((ipaddress.ip_network(net), kind) for net, kind in pairs)


# IANA's special-purpose registries (not the version-dependent ipaddress.is_global), with the
# words a refusal uses. The first match names the kind.
_V4_INTERNAL = _nets(
    ("0.0.0.0/8", "an unspecified address ('this network': it reaches this host)"),
    ("10.0.0.0/8", "a private address"),
    ("100.64.0.0/10", "a shared address (carrier-grade NAT)"),
    ("127.0.0.0/8", "a loopback address (this host)"),
    ("169.254.0.0/16", "a link-local address (cloud metadata services such as 169.254.169.254 live there)"),
    ("172.16.0.0/12", "a private address"),
    ("192.0.0.0/24", "a reserved address (IETF protocol assignments)"),
    ("192.0.2.0/24", "a reserved address (documentation)"),
    ("192.88.99.0/24", "a reserved address (6to4 relay anycast)"),
    ("192.168.0.0/16", "a private address"),
    ("198.18.0.0/15", "a reserved address (benchmarking)"),
    ("198.51.100.0/24", "a reserved address (documentation)"),
    ("203.0.113.0/24", "a reserved address (documentation)"),
    ("224.0.0.0/4", "a multicast address"),
    ("240.0.0.0/4", "a reserved address (future use, broadcast)"),
)
_V6_INTERNAL = _nets(
    ("::/128", "an unspecified address (it reaches this host)"),
    ("::1/128", "a loopback address (this host)"),
    ("64:ff9b:1::/48", "a private address (local-use NAT64)"),
    ("2001::/23", "a reserved address (IETF protocol assignments, Teredo)"),
    ("2001:db8::/32", "a reserved address (documentation)"),
    ("3fff::/20", "a reserved address (documentation)"),
    ("fc00::/7", "a private address (unique local)"),
    ("fe80::/10", "a link-local address"),
    ("fec0::/10", "a private address (site-local)"),
    ("ff00::/8", "a multicast address"),
)
_V6_GLOBAL_UNICAST = ipaddress.IPv6Network("2000::/3")
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")
_V4_MAPPED = ipaddress.IPv6Network("::ffff:0:0/96")
_THIS_HOST = tuple(ipaddress.ip_network(net) for net in ("0.0.0.0/8", "127.0.0.0/8", "::/128", "::1/128"))


def _embedded(address: IPAddress) -> tuple[ipaddress.IPv4Address, str] | None:
    """The IPv4 address an IPv6 form carries, and the form's name; None for other addresses."""
    if not isinstance(address, ipaddress.IPv6Address):
        return None
    if address in _V4_MAPPED:
        assert address.ipv4_mapped is not None
        return address.ipv4_mapped, "an IPv4-mapped form"
    if address.sixtofour is not None:
        return address.sixtofour, "a 6to4 form"
    if address in _NAT64:
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF), "a NAT64 form"
    return None


def internal_kind(address: IPAddress) -> str | None:
    """Why ``address`` is internal ("a loopback address (this host)", ...), or None when it is
    public (globally routable unicast). An IPv4-mapped, 6to4 or NAT64 address is what it carries.

    Returns:
        The kind, worded to follow "``<address>`` is ...", or None.
    """
    embedded = _embedded(address)
    if embedded is not None:
        inner, form = embedded
        kind = internal_kind(inner)
        return None if kind is None else f"{form} of {inner}, {kind}"
    table = _V4_INTERNAL if isinstance(address, ipaddress.IPv4Address) else _V6_INTERNAL
    for network, kind in table:
        if address in network:
            return kind
    if isinstance(address, ipaddress.IPv6Address) and address not in _V6_GLOBAL_UNICAST:
        return "a reserved address (outside IPv6 global unicast)"
    return None


def _host_key(host: str) -> str:
    """A host as the allow-list compares names: lower case, no trailing dot, no brackets."""
    return host.strip("[]").rstrip(".").lower()


def _literal(host: str) -> IPAddress | None:
    """The address ``host`` spells in its canonical form, or None (a name, or a loose IPv4
    spelling such as ``127.1`` that only the resolver reads)."""
    try:
        return ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return None


async def system_resolver(host: str, port: int) -> list[IPAddress]:
    """Resolve ``host`` with the system's resolver (in a thread, as trio does), every address
    once, in the resolver's order.

    Raises:
        OutboundUnresolvedError: no address (unknown name, resolver failure).
    """
    try:
        infos = await trio.socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        reason = exc.strerror if isinstance(exc, socket.gaierror) and exc.strerror else str(exc)
        raise OutboundUnresolvedError(f"{host} does not resolve: {reason}") from exc
    found: list[IPAddress] = []
    for family, _, _, _, sockaddr in infos:
        if family not in (socket.AF_INET, socket.AF_INET6):
            continue
        text = str(sockaddr[0])
        if family == socket.AF_INET6 and len(sockaddr) > 3 and sockaddr[3] and "%" not in text:
            text = f"{text}%{sockaddr[3]}"  # a link-local answer keeps its interface
        address = ipaddress.ip_address(text)
        if address not in found:
            found.append(address)
    if not found:
        raise OutboundUnresolvedError(f"{host} does not resolve to any IPv4 or IPv6 address")
    return found


class OutboundGuard:
    """The outbound rule of one runtime (see the module docstring).

    Args:
        allow: ``[outbound] allow``: IP addresses, networks (``127.0.0.0/8``) and host names.
        resolver: how names are resolved (the system's by default).
        resolve_timeout: seconds a name may take to resolve.

    Raises:
        ValueError: an entry of ``allow`` is neither an address, a network nor a host name.
    """

    def __init__(
        self,
        allow: Iterable[str] = (),
        *,
        resolver: Resolver = system_resolver,
        resolve_timeout: float = RESOLVE_TIMEOUT,
    ) -> None:
        networks: list[ipaddress.IPv4Network | ipaddress.IPv6Network] = []
        names: set[str] = set()
        for entry in allow:
            text = entry.strip()
            try:
                networks.append(ipaddress.ip_network(text.strip("[]"), strict=False))
                continue
            except ValueError:
                pass
            if not text or any(ch in text for ch in "/:@ *?#"):
                raise ValueError(
                    f"outbound allow entries are IP addresses, networks or host names such as '127.0.0.1',"
                    f" '127.0.0.0/8' or 'localhost', not {entry!r}"
                )
            names.add(_host_key(text))
        self.networks = tuple(networks)
        self.names = frozenset(names)
        self.resolver = resolver
        self.resolve_timeout = resolve_timeout

    def __repr__(self) -> str:
        allowed = [str(net) for net in self.networks] + sorted(self.names)
        return f"<OutboundGuard allow={allowed!r}>"

    def _listed(self, address: IPAddress) -> bool:
        embedded = _embedded(address)
        candidates = [address] if embedded is None else [address, embedded[0]]
        return any(candidate in network for candidate in candidates for network in self.networks)

    def refusal(self, host: str, address: IPAddress) -> str | None:
        """Why a caller not allowed internal destinations may not reach ``address`` (which
        ``host`` resolved to), or None when anyone may."""
        kind = internal_kind(address)
        if kind is None or self._listed(address):
            return None
        if _host_key(host) in self.names and not _this_host(address):
            return None
        return kind

    async def resolve(self, host: str, port: int) -> list[IPAddress]:
        """The addresses ``host`` stands for: itself when it is an address, else the resolver's
        answer.

        Raises:
            OutboundUnresolvedError: no address, or none within ``resolve_timeout``.
        """
        literal = _literal(host)
        if literal is not None:
            return [literal]
        with trio.move_on_after(self.resolve_timeout):
            return await self.resolver(host.strip("[]"), port)
        raise OutboundUnresolvedError(f"{host} did not resolve within {self.resolve_timeout:g}s")

    async def check_host(self, host: str, port: int, *, internal: Internal) -> list[IPAddress]:
        """Resolve ``host`` and check every address it resolves to.

        Args:
            host: a name or an address (IPv6 with or without brackets).
            port: the port the call will use (the resolver may want it).
            internal: whether the caller may reach internal destinations (see :data:`Internal`).

        Returns:
            The addresses, each one the caller may reach: connect only to these.

        Raises:
            OutboundRefusedError: one of the addresses is internal, not allowed, and the caller
                may not reach internal destinations (all must pass: a name answering a public
                and a loopback address is refused).
            OutboundUnresolvedError: the name has no address now.
        """
        addresses = await self.resolve(host, port)
        refused = [(address, kind) for address in addresses if (kind := self.refusal(host, address)) is not None]
        if refused and not (internal if isinstance(internal, bool) else await internal()):
            address, kind = refused[0]
            shown = _host_key(host)
            what = f"{address} is {kind}" if _literal(host) == address else f"{shown} resolves to {address}, {kind}"
            raise OutboundRefusedError(
                f"{what}; only an admin may aim an outbound call there: ask an admin to set it up, or to"
                f" add {_allow_entry(address)} to [outbound] allow in config.toml",
                details={"host": shown, "address": str(address), "reason": kind},
            )
        return addresses

    async def check_destination(
        self, url: str, *, internal: Internal, unresolved_ok: bool = False
    ) -> list[IPAddress]:
        """:meth:`check_host` for the host and port of an ``http``/``https`` ``url``.

        Args:
            unresolved_ok: a name that does not resolve now passes (answering no address): for
                a call being defined, which is checked again when it is made.

        Raises:
            OutboundRefusedError: see :meth:`check_host`.
            OutboundUnresolvedError: the name has no address now, unless ``unresolved_ok``.
            ValueError: ``url`` names no host, or a bad port.
        """
        parts = urllib.parse.urlsplit(url)
        host = parts.hostname
        if not host:
            raise ValueError("the URL names no host")
        port = parts.port or DEFAULT_PORTS.get(parts.scheme.lower(), 80)
        try:
            return await self.check_host(host, port, internal=internal)
        except OutboundUnresolvedError:
            if unresolved_ok:
                return []
            raise

    def transport(self, *, internal: Internal, verify: bool = True) -> httpx.AsyncBaseTransport:
        """An httpx transport whose every connection is checked with :meth:`check_host` and made
        to one of the addresses checked (never resolved again), with no proxy from the
        environment. Use it with ``follow_redirects=False`` and ``trust_env=False``.

        A refused destination raises :class:`OutboundRefusedError` out of the request; a name
        without an address raises ``httpx.ConnectError``.
        """
        import httpcore  # only runtimes making outbound calls pay for importing them
        import httpx

        context = httpx.create_ssl_context(verify=verify, trust_env=False)
        transport = httpx.AsyncHTTPTransport(verify=context, trust_env=False, retries=0)
        # httpx takes no network backend; its pool is the one place the connect can be pinned.
        # tests/drivers/test_outbound.py holds this to the httpx in use.
        transport._pool = httpcore.AsyncConnectionPool(
            ssl_context=context, retries=0, network_backend=_PinnedBackend(self, internal, httpcore.TrioBackend())
        )
        return transport


def _target(address: IPAddress) -> IPAddress:
    """The address a connection to ``address`` reaches: the IPv4 address a form carries, or
    itself without an IPv6 zone."""
    embedded = _embedded(address)
    if embedded is not None:
        return embedded[0]
    return address if isinstance(address, ipaddress.IPv4Address) else ipaddress.IPv6Address(int(address))


def _this_host(address: IPAddress) -> bool:
    """Whether ``address`` reaches this host (loopback, unspecified)."""
    target = _target(address)
    return any(target in network for network in _THIS_HOST)


def _allow_entry(address: IPAddress) -> str:
    """What to add to ``[outbound] allow`` to let ``address`` be reached."""
    return str(_target(address))


class _PinnedBackend:
    """httpcore's network backend for outbound calls: each TCP connection is checked by the
    guard and made to an address it checked (trio's connect to an address resolves nothing)."""

    def __init__(self, guard: OutboundGuard, internal: Internal, inner: Any) -> None:
        self.guard = guard
        self.internal = internal
        self.inner = inner

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Any = None,
    ) -> Any:
        import httpcore

        deadline = trio.fail_after(timeout) if timeout is not None and math.isfinite(timeout) else nullcontext()
        try:
            with deadline:
                addresses = await self.guard.check_host(host, port, internal=self.internal)
        except OutboundUnresolvedError as exc:
            raise httpcore.ConnectError(str(exc)) from exc
        except trio.TooSlowError as exc:
            raise httpcore.ConnectTimeout(f"{host} did not resolve within {timeout:g}s") from exc
        failure: Exception | None = None
        for address in addresses:
            try:
                return await self.inner.connect_tcp(
                    str(address), port, timeout=timeout, local_address=local_address, socket_options=socket_options
                )
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                failure = exc
        assert failure is not None, "check_host answers at least one address"
        raise failure

    async def connect_unix_socket(self, path: str, timeout: float | None = None, socket_options: Any = None) -> Any:
        raise OutboundRefusedError("an outbound call goes to a host and port, never to a Unix socket")

    async def sleep(self, seconds: float) -> None:
        await self.inner.sleep(seconds)
