"""mqtt:// links against the broker on 127.0.0.1:1883 (skipped, saying why, when it does not
answer): telemetry in, commands out, overflow counted, the broker dropping us, the password
never shown. Option checks and a refused broker need no broker."""

from __future__ import annotations

import logging
import socket
import threading
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import TYPE_CHECKING

import pytest
import trio
import trio.testing

from drivers import (
    LinkBrokenError,
    LinkClosedError,
    LinkConfigError,
    LinkUnavailableError,
    MqttLink,
    open_link,
    parse_connection_string,
)

if TYPE_CHECKING:
    from conftest import LogRecords  # tests/conftest.py, whose fixture log_records is

TIMEOUT = 15
BROKER = ("127.0.0.1", 1883)


def _broker_answers() -> str | None:
    """None when a broker answers on 127.0.0.1:1883, else why not."""
    try:
        with socket.create_connection(BROKER, timeout=1):
            return None
    except OSError as exc:
        return f"no MQTT broker on 127.0.0.1:1883: {exc.strerror or exc}"


needs_broker = pytest.mark.skipif(_broker_answers() is not None, reason=_broker_answers() or "")


class Peer:
    """A plain paho client playing the device: publishes telemetry, collects commands."""

    def __init__(self, client_id: str | None = None) -> None:
        import paho.mqtt.client as mqtt

        self.received: list[tuple[str, bytes]] = []
        self._connected = threading.Event()
        self._subscribed = threading.Event()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id or f"peer-{uuid.uuid4().hex[:8]}")
        self.client.on_connect = lambda *args: self._connected.set()
        self.client.on_subscribe = lambda *args: self._subscribed.set()
        self.client.on_message = lambda client, userdata, message: self.received.append(
            (message.topic, message.payload)
        )
        self.client.connect(*BROKER, keepalive=30)
        self.client.loop_start()

    async def ready(self) -> None:
        assert await trio.to_thread.run_sync(self._connected.wait, 10), "the peer could not connect"

    async def subscribe(self, topic: str) -> None:
        self._subscribed.clear()
        self.client.subscribe(topic, 1)
        assert await trio.to_thread.run_sync(self._subscribed.wait, 10), "the peer could not subscribe"

    async def publish(self, topic: str, payload: bytes, qos: int = 1) -> None:
        info = self.client.publish(topic, payload, qos=qos)
        await trio.to_thread.run_sync(info.wait_for_publish, 10)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@pytest.fixture
def topic() -> str:
    """A topic no other test run uses."""
    return f"vareon-test/{uuid.uuid4().hex}"


@pytest.fixture
async def peer() -> AsyncIterator[Peer]:
    device = Peer()
    with trio.fail_after(TIMEOUT):
        await device.ready()
    yield device
    device.close()


@pytest.fixture
async def links() -> AsyncIterator[list[MqttLink]]:
    opened: list[MqttLink] = []
    yield opened
    with trio.fail_after(TIMEOUT):
        for link in opened:
            await link.aclose()


async def _open(links: list[MqttLink], raw: str) -> MqttLink:
    link = await open_link(raw)
    assert isinstance(link, MqttLink)
    links.append(link)
    return link


async def _receive_lines(link: MqttLink, count: int) -> list[bytes]:
    data = b""
    while data.count(b"\n") < count:
        data += await link.receive()
    return data.splitlines()


@needs_broker
async def test_telemetry_published_by_the_device_is_received_as_lines(
    topic: str, peer: Peer, links: list[MqttLink]
) -> None:
    with trio.fail_after(TIMEOUT):
        link = await _open(links, f"mqtt://127.0.0.1:1883/{topic}/state?qos=1")
        assert link.description == f"MQTT 127.0.0.1:1883 topic '{topic}/state', commands to '{topic}/state/set'"
        await peer.publish(f"{topic}/state", b"T:21.3 B:20.1")
        await peer.publish(f"{topic}/state", b'{"volt": 4.98}\n')
        await peer.publish(f"{topic}/other", b"not ours")
        assert await _receive_lines(link, 2) == [b"T:21.3 B:20.1", b'{"volt": 4.98}']


