"""Serial links: a pty pair stands in for a USB serial device (bytes both ways, unplugging it,
exclusive use), a FIFO for a device that is not a terminal, and pyserial's loop:// and
socket:// (to a local TCP listener) through the worker-thread path."""

from __future__ import annotations

import os
import socket
from collections.abc import AsyncIterator, Iterator
from functools import partial
from pathlib import Path

import pytest
import trio
import trio.testing

from drivers import (
    Link,
    LinkBrokenError,
    LinkClosedError,
    LinkConfigError,
    LinkUnavailableError,
    SerialLink,
    SerialUrlLink,
    open_link,
    parse_connection_string,
)

TIMEOUT = 10


class Pty:
    """The master side of a pseudo-terminal; the device under test opens ``path``."""

    def __init__(self) -> None:
        self.master, slave = os.openpty()
        self.path = os.ttyname(slave)
        os.close(slave)  # the link opens the slave by its path, as it would /dev/ttyUSB0
        os.set_blocking(self.master, False)
        self.open = True

    def write(self, data: bytes) -> None:
        os.write(self.master, data)

    async def read_exactly(self, count: int) -> bytes:
        data = b""
        while len(data) < count:
            try:
                data += os.read(self.master, count - len(data))
            except BlockingIOError:
                await trio.lowlevel.wait_readable(self.master)
        return data

    def unplug(self) -> None:
        if self.open:
            self.open = False
            os.close(self.master)


@pytest.fixture
def pty() -> Iterator[Pty]:
    device = Pty()
    yield device
    device.unplug()


@pytest.fixture
async def link_to(pty: Pty) -> AsyncIterator[list[Link]]:
    """Links a test opens; closed afterwards."""
    opened: list[Link] = []
    yield opened
    with trio.fail_after(TIMEOUT):
        for link in opened:
            await link.aclose()


async def test_pty_bytes_go_both_ways(pty: Pty, link_to: list[Link]) -> None:
    with trio.fail_after(TIMEOUT):
        link = await open_link(f"{pty.path}?baudrate=250000&parity=E&stopbits=2")
        link_to.append(link)
        assert isinstance(link, SerialLink)
        assert link.description == f"{pty.path} at 250000 baud 8E2"
        pty.write(b"ok T:21.3 /0.0 B:20.1 /0.0\n")
        received = b""
        while not received.endswith(b"\n"):
            received += await link.receive()
        assert received == b"ok T:21.3 /0.0 B:20.1 /0.0\n"
        await link.send(b"M105\n")
        assert await pty.read_exactly(5) == b"M105\n"


async def test_pty_large_write_waits_for_the_reader(pty: Pty, link_to: list[Link]) -> None:
    # Far more than the pty's buffer: the send must wait for writability, not fail or block the loop.
    payload = bytes(range(256)) * 512
    with trio.fail_after(TIMEOUT):
        link = await open_link(pty.path)
        link_to.append(link)
        received: list[bytes] = []

        async def drain() -> None:
            received.append(await pty.read_exactly(len(payload)))

        async with trio.open_nursery() as nursery:
            nursery.start_soon(drain)
            await link.send(payload)
    assert received == [payload]


async def test_unplugging_the_pty_is_a_break(pty: Pty, link_to: list[Link]) -> None:
    with trio.fail_after(TIMEOUT):
        link = await open_link(pty.path)
        link_to.append(link)
        pty.write(b"last line\n")
        pty.unplug()
        data = b""
        with pytest.raises(LinkBrokenError, match=f"{pty.path} at 115200 baud 8N1 went away"):
            while True:  # what arrived before the unplug may still be read first
                data += await link.receive()
        with pytest.raises(LinkBrokenError):
            await link.send(b"M105\n")


@pytest.mark.parametrize("first", ["receive", "send"])
async def test_a_far_end_break_reads_the_same_whichever_side_notices_first(
    pty: Pty, link_to: list[Link], first: str
) -> None:
    with trio.fail_after(TIMEOUT):
        link = await open_link(pty.path)
        link_to.append(link)
        pty.unplug()  # the far end is gone before anyone uses the link: no race left

        async def use(side: str) -> str:
            with pytest.raises(LinkBrokenError) as info:
                if side == "receive":
                    await link.receive()
                else:
                    await link.send(b"M105\n")
            return str(info.value)

        noticed = await use(first)
        assert noticed.startswith(f"{pty.path} at 115200 baud 8N1 went away")
        assert await use("send" if first == "receive" else "receive") == noticed
        # Closed by us after the break: our close is what a later use meets.
        await link.aclose()
        with pytest.raises(LinkClosedError, match="is closed"):
            await link.receive()
        with pytest.raises(LinkClosedError, match="is closed"):
            await link.send(b"M105\n")


async def test_unplugging_wakes_a_blocked_receiver(pty: Pty, link_to: list[Link]) -> None:
    caught: list[LinkBrokenError] = []

    async def receive(link: Link) -> None:
        with pytest.raises(LinkBrokenError) as info:
            await link.receive()
        caught.append(info.value)

    with trio.fail_after(TIMEOUT):
        link = await open_link(pty.path)
        link_to.append(link)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(receive, link)
            await trio.testing.wait_all_tasks_blocked()
            pty.unplug()
    assert "went away" in str(caught[0])


