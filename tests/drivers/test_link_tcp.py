"""tcp://host:port links against real local listeners: bytes both ways, the far end closing or
resetting, refusals, timeouts, and options refused before anything is opened."""

from __future__ import annotations

import socket
import struct
from collections.abc import AsyncIterator, Awaitable, Callable
from functools import partial

import pytest
import trio
import trio.testing

from drivers import LinkBrokenError, LinkClosedError, LinkConfigError, LinkUnavailableError, TcpLink, open_link, parse_connection_string

TIMEOUT = 10

Handler = Callable[[trio.SocketStream], Awaitable[None]]


async def echo(stream: trio.SocketStream) -> None:
    async for data in stream:
        await stream.send_all(data)


async def hang_up(stream: trio.SocketStream) -> None:
    await stream.send_all(b"bye\n")
    await stream.aclose()


async def reset(stream: trio.SocketStream) -> None:
    # SO_LINGER with a zero timeout makes close() send RST instead of FIN.
    stream.socket.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    await stream.aclose()


@pytest.fixture
async def serve(nursery: trio.Nursery) -> AsyncIterator[Callable[[Handler], Awaitable[int]]]:
    """Start a TCP listener on 127.0.0.1, port 0, with a handler; the port."""

    async def start(handler: Handler) -> int:
        listeners = await nursery.start(partial(trio.serve_tcp, handler, 0, host="127.0.0.1"))
        return int(listeners[0].socket.getsockname()[1])

    yield start


