"""Who is calling: the client's address, behind trusted reverse proxies or not.

The login throttle and the registration limit count per client address. The socket's peer is
the client unless it is one of ``[server] trusted_proxies``: then the client is the rightmost
``X-Forwarded-For`` hop that is not itself a trusted proxy. Hops left of it were written by the
client and prove nothing; from an untrusted peer the header proves nothing at all.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence
from functools import lru_cache

from quart import request

from .context import current_context

__all__ = ["FORWARDED_FOR", "client_address", "current_client"]

FORWARDED_FOR = "X-Forwarded-For"

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


def current_client() -> str | None:
    """The address of the current request's client (see :func:`client_address`)."""
    trusted = _networks(tuple(current_context().config.server.trusted_proxies))
    if not trusted:
        return request.remote_addr  # the common case costs nothing more
    return client_address(request.remote_addr, request.headers.getlist(FORWARDED_FOR), trusted)


def client_address(
    peer: str | None, forwarded_for: Iterable[str], trusted: Sequence[IPNetwork]
) -> str | None:
    """The client's address, from the socket's peer and the ``X-Forwarded-For`` headers.

    Args:
        peer: the address the request came from (None for a Unix socket).
        forwarded_for: the values of every ``X-Forwarded-For`` header, in order.
        trusted: the networks of the reverse proxies whose header is believed.

    Returns:
        ``peer`` unless it is a trusted proxy; else the rightmost hop that is not a trusted
        proxy (the leftmost hop when all are). The walk stops at a hop that is not an IP
        address (``unknown``, an obfuscated name): the last readable hop stands.
    """
    current = _ip(peer) if peer is not None else None
    if current is None or not _trusted(current, trusted):
        return peer
    hops = [hop.strip() for value in forwarded_for for hop in value.split(",") if hop.strip()]
    for hop in reversed(hops):
        address = _ip(_host_of(hop))
        if address is None:
            break
        current = address
        if not _trusted(address, trusted):
            break
    return str(current)


@lru_cache(maxsize=8)
def _networks(texts: tuple[str, ...]) -> tuple[IPNetwork, ...]:
    # The config validated and normalised them already.
    return tuple(ipaddress.ip_network(text) for text in texts)


def _ip(text: str) -> IPAddress | None:
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def _host_of(hop: str) -> str:
    # "203.0.113.1:4711" and "[2001:db8::1]:443" carry a port; a bare IPv6 address has colons.
    if hop.startswith("["):
        return hop[1:].partition("]")[0]
    if hop.count(":") == 1:
        return hop.partition(":")[0]
    return hop


def _trusted(address: IPAddress, trusted: Sequence[IPNetwork]) -> bool:
    return any(address.version == network.version and address in network for network in trusted)
