"""The outbound rule (drivers.outbound, decision 0024): which addresses are internal, IPv6 and
embedded forms included, names checked after resolution (``localhost``), the allow-list, and the
pinned transport against a real HTTP server on 127.0.0.1 (a resolver of the test's own stands in
for DNS, so nothing but the loopback is contacted)."""

from __future__ import annotations

import ipaddress
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from functools import partial

import httpx
import pytest
import trio

from drivers.outbound import (
    IPAddress,
    OutboundGuard,
    OutboundRefusedError,
    OutboundUnresolvedError,
    internal_kind,
)
from vareon_runtime.errors import InvalidRequestError

TIMEOUT = 10.0


def ip(text: str) -> IPAddress:
    return ipaddress.ip_address(text)


@pytest.mark.parametrize(
    ("address", "kind"),
    [
        ("127.0.0.1", "a loopback address (this host)"),
        ("127.8.9.10", "a loopback address (this host)"),
        ("0.0.0.0", "an unspecified address"),
        ("10.1.2.3", "a private address"),
        ("172.31.255.1", "a private address"),
        ("192.168.1.20", "a private address"),
        ("100.64.0.1", "a shared address (carrier-grade NAT)"),
        ("169.254.169.254", "a link-local address (cloud metadata services such as 169.254.169.254 live there)"),
        ("224.0.0.251", "a multicast address"),
        ("255.255.255.255", "a reserved address (future use, broadcast)"),
        ("192.0.2.1", "a reserved address (documentation)"),
        ("198.18.0.1", "a reserved address (benchmarking)"),
        ("::1", "a loopback address (this host)"),
        ("::", "an unspecified address (it reaches this host)"),
        ("fe80::1", "a link-local address"),
        ("fd12:3456::1", "a private address (unique local)"),
        ("ff02::1", "a multicast address"),
        ("2001:db8::1", "a reserved address (documentation)"),
        ("::7f00:1", "a reserved address (outside IPv6 global unicast)"),
        ("::ffff:127.0.0.1", "an IPv4-mapped form of 127.0.0.1, a loopback address (this host)"),
        ("::ffff:169.254.169.254", "an IPv4-mapped form of 169.254.169.254, a link-local address"),
        ("2002:7f00:1::", "a 6to4 form of 127.0.0.1, a loopback address (this host)"),
        ("2002:a00:1::5", "a 6to4 form of 10.0.0.1, a private address"),
        ("64:ff9b::7f00:1", "a NAT64 form of 127.0.0.1, a loopback address (this host)"),
        ("64:ff9b::a9fe:a9fe", "a NAT64 form of 169.254.169.254, a link-local address"),
        ("64:ff9b:1::1", "a private address (local-use NAT64)"),
    ],
)
def test_internal_addresses_say_why(address: str, kind: str) -> None:
    found = internal_kind(ip(address))
    assert found is not None and found.startswith(kind), found


@pytest.mark.parametrize(
    "address", ["8.8.8.8", "1.1.1.1", "93.184.215.14", "2606:4700:4700::1111", "::ffff:8.8.8.8", "2002:808:808::1", "64:ff9b::808:808"]
)
def test_public_addresses_are_public(address: str) -> None:
    assert internal_kind(ip(address)) is None


@dataclass
class Resolver:
    """Answers names from a table (the answers of one name may change from a lookup to the next);
    counts the lookups."""

    answers: dict[str, list[list[str]]] = field(default_factory=dict)
    lookups: list[str] = field(default_factory=list)

    async def __call__(self, host: str, port: int) -> list[IPAddress]:
        self.lookups.append(host)
        found = self.answers.get(host.lower().rstrip("."))
        if not found:
            raise OutboundUnresolvedError(f"{host} does not resolve: unknown in this test")
        answer = found.pop(0) if len(found) > 1 else found[0]
        return [ip(text) for text in answer]


async def refusal(guard: OutboundGuard, host: str, port: int = 80) -> OutboundRefusedError:
    with trio.fail_after(TIMEOUT), pytest.raises(OutboundRefusedError) as caught:
        await guard.check_host(host, port, internal=False)
    assert isinstance(caught.value, InvalidRequestError) and caught.value.status == 422
    return caught.value