async def test_a_missing_device_is_unavailable(tmp_path: Path) -> None:
    with trio.fail_after(TIMEOUT):
        with pytest.raises(LinkUnavailableError, match="does not exist; is the device plugged in"):
            await open_link(str(tmp_path / "ttyUSB7"))


async def test_a_port_in_use_is_unavailable_unless_shared(pty: Pty, link_to: list[Link]) -> None:
    with trio.fail_after(TIMEOUT):
        link_to.append(await open_link(pty.path))
        with pytest.raises(LinkUnavailableError, match="in use by another program"):
            await open_link(pty.path)
        link_to.append(await open_link(f"{pty.path}?exclusive=0"))


async def test_the_port_can_be_opened_again_after_aclose(pty: Pty) -> None:
    with trio.fail_after(TIMEOUT):
        first = await open_link(pty.path)
        await first.aclose()
        second = await open_link(pty.path)
        pty.write(b"x")
        assert await second.receive() == b"x"
        await second.aclose()


def test_permission_denied_names_the_dialout_group(tmp_path: Path) -> None:
    import serial.serialposix  # noqa: F401 - loaded before a fork, so the child need not read it

    device = tmp_path / "ttyACM0"
    device.write_bytes(b"")
    device.chmod(0o600)
    tmp_path.chmod(0o755)

    def attempt() -> str:
        try:
            trio.run(open_link, str(device))
        except LinkUnavailableError as exc:
            return str(exc)
        return "opened"

    if os.geteuid() != 0:
        device.chmod(0o000)
        message = attempt()
    else:
        # root opens anything: try as nobody, in a forked child, as a user outside dialout would.
        read_end, write_end = os.pipe()
        pid = os.fork()
        if pid == 0:  # pragma: no cover - the child reports through the pipe
            try:
                os.setgid(65534)
                os.setuid(65534)
                os.write(write_end, attempt().encode())
            finally:
                os._exit(0)
        os.close(write_end)
        with os.fdopen(read_end, "rb") as pipe:
            message = pipe.read().decode()
        os.waitpid(pid, 0)
    assert message.startswith(f"permission denied on {device}; add the user running Vareon to the dialout group")


async def test_a_fifo_is_used_without_port_settings(tmp_path: Path) -> None:
    fifo = tmp_path / "device"
    os.mkfifo(fifo)
    with trio.fail_after(TIMEOUT):
        link = await open_link(str(fifo))
        try:
            assert link.description == f"{fifo} (not a terminal, port settings not applied)"
            await link.send(b"ping\n")  # opened read-write, the FIFO hands our bytes back
            assert await link.receive() == b"ping\n"
            with pytest.raises(LinkUnavailableError, match="in use by another program"):
                await open_link(str(fifo))
        finally:
            await link.aclose()


async def test_a_regular_file_is_refused_and_left_as_it_was(tmp_path: Path) -> None:
    notes = tmp_path / "notes.txt"
    notes.write_text("keep me\n")
    with trio.fail_after(TIMEOUT), pytest.raises(LinkConfigError, match="is not a device"):
        await open_link(str(notes))
    assert notes.read_text() == "keep me\n"


async def test_aclose_is_idempotent_and_later_calls_are_link_closed(pty: Pty) -> None:
    with trio.fail_after(TIMEOUT):
        link = await open_link(pty.path)
        await link.aclose()
        await link.aclose()
        with pytest.raises(LinkClosedError, match="is closed"):
            await link.receive()
        with pytest.raises(LinkClosedError, match="is closed"):
            await link.send(b"x")


async def test_aclose_wakes_a_blocked_receiver(pty: Pty) -> None:
    caught: list[LinkClosedError] = []

    async def receive(link: Link) -> None:
        with pytest.raises(LinkClosedError) as info:
            await link.receive()
        caught.append(info.value)

    with trio.fail_after(TIMEOUT):
        link = await open_link(pty.path)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(receive, link)
            await trio.testing.wait_all_tasks_blocked()
            await link.aclose()
    assert "was closed" in str(caught[0])


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ("/dev/ttyUSB0?baudrate=fast", "baudrate must be a positive integer, not 'fast'"),
        ("/dev/ttyUSB0?baudrate=0", "baudrate must be a positive integer, not '0'"),
        ("/dev/ttyUSB0?baudrate=2147483648", "baudrate must be at most 50000000, not '2147483648'"),
        ("/dev/ttyUSB0?parity=X", "parity must be one of N, E, O, M, S, not 'X'"),
        ("/dev/ttyUSB0?bytesize=9", "bytesize must be one of 5, 6, 7, 8, not '9'"),
        ("/dev/ttyUSB0?stopbits=3", "stopbits must be one of 1, 1.5, 2, not '3'"),
        ("/dev/ttyUSB0?rtscts=maybe", "rtscts must be 1 or 0"),
        (
            "/dev/ttyUSB0?speed=115200",
            "unknown option 'speed' for a serial port; known options: baudrate, bytesize, dsrdtr,"
            " exclusive, parity, rtscts, stopbits, xonxoff",
        ),
        ("/dev/", "a serial device path is absolute and names a device"),
        ("socket://localhost", "a socket link needs a port"),
        ("socket://localhost:7000/x", "socket:// takes no path"),
        ("rfc2217://localhost:port", "the port of a rfc2217 link must be a number"),
        ("loop://somewhere", "loop:// takes no host or path"),
        ("loop://?exclusive=1", "unknown option 'exclusive' for a loop:// link"),
    ],
)
def test_bad_options_are_refused_with_the_reason(raw: str, message: str) -> None:
    with pytest.raises(LinkConfigError, match=message.replace("?", r"\?").replace(".", r"\.")):
        parse_connection_string(raw)