@needs_broker
async def test_a_wildcard_topic_receives_every_match(topic: str, peer: Peer, links: list[MqttLink]) -> None:
    with trio.fail_after(TIMEOUT):
        link = await _open(links, f"mqtt://127.0.0.1/{topic}/+/temp?command_topic={topic}/cmd&qos=1")
        await peer.publish(f"{topic}/hotend/temp", b"210.5")
        await peer.publish(f"{topic}/bed/temp", b"60.0")
        assert await _receive_lines(link, 2) == [b"210.5", b"60.0"]


@needs_broker
async def test_commands_are_published_one_message_per_line(topic: str, peer: Peer, links: list[MqttLink]) -> None:
    with trio.fail_after(TIMEOUT):
        await peer.subscribe(f"{topic}/set")
        link = await _open(links, f"mqtt://127.0.0.1:1883/{topic}?qos=1")
        await link.send(b"M105\n")
        await link.send(b"G28 X\r\nG1 X10\n")
        while len(peer.received) < 3:
            await trio.sleep(0.01)
    assert peer.received == [(f"{topic}/set", b"M105"), (f"{topic}/set", b"G28 X"), (f"{topic}/set", b"G1 X10")]


@needs_broker
async def test_raw_framing_passes_payloads_through(topic: str, peer: Peer, links: list[MqttLink]) -> None:
    with trio.fail_after(TIMEOUT):
        await peer.subscribe(f"{topic}/firmware")
        link = await _open(links, f"mqtt://127.0.0.1/{topic}?framing=raw&command_topic={topic}/firmware&qos=1")
        chunk = bytes(range(256))
        await link.send(chunk)
        await peer.publish(topic, b"\x00\x01no newline")
        assert await link.receive() == b"\x00\x01no newline"
        while not peer.received:
            await trio.sleep(0.01)
    assert peer.received == [(f"{topic}/firmware", chunk)]


@needs_broker
async def test_a_reader_that_falls_behind_loses_the_oldest_and_it_is_counted(
    topic: str, peer: Peer, links: list[MqttLink], log_records: LogRecords
) -> None:
    with trio.fail_after(TIMEOUT):
        link = await _open(links, f"mqtt://127.0.0.1/{topic}?buffer=5&qos=1")
        for n in range(20):
            await peer.publish(topic, b"sample %d" % n)
        while link.dropped < 15:  # 20 arrived, 5 fit
            await trio.sleep(0.01)
        assert link.dropped == 15
        assert link.description.endswith(", 15 messages dropped")
        assert await _receive_lines(link, 5) == [b"sample %d" % n for n in range(15, 20)]
    assert any("15 messages dropped so far (buffer 5)" in m for m in log_records.messages(logging.WARNING))


@needs_broker
async def test_the_broker_dropping_us_is_a_break(topic: str, links: list[MqttLink]) -> None:
    with trio.fail_after(TIMEOUT):
        link = await _open(links, f"mqtt://127.0.0.1/{topic}?client_id=vareon-{topic[-12:]}")
        # A second client with the same id takes the session over: the broker disconnects the first.
        usurper = Peer(client_id=f"vareon-{topic[-12:]}")
        try:
            with pytest.raises(LinkBrokenError, match="the connection to the broker was lost") as info:
                await link.receive()
            with pytest.raises(LinkBrokenError) as again:
                await link.send(b"M105\n")
            assert str(again.value) == str(info.value)
            await link.aclose()
            with pytest.raises(LinkClosedError, match="is closed"):
                await link.receive()
        finally:
            usurper.close()


@needs_broker
async def test_the_password_is_never_shown(topic: str, links: list[MqttLink], log_records: LogRecords) -> None:
    # The broker here lets anyone in, so the credentials are accepted (or refused) without matter.
    with trio.fail_after(TIMEOUT):
        try:
            link = await _open(links, f"mqtt://printer:s3cr%40t@127.0.0.1:1883/{topic}")
        except LinkConfigError as exc:
            assert "s3cr" not in str(exc)
            pytest.skip(f"the broker refuses unknown users: {exc}")
        assert link.description == f"MQTT printer@127.0.0.1:1883 topic '{topic}', commands to '{topic}/set'"
        assert "s3cr" not in repr(link.__dict__.get("_settings"))
    assert not [m for m in log_records.messages() if "s3cr" in m]


