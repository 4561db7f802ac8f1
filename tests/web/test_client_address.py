"""Who the client is, behind a reverse proxy or not: the key of the login and register limits."""

from __future__ import annotations

import ipaddress

import httpx
import pytest
from web_support import error_of

from vareon_runtime.auth.throttle import address_key
from web.client import client_address

MAX_FAILURES = 3
PASSWORD = "a long enough passphrase"
PROXY = "127.0.0.1"  # the test client's own address plays the reverse proxy


@pytest.fixture
def front_environ() -> dict[str, str]:
    return {
        "VAREON_AUTH_LOGIN_MAX_FAILURES": str(MAX_FAILURES),
        "VAREON_AUTH_LOGIN_LOCKOUT": "120",
        "VAREON_SERVER_TRUSTED_PROXIES": f"{PROXY}, 10.9.0.0/16",
    }


def _nets(*texts: str) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    return [ipaddress.ip_network(text) for text in texts]


@pytest.mark.parametrize(
    ("peer", "forwarded", "trusted", "expected"),
    [
        # No trusted proxy: the header is anybody's to write, so it is ignored.
        ("198.51.100.7", ["203.0.113.1"], [], "198.51.100.7"),
        # The peer is not a trusted proxy: same.
        ("198.51.100.7", ["203.0.113.1"], ["10.0.0.1/32"], "198.51.100.7"),
        # A trusted proxy: the rightmost hop it did not add itself.
        ("10.0.0.1", ["203.0.113.1"], ["10.0.0.1/32"], "203.0.113.1"),
        # The client's own X-Forwarded-For (spoofed) stays left of the hop the proxy appended.
        ("10.0.0.1", ["1.1.1.1, 203.0.113.1"], ["10.0.0.1/32"], "203.0.113.1"),
        # Two trusted proxies in a row; several headers count as one list.
        ("10.0.0.1", ["1.1.1.1, 203.0.113.1", "10.0.0.2"], ["10.0.0.0/24"], "203.0.113.1"),
        # Ports and IPv6 brackets are dropped.
        ("10.0.0.1", ["203.0.113.1:4711"], ["10.0.0.1/32"], "203.0.113.1"),
        ("10.0.0.1", ["[2001:db8::1]:443"], ["10.0.0.1/32"], "2001:db8::1"),
        ("::1", ["2001:db8::7"], ["::1/128"], "2001:db8::7"),
        # An IPv4 peer seen through an IPv6 socket is still that IPv4 address.
        ("::ffff:10.0.0.1", ["203.0.113.1"], ["10.0.0.1/32"], "203.0.113.1"),
        # Every hop trusted: the leftmost is the client.
        ("10.0.0.1", ["10.0.0.3, 10.0.0.2"], ["10.0.0.0/24"], "10.0.0.3"),
        # Garbage where an address should be: the walk stops at the last hop it could read.
        ("10.0.0.1", ["203.0.113.1, unknown"], ["10.0.0.1/32"], "10.0.0.1"),
        ("10.0.0.1", ["203.0.113.1, _hidden, 10.0.0.2"], ["10.0.0.0/24"], "10.0.0.2"),
        # A trusted proxy that sent no header: the proxy itself.
        ("10.0.0.1", [], ["10.0.0.1/32"], "10.0.0.1"),
        ("10.0.0.1", [""], ["10.0.0.1/32"], "10.0.0.1"),
        # No peer at all (a Unix socket) or one that is not an IP address.
        (None, ["203.0.113.1"], ["10.0.0.1/32"], None),
        ("<local>", ["203.0.113.1"], ["10.0.0.1/32"], "<local>"),
    ],
)
def test_client_address(
    peer: str | None, forwarded: list[str], trusted: list[str], expected: str | None
) -> None:
    assert client_address(peer, forwarded, _nets(*trusted)) == expected


@pytest.mark.parametrize(
    ("address", "key"),
    [
        ("203.0.113.9", "203.0.113.9"),
        ("2001:db8:1:2:3:4:5:6", "2001:db8:1:2::/64"),
        ("2001:db8:1:2::1", "2001:db8:1:2::/64"),
        ("::ffff:203.0.113.9", "203.0.113.9"),
        ("fe80::1%eth0", "fe80::/64"),
        ("<local>", "<local>"),
    ],
)
def test_ipv6_clients_are_keyed_by_their_64(address: str, key: str) -> None:
    assert address_key(address) == key


async def _register(client: httpx.AsyncClient, name: str, via: str) -> None:
    response = await client.post(
        "/api/register",
        json={"username": name, "email": f"{name}@example.com", "password": PASSWORD},
        headers={"X-Forwarded-For": via},
    )
    assert response.status_code == 201, response.text


async def _login(client: httpx.AsyncClient, name: str, password: str, via: str) -> httpx.Response:
    return await client.post(
        "/api/token",
        json={"username": name, "password": password},
        headers={"X-Forwarded-For": via},
    )


async def test_behind_a_trusted_proxy_one_guessing_client_locks_only_itself(
    client: httpx.AsyncClient,
) -> None:
    await _register(client, "ann", "198.51.100.1")
    attacker = "203.0.113.66"
    for n in range(MAX_FAILURES):
        wrong = await _login(client, f"nobody{n}", "wrong guess", attacker)
        assert wrong.status_code == 401
    refused = await _login(client, "ann", PASSWORD, attacker)
    assert refused.status_code == 429
    assert "for this address" in str(error_of(refused.json())["message"])
    # Everybody else behind the same proxy signs in as usual.
    assert (await _login(client, "ann", PASSWORD, "198.51.100.1")).status_code == 200
    # The attacker cannot slip out by prepending an address of its choice: the proxy appends
    # the real one.
    client.cookies.clear()  # ann's known-client cookie from the sign-in above would let it in
    spoofed = await _login(client, "ann", PASSWORD, f"198.51.100.1, {attacker}")
    assert spoofed.status_code == 429


async def test_an_ipv6_client_cannot_dodge_the_lock_by_changing_address(
    client: httpx.AsyncClient,
) -> None:
    await _register(client, "bob", "2001:db8:9::1")
    for n in range(MAX_FAILURES):
        await _login(client, f"nobody{n}", "wrong guess", f"2001:db8:1:2::{n + 1}")
    same_64 = await _login(client, "bob", PASSWORD, "2001:db8:1:2:ffff:ffff:ffff:ffff")
    assert same_64.status_code == 429
    assert (await _login(client, "bob", PASSWORD, "2001:db8:1:3::1")).status_code == 200