def test_good_options_are_accepted() -> None:
    target = parse_connection_string(
        "/dev/ttyUSB0?baudrate=115200&bytesize=8&parity=N&stopbits=1&rtscts=0&xonxoff=0"
    )
    assert target.scheme == "serial" and target.location == "/dev/ttyUSB0"
    assert parse_connection_string("rfc2217://10.0.0.2:2217?baudrate=9600&parity=odd").scheme == "rfc2217"


# pyserial's URL handlers, driven from worker threads.


async def test_loop_url_hands_bytes_back() -> None:
    with trio.fail_after(TIMEOUT):
        link = await open_link("loop://?baudrate=9600")
        try:
            assert isinstance(link, SerialUrlLink)
            assert link.description == "loop:// at 9600 baud 8N1 (pyserial)"
            payload = b"".join(b"line %d\n" % n for n in range(2000))  # beyond pyserial's 4 KiB loop queue
            received = bytearray()

            async def drain() -> None:
                while len(received) < len(payload):
                    received.extend(await link.receive())

            async with trio.open_nursery() as nursery:
                nursery.start_soon(drain)
                await link.send(payload)
            assert bytes(received) == payload
        finally:
            await link.aclose()


async def test_cancelled_threaded_receive_loses_nothing() -> None:
    with trio.fail_after(TIMEOUT):
        link = await open_link("loop://")
        try:
            with trio.move_on_after(0.2) as scope:
                await link.receive()
            assert scope.cancelled_caught
            await link.send(b"after\n")
            assert await link.receive() == b"after\n"
        finally:
            await link.aclose()


async def test_aclose_wakes_a_blocked_threaded_receiver() -> None:
    caught: list[LinkClosedError] = []

    async def receive(link: Link) -> None:
        with pytest.raises(LinkClosedError) as info:
            await link.receive()
        caught.append(info.value)

    with trio.fail_after(TIMEOUT):
        link = await open_link("loop://")
        async with trio.open_nursery() as nursery:
            nursery.start_soon(receive, link)
            await trio.sleep(0.1)  # the receiver is inside its worker thread now
            await link.aclose()
        await link.aclose()
        with pytest.raises(LinkClosedError, match="is closed"):
            await link.send(b"x")
    assert "closed" in str(caught[0])


async def _echo(stream: trio.SocketStream) -> None:
    async for data in stream:
        await stream.send_all(data)


async def _answer_and_hang_up(stream: trio.SocketStream) -> None:
    # pyserial's open() empties the input buffer, so answer a request rather than greet.
    await stream.receive_some()
    await stream.send_all(b"FIRMWARE_NAME:Marlin 2.1.2\nok\n")
    await stream.aclose()


async def _serve(nursery: trio.Nursery, handler: object) -> int:
    listeners = await nursery.start(partial(trio.serve_tcp, handler, 0, host="127.0.0.1"))
    return int(listeners[0].socket.getsockname()[1])


async def test_socket_url_talks_to_a_tcp_listener(nursery: trio.Nursery) -> None:
    port = await _serve(nursery, _echo)
    with trio.fail_after(TIMEOUT):
        link = await open_link(f"socket://127.0.0.1:{port}")
        try:
            assert link.description == f"socket://127.0.0.1:{port} (pyserial)"
            await link.send(b"M115\n")
            received = b""
            while received != b"M115\n":
                received += await link.receive()
        finally:
            await link.aclose()


async def test_socket_url_far_end_closing_is_a_break(nursery: trio.Nursery) -> None:
    port = await _serve(nursery, _answer_and_hang_up)
    with trio.fail_after(TIMEOUT):
        link = await open_link(f"socket://127.0.0.1:{port}")
        try:
            await link.send(b"M115\n")
            received = b""
            with pytest.raises(LinkBrokenError, match="went away: read failed: socket disconnected") as info:
                while True:
                    received += await link.receive()
            assert received == b"FIRMWARE_NAME:Marlin 2.1.2\nok\n"
            with pytest.raises(LinkBrokenError) as again:
                await link.send(b"M105\n")
            assert str(again.value) == str(info.value)
        finally:
            await link.aclose()


async def test_socket_url_refused_is_unavailable() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with trio.fail_after(TIMEOUT):
        with pytest.raises(LinkUnavailableError, match=f"cannot open socket://127.0.0.1:{port}: .*refused"):
            await open_link(f"socket://127.0.0.1:{port}")