async def test_an_internal_address_is_refused_with_the_fix_and_an_admin_reaches_it() -> None:
    guard = OutboundGuard()
    error = await refusal(guard, "127.0.0.1")
    assert error.message == (
        "127.0.0.1 is a loopback address (this host); only an admin may aim an outbound call there:"
        " ask an admin to set it up, or to add 127.0.0.1 to [outbound] allow in config.toml"
    )
    assert error.details == {"host": "127.0.0.1", "address": "127.0.0.1", "reason": "a loopback address (this host)"}
    for host in ("0.0.0.0", "[::1]", "::", "169.254.169.254", "[::ffff:127.0.0.1]", "[fe80::1]"):
        await refusal(guard, host)
    error = await refusal(guard, "[::ffff:169.254.169.254]")
    assert "add 169.254.169.254 to [outbound] allow" in error.message
    with trio.fail_after(TIMEOUT):
        assert await guard.check_host("127.0.0.1", 80, internal=True) == [ip("127.0.0.1")]
        assert await guard.check_host("8.8.8.8", 80, internal=False) == [ip("8.8.8.8")]


async def test_names_and_loose_spellings_are_checked_after_resolution() -> None:
    # The system's resolver: localhost and the spellings inet_aton reads are loopback.
    guard = OutboundGuard()
    error = await refusal(guard, "localhost")
    assert error.message.startswith("localhost resolves to ")
    assert internal_kind(ip(error.details["address"])) is not None
    for host in ("LOCALHOST", "127.1", "2130706433", "0x7f.0.0.1"):
        await refusal(guard, host)


async def test_every_address_of_a_name_must_pass() -> None:
    resolver = Resolver({"split.test": [["8.8.8.8", "127.0.0.1"]], "public.test": [["8.8.8.8", "2606:4700::1111"]]})
    guard = OutboundGuard(resolver=resolver)
    error = await refusal(guard, "split.test")
    assert error.message.startswith("split.test resolves to 127.0.0.1, a loopback address")
    with trio.fail_after(TIMEOUT):
        assert await guard.check_host("public.test", 443, internal=False) == [ip("8.8.8.8"), ip("2606:4700::1111")]


async def test_the_allow_list_lets_listed_addresses_networks_and_names_through() -> None:
    resolver = Resolver(
        {"printer.lan": [["192.168.7.20"]], "sneaky.lan": [["127.0.0.1"]], "other.lan": [["192.168.7.21"]]}
    )
    guard = OutboundGuard(["10.0.0.5", "192.168.1.0/24", "printer.lan", "sneaky.lan"], resolver=resolver)
    with trio.fail_after(TIMEOUT):
        for host in ("10.0.0.5", "192.168.1.77", "[::ffff:192.168.1.77]", "printer.lan", "PRINTER.LAN."):
            assert await guard.check_host(host, 80, internal=False)
    await refusal(guard, "10.0.0.6")
    await refusal(guard, "other.lan")
    # A listed name never stands for this host: only the address itself would allow it.
    error = await refusal(guard, "sneaky.lan")
    assert "add 127.0.0.1 to [outbound] allow" in error.message
    with pytest.raises(ValueError, match="not 'http://x/'"):
        OutboundGuard(["http://x/"])


async def test_the_callers_role_is_asked_only_when_a_destination_is_internal() -> None:
    asked: list[str] = []

    async def admin() -> bool:
        asked.append("asked")
        return True

    guard = OutboundGuard(["10.0.0.0/8"])
    with trio.fail_after(TIMEOUT):
        await guard.check_host("8.8.8.8", 80, internal=admin)
        await guard.check_host("10.1.1.1", 80, internal=admin)
        assert asked == []
        await guard.check_host("127.0.0.1", 80, internal=admin)
        assert asked == ["asked"]


async def test_a_destination_is_a_url_and_an_unresolved_name_passes_only_when_asked() -> None:
    resolver = Resolver({"metadata.test": [["169.254.169.254"]]})
    guard = OutboundGuard(resolver=resolver)
    with trio.fail_after(TIMEOUT):
        with pytest.raises(OutboundRefusedError, match="metadata.test resolves to 169.254.169.254"):
            await guard.check_destination("http://metadata.test/latest/meta-data/", internal=False)
        with pytest.raises(OutboundRefusedError, match=r"^::1 is a loopback"):
            await guard.check_destination("https://u:p@[::1]:8443/x", internal=False)
        assert await guard.check_destination("http://nowhere.test/", internal=False, unresolved_ok=True) == []
        with pytest.raises(OutboundUnresolvedError, match="nowhere.test does not resolve"):
            await guard.check_destination("http://nowhere.test/", internal=False)