@needs_broker
async def test_aclose_is_idempotent_and_wakes_a_blocked_receiver(topic: str) -> None:
    caught: list[LinkClosedError] = []

    async def receive(link: MqttLink) -> None:
        with pytest.raises(LinkClosedError) as info:
            await link.receive()
        caught.append(info.value)

    with trio.fail_after(TIMEOUT):
        link = await open_link(f"mqtt://127.0.0.1/{topic}")
        async with trio.open_nursery() as nursery:
            nursery.start_soon(receive, link)
            await trio.testing.wait_all_tasks_blocked()
            await link.aclose()
        await link.aclose()
        with pytest.raises(LinkClosedError, match="is closed"):
            await link.send(b"x")
    assert "is closed" in str(caught[0])


async def test_a_broker_that_is_down_is_unavailable_and_the_password_stays_hidden(
    log_records: LogRecords,
) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with trio.fail_after(TIMEOUT):
        with pytest.raises(LinkUnavailableError, match=f"cannot connect to the MQTT broker 127.0.0.1:{port}") as info:
            await open_link(f"mqtt://user:hunter2@127.0.0.1:{port}/devices/p1")
    assert "hunter2" not in str(info.value)
    assert not [m for m in log_records.messages() if "hunter2" in m]


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ("mqtt://broker:1883", "an MQTT link needs a topic"),
        ("mqtt://broker/sensors/#", "the topic 'sensors/#' has a wildcard, so commands need their own topic"),
        ("mqtt://broker/a/+/c", "has a wildcard"),
        ("mqtt://broker/a/#/c?command_topic=x", "has a misplaced wildcard"),
        ("mqtt://broker/a/b+?command_topic=x", "has a misplaced wildcard"),
        ("mqtt://broker/a?command_topic=a/%2B", "command_topic 'a/[+]' cannot have wildcards"),
        ("mqtt://broker/a?qos=3", "qos must be one of 0, 1, 2, not '3'"),
        ("mqtt://broker/a?keepalive=never", "keepalive must be a positive integer, not 'never'"),
        ("mqtt://broker/a?framing=json", "framing must be one of line, raw"),
        ("mqtt://broker/a?client_id=", "client_id cannot be empty"),
        ("mqtt://broker:99999/a", "the port of a mqtt link must be a number from 1 to 65535"),
        (
            "mqtt://u:hunter2@broker/a?password=x",
            "unknown option 'password' for an MQTT link; known options: buffer, client_id, command_topic,"
            " framing, keepalive, qos, retain, timeout",
        ),
    ],
)
def test_bad_connection_strings_are_refused_with_the_reason(raw: str, message: str) -> None:
    with pytest.raises(LinkConfigError, match=message) as info:
        parse_connection_string(raw)
    assert "hunter2" not in str(info.value)


def test_defaults_and_the_multi_level_wildcard() -> None:
    from drivers.mqtt import MqttDriver

    settings = MqttDriver.settings(parse_connection_string("mqtt://alice:pw@broker/site/#?command_topic=site/cmd"))
    assert (settings.host, settings.port, settings.username) == ("broker", 1883, "alice")
    assert (settings.topic, settings.command_topic, settings.qos) == ("site/#", "site/cmd", 0)
    assert "pw" not in repr(settings)


@pytest.fixture(autouse=True)
def _no_paho_threads_left() -> Iterator[None]:
    """Every link stops its network thread when closed."""
    before = {t.ident for t in threading.enumerate()}
    yield
    left = [t.name for t in threading.enumerate() if t.ident not in before and t.name.startswith("paho-mqtt-client-vareon")]
    assert not left, f"paho threads still running: {left}"