def free_port() -> int:
    """A port nothing listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def test_bytes_go_both_ways(serve: Callable[[Handler], Awaitable[int]]) -> None:
    port = await serve(echo)
    with trio.fail_after(TIMEOUT):
        link = await open_link(f"tcp://127.0.0.1:{port}?timeout=3")
        assert isinstance(link, TcpLink)
        assert link.description == f"TCP 127.0.0.1:{port}"
        await link.send(b"*IDN?\n")
        received = b""
        while received != b"*IDN?\n":
            received += await link.receive()
        await link.aclose()


async def test_server_closing_is_a_break(serve: Callable[[Handler], Awaitable[int]]) -> None:
    port = await serve(hang_up)
    with trio.fail_after(TIMEOUT):
        link = await open_link(f"tcp://127.0.0.1:{port}")
        assert await link.receive() == b"bye\n"
        with pytest.raises(LinkBrokenError, match=f"TCP 127.0.0.1:{port} closed the connection"):
            await link.receive()
        # The kernel would still take a write to a half-closed connection; the link knows better.
        with pytest.raises(LinkBrokenError, match=f"TCP 127.0.0.1:{port} closed the connection"):
            await link.send(b"G28\n")
        await link.aclose()
        with pytest.raises(LinkClosedError, match="is closed"):
            await link.receive()


async def test_reset_is_a_break_on_receive_and_send(serve: Callable[[Handler], Awaitable[int]]) -> None:
    port = await serve(reset)
    with trio.fail_after(TIMEOUT):
        link = await open_link(f"tcp://127.0.0.1:{port}")
        with pytest.raises(LinkBrokenError, match="reset") as caught:
            await link.receive()
        assert isinstance(caught.value.__cause__, (trio.BrokenResourceError, OSError))
        with pytest.raises(LinkBrokenError) as again:
            await link.send(b"G28\n")
        assert str(again.value) == str(caught.value)
        await link.aclose()


async def test_a_reset_noticed_by_a_send_reads_the_same_to_the_next_receive(
    serve: Callable[[Handler], Awaitable[int]],
) -> None:
    port = await serve(reset)
    with trio.fail_after(TIMEOUT):
        link = await open_link(f"tcp://127.0.0.1:{port}")
        with pytest.raises(LinkBrokenError) as caught:
            while True:  # the first writes may still be buffered by the kernel
                await link.send(b"G28\n")
        with pytest.raises(LinkBrokenError) as again:
            await link.receive()
        assert str(again.value) == str(caught.value)
        await link.aclose()


async def test_refused_port_is_unavailable() -> None:
    port = free_port()
    with trio.fail_after(TIMEOUT):
        with pytest.raises(LinkUnavailableError, match=f"cannot connect to 127.0.0.1:{port}") as caught:
            await open_link(f"tcp://127.0.0.1:{port}")
    assert isinstance(caught.value.__cause__, OSError)


async def test_unanswered_connect_times_out_as_unavailable() -> None:
    # A listener that never accepts and whose backlog is full: Linux drops further SYNs.
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(0)
        port = listener.getsockname()[1]
        fillers = []
        try:
            for _ in range(4):
                filler = socket.socket()
                filler.setblocking(False)
                filler.connect_ex(("127.0.0.1", port))
                fillers.append(filler)
            with trio.fail_after(TIMEOUT):
                with pytest.raises(LinkUnavailableError, match=f"no TCP connection to 127.0.0.1:{port} within 0.3 s"):
                    await open_link(f"tcp://127.0.0.1:{port}?timeout=0.3")
        finally:
            for filler in fillers:
                filler.close()


async def test_unknown_host_is_unavailable() -> None:
    with trio.fail_after(TIMEOUT):
        with pytest.raises(LinkUnavailableError, match="cannot connect to no-such-host.invalid:5000"):
            await open_link("tcp://no-such-host.invalid:5000")


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ("tcp://192.168.1.50", "a tcp link needs a port, e.g. tcp://127.0.0.1:5000"),
        ("tcp://192.168.1.50:http", "the port of a tcp link must be a number from 1 to 65535, not 'http'"),
        ("tcp://192.168.1.50:70000", "not '70000'"),
        ("tcp://192.168.1.50:0", "must be from 1 to 65535, not 0"),
        ("tcp://:5000", "a tcp link needs a host"),
        ("tcp://h:5000?timeout=soon", "timeout must be a positive number of seconds, not 'soon'"),
        ("tcp://h:5000?timeout=-1", "timeout must be a positive number of seconds, not '-1'"),
        ("tcp://h:5000?baudrate=9600", "unknown option 'baudrate' for a TCP link; known options: timeout"),
        ("tcp://h:5000/scpi", "a TCP link has no path"),
        ("tcp://user:pw@h:5000", "a TCP link takes no user name or password"),
    ],
)
def test_bad_connection_strings_are_refused_with_the_reason(raw: str, message: str) -> None:
    with pytest.raises(LinkConfigError, match=message) as caught:
        parse_connection_string(raw)
    assert caught.value.status == 422


async def test_ipv6_literal_is_described_with_brackets(nursery: trio.Nursery) -> None:
    try:
        listeners = await nursery.start(partial(trio.serve_tcp, echo, 0, host="::1"))
    except OSError as exc:
        pytest.skip(f"no IPv6 loopback on this machine: {exc}")
    port = listeners[0].socket.getsockname()[1]
    with trio.fail_after(TIMEOUT):
        link = await open_link(f"tcp://[::1]:{port}")
        assert link.description == f"TCP [::1]:{port}"
        await link.aclose()


async def test_aclose_is_idempotent_and_later_calls_are_link_closed(serve: Callable[[Handler], Awaitable[int]]) -> None:
    port = await serve(echo)
    with trio.fail_after(TIMEOUT):
        link = await open_link(f"tcp://127.0.0.1:{port}")
        await link.aclose()
        await link.aclose()
        with pytest.raises(LinkClosedError, match="is closed"):
            await link.receive()
        with pytest.raises(LinkClosedError, match="is closed"):
            await link.send(b"x")


async def test_aclose_wakes_a_blocked_receiver(serve: Callable[[Handler], Awaitable[int]]) -> None:
    port = await serve(echo)
    failures: list[BaseException] = []

    async def receiver(link: TcpLink) -> None:
        try:
            await link.receive()
        except LinkClosedError as exc:
            failures.append(exc)

    with trio.fail_after(TIMEOUT):
        link = await open_link(f"tcp://127.0.0.1:{port}")
        async with trio.open_nursery() as inner:
            inner.start_soon(receiver, link)
            await trio.testing.wait_all_tasks_blocked()
            await link.aclose()
    assert len(failures) == 1 and "closed" in str(failures[0])