@dataclass
class Server:
    """A local HTTP server answering every request with ``status`` (and ``location``)."""

    port: int = 0
    status: int = 200
    location: str | None = None
    hosts: list[str] = field(default_factory=list)

    async def handle(self, stream: trio.SocketStream) -> None:
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = await stream.receive_some(65536)
            if not chunk:
                return
            data += chunk
        lines = data.partition(b"\r\n\r\n")[0].decode("latin-1").split("\r\n")[1:]
        headers = {name.lower(): value.strip() for name, _, value in (line.partition(":") for line in lines)}
        self.hosts.append(headers.get("host", ""))
        extra = f"Location: {self.location}\r\n" if self.location else ""
        await stream.send_all(
            f"HTTP/1.1 {self.status} X\r\n{extra}Content-Length: 6\r\nConnection: close\r\n\r\nsecret".encode()
        )
        await stream.aclose()


@pytest.fixture
async def server(nursery: trio.Nursery) -> AsyncIterator[Server]:
    server = Server()
    listeners = await nursery.start(partial(trio.serve_tcp, server.handle, 0, host="127.0.0.1"))
    server.port = listeners[0].socket.getsockname()[1]
    yield server


def client(guard: OutboundGuard, internal: bool) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        transport=guard.transport(internal=internal), follow_redirects=False, trust_env=False, timeout=TIMEOUT
    )


async def test_the_transport_connects_to_the_address_it_checked(server: Server) -> None:
    # The name resolves to the listed 127.0.0.1 once, then (rebinding) to 127.0.0.2, which is
    # not listed. The connection goes to the address checked, and the name is looked up once:
    # the system's resolver, which knows no such name, is never asked.
    resolver = Resolver({"rebind.test": [["127.0.0.1"], ["127.0.0.2"]]})
    guard = OutboundGuard(["127.0.0.1"], resolver=resolver)
    with trio.fail_after(TIMEOUT):
        async with client(guard, internal=False) as http:
            response = await http.get(f"http://rebind.test:{server.port}/x")
    assert (response.status_code, response.text) == (200, "secret")
    assert server.hosts == [f"rebind.test:{server.port}"]
    assert resolver.lookups == ["rebind.test"]


async def test_the_transport_refuses_before_connecting_and_lets_an_admin_through(server: Server) -> None:
    resolver = Resolver({"inside.test": [["127.0.0.1"]]})
    guard = OutboundGuard(resolver=resolver)
    with trio.fail_after(TIMEOUT):
        async with client(guard, internal=False) as http:
            with pytest.raises(OutboundRefusedError, match="inside.test resolves to 127.0.0.1, a loopback address"):
                await http.get(f"http://inside.test:{server.port}/")
            with pytest.raises(OutboundRefusedError, match="127.0.0.1 is a loopback address"):
                await http.get(f"http://127.0.0.1:{server.port}/")
            with pytest.raises(httpx.ConnectError, match="nowhere.test does not resolve"):
                await http.get(f"http://nowhere.test:{server.port}/")
        assert server.hosts == []
        async with client(guard, internal=True) as http:
            assert (await http.get(f"http://inside.test:{server.port}/")).status_code == 200
    assert server.hosts == [f"inside.test:{server.port}"]


async def test_the_transport_follows_no_redirect_and_no_proxy_from_the_environment(
    server: Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A proxy in the environment would be the address checked instead of the destination.
    monkeypatch.setenv("HTTP_PROXY", "http://127.0.0.1:9")
    monkeypatch.setenv("ALL_PROXY", "http://127.0.0.1:9")
    server.status, server.location = 302, "http://169.254.169.254/latest/meta-data/"
    guard = OutboundGuard(["127.0.0.1"])
    with trio.fail_after(TIMEOUT):
        async with client(guard, internal=False) as http:
            response = await http.get(f"http://127.0.0.1:{server.port}/go")
    assert response.status_code == 302 and response.headers["location"].startswith("http://169.254.169.254/")
    assert server.hosts == [f"127.0.0.1:{server.port}"]
