"""MQTT links: ``mqtt://[user:password@]broker[:1883]/topic?qos=0&command_topic=...``.

For devices that speak MQTT (ESP32 firmwares, Tasmota, Zigbee2MQTT bridges). What the device
publishes on ``topic`` (wildcards ``+`` and ``#`` allowed) is what the link receives, one message
per line: a payload that does not end with a newline gets one, so the device actor's line
framing works as on a serial port. What the actor sends is published on ``command_topic``
(default ``<topic>/set``; a wildcard topic needs one), one message per line, without its line
terminator. ``framing=raw`` passes payloads through untouched both ways (binary devices).

The client is paho-mqtt 2.x, imported on first use. Its network loop runs in its own thread
(``loop_start``); received messages go into a bounded buffer that the trio side drains, woken
through the trio token. When the device publishes faster than the runtime reads, the oldest
messages are dropped and counted (:attr:`MqttLink.dropped`, the description, a warning in the
log). The client does not reconnect by itself: a connection lost after it was made is a
:class:`~drivers.errors.LinkBrokenError`, and the device actor reconnects with its backoff.

Options: ``qos`` (0, 1, 2; subscribing and publishing), ``command_topic``, ``client_id``
(default ``vareon-<random>``), ``keepalive`` (seconds, default 60), ``timeout`` (seconds to
connect and subscribe, default 5), ``retain`` (publish commands retained, default 0),
``framing`` (``line`` or ``raw``), ``buffer`` (messages held for the reader, default 10000).
The password never appears in a description, a log line or an error message.
"""

from __future__ import annotations

import collections
import logging
import secrets
import threading
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote, urlsplit

import trio

from drivers._link_base import LinkBase
from drivers._options import check_known, flag, host_and_port, one_of, positive_float, positive_int
from drivers.errors import LinkConfigError, LinkUnavailableError
from drivers.link import ConnectionTarget

__all__ = ["DEFAULT_BUFFER", "DEFAULT_PORT", "MqttDriver", "MqttLink", "MqttSettings"]

log = logging.getLogger("vareon.drivers.mqtt")

DEFAULT_PORT = 1883
"""The broker's port when the connection string names none."""

DEFAULT_BUFFER = 10_000
"""Messages held for a reader that falls behind, before the oldest are dropped."""

_OPTIONS = ("buffer", "client_id", "command_topic", "framing", "keepalive", "qos", "retain", "timeout")
_QOS = {"0": 0, "1": 1, "2": 2}
_FRAMINGS = {"line": "line", "raw": "raw"}
# Reason codes of a refused CONNECT that only a change of the connection string fixes.
_CONFIG_REFUSALS = {"Not authorized", "Bad user name or password", "Client identifier not valid"}


@dataclass(frozen=True)
class MqttSettings:
    """The checked parts of an ``mqtt://`` connection string.

    Attributes:
        host, port: the broker.
        username: the user name, or None to connect anonymously.
        topic: the topic (filter) the device publishes on.
        command_topic: where commands are published.
        qos, client_id, keepalive, timeout, retain, framing, buffer: the options.
    """

    host: str
    port: int
    username: str | None
    topic: str
    command_topic: str
    qos: int = 0
    client_id: str = ""
    keepalive: int = 60
    timeout: float = 5.0
    retain: bool = False
    framing: str = "line"
    buffer: int = DEFAULT_BUFFER

    def describe(self) -> str:
        """``MQTT user@broker:1883 topic 'a/b', commands to 'a/b/set'``, never the password."""
        broker = f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"
        who = f"{self.username}@" if self.username else ""
        return f"MQTT {who}{broker} topic {self.topic!r}, commands to {self.command_topic!r}"


class MqttDriver:
    """The driver of ``mqtt://``."""

    def check(self, target: ConnectionTarget) -> None:
        """Refuse a missing or malformed topic, a bad broker address, or a bad option.

        Raises:
            LinkConfigError: names what is wrong; never quotes the password.
        """
        self.settings(target)

    async def open(self, target: ConnectionTarget) -> MqttLink:
        """Connect to the broker and subscribe to the topic; both are confirmed before returning.

        Raises:
            LinkConfigError: the target is wrong, or the broker refused the credentials,
                the client id or the subscription.
            LinkUnavailableError: the broker is down, unreachable, or did not answer in time.
        """
        settings = self.settings(target)
        password = _password(target.location)
        link = MqttLink(settings)
        try:
            await link._connect(password)
        except BaseException:
            with trio.CancelScope(shield=True):
                await link.aclose()
            raise
        return link

    @staticmethod
    def settings(target: ConnectionTarget) -> MqttSettings:
        """The checked settings of ``target`` (without the password).

        Raises:
            LinkConfigError: as :meth:`check`.
        """
        check_known(target.options, _OPTIONS, what="an MQTT link")
        host, port = host_and_port(target.location, scheme="mqtt", default_port=DEFAULT_PORT)
        userinfo = target.location.rpartition("@")[0]
        username = (unquote(userinfo.partition(":")[0]) or None) if userinfo else None
        topic = unquote(target.path)
        if not topic:
            raise LinkConfigError("an MQTT link needs a topic, e.g. mqtt://broker:1883/printers/p1")
        _check_topic(topic, what="topic", wildcards=True)
        options = target.options
        if "command_topic" in options:
            command_topic = options["command_topic"]
            _check_topic(command_topic, what="command_topic", wildcards=False)
        elif "+" in topic or "#" in topic:
            raise LinkConfigError(
                f"the topic {topic!r} has a wildcard, so commands need their own topic: "
                "add command_topic=..., e.g. ?command_topic=printers/p1/set"
            )
        else:
            command_topic = f"{topic}/set"
        values: dict[str, Any] = {}
        if "qos" in options:
            values["qos"] = one_of("qos", options["qos"], _QOS)
        if "client_id" in options:
            if not options["client_id"].strip():
                raise LinkConfigError("client_id cannot be empty; leave it out for a generated one")
            values["client_id"] = options["client_id"]
        if "keepalive" in options:
            values["keepalive"] = positive_int("keepalive", options["keepalive"])
        if "timeout" in options:
            values["timeout"] = positive_float("timeout", options["timeout"])
        if "retain" in options:
            values["retain"] = flag("retain", options["retain"])
        if "framing" in options:
            values["framing"] = one_of("framing", options["framing"], _FRAMINGS)
        if "buffer" in options:
            values["buffer"] = positive_int("buffer", options["buffer"])
        return MqttSettings(host=host, port=port, username=username, topic=topic, command_topic=command_topic, **values)


class MqttLink(LinkBase):
    """A subscription to a device's topic and a publisher to its command topic.

    Attributes:
        dropped: messages lost because the reader fell more than ``buffer`` messages behind.
    """

    def __init__(self, settings: MqttSettings) -> None:
        super().__init__(settings.describe())
        self._settings = settings
        self._client_id = settings.client_id or f"vareon-{secrets.token_hex(6)}"
        self._client: Any = None
        self._token = trio.lowlevel.current_trio_token()
        # Filled by paho's thread, drained by the trio side; `_lock` guards it and the fields below.
        self._lock = threading.Lock()
        self._messages: collections.deque[bytes] = collections.deque(maxlen=settings.buffer)
        self._lost: str | None = None
        self.dropped = 0
        self._reported = 0
        self._pending = bytearray()
        self._ready = trio.Event()
        self._replies: dict[str, Any] = {}
        self._answered = trio.Event()

    @property
    def description(self) -> str:
        """Broker, user, topics and any drops; never the password."""
        text = self._settings.describe()
        dropped = self.dropped
        return f"{text}, {dropped} messages dropped" if dropped else text

    async def receive(self, max_bytes: int = 65536) -> bytes:
        """The next message(s) as bytes: whole messages while they fit in ``max_bytes``.

        Raises:
            LinkBrokenError: the connection to the broker was lost.
            LinkClosedError: we closed the link.
        """
        await trio.lowlevel.checkpoint_if_cancelled()
        async with self._receive_lock:
            while True:
                self._check_open()
                self._ready = trio.Event()  # reset before looking, so no wake-up is missed
                lost = self._take()
                if self._pending:
                    data = bytes(self._pending[:max_bytes])
                    del self._pending[:max_bytes]
                    await trio.lowlevel.cancel_shielded_checkpoint()  # the data is taken: deliver it
                    return data
                if lost is not None:
                    raise self._broke(f"{self.description}: {lost}")
                await self._ready.wait()

    async def send(self, data: bytes) -> None:
        """Publish ``data`` on the command topic: one message per line (``framing=line``, the
        line terminators removed) or one message as it is (``framing=raw``).

        Raises:
            LinkBrokenError: the connection to the broker was lost.
            LinkClosedError: we closed the link.
        """
        await trio.lowlevel.checkpoint()
        self._check_open()
        with self._lock:
            lost = self._lost
        if lost is not None:
            raise self._broke(f"{self.description}: {lost}")
        messages = data.splitlines() if self._settings.framing == "line" else [data]
        import paho.mqtt.client as mqtt

        for message in messages:
            info = self._client.publish(
                self._settings.command_topic, message, qos=self._settings.qos, retain=self._settings.retain
            )
            if info.rc != mqtt.MQTT_ERR_SUCCESS:
                raise self._broke(f"{self.description}: publishing failed: {mqtt.error_string(info.rc)}")

    async def _close(self) -> None:
        # Disconnect and stop the network thread; a task blocked in receive wakes to the close.
        self._ready.set()
        self._answered.set()
        client, self._client = self._client, None
        if client is None:
            await trio.lowlevel.checkpoint()
            return
        try:
            await trio.to_thread.run_sync(_shut_down, client, abandon_on_cancel=True)
        except Exception as exc:  # noqa: BLE001 - paho may fail in any way while closing; we must not
            log.warning("closing %s failed: %s", self.description, type(exc).__name__)

    # The trio side.

    async def _connect(self, password: str | None) -> None:
        import paho.mqtt.client as mqtt

        settings = self._settings
        where = f"the MQTT broker {settings.host}:{settings.port}"
        client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2,
            client_id=self._client_id,
            clean_session=True,
            protocol=mqtt.MQTTv311,
            reconnect_on_failure=False,
        )
        client.connect_timeout = settings.timeout
        if settings.username is not None:
            client.username_pw_set(settings.username, password)
        client.on_connect = self._on_connect
        client.on_subscribe = self._on_subscribe
        client.on_message = self._on_message
        client.on_disconnect = self._on_disconnect
        self._client = client
        try:
            await trio.to_thread.run_sync(client.connect, settings.host, settings.port, settings.keepalive)
        except OSError as exc:  # refused, unreachable, unknown host, timed out
            reason = exc.strerror or str(exc) or type(exc).__name__
            raise LinkUnavailableError(f"cannot connect to {where}: {reason}; is it running?") from exc
        except ValueError as exc:
            raise LinkConfigError(f"cannot connect to {where}: {exc}") from exc
        client.loop_start()
        connack = await self._answer("connack", f"{where} did not accept the connection within {settings.timeout:g} s")
        if connack.is_failure:
            name = connack.getName()
            error = LinkConfigError if name in _CONFIG_REFUSALS else LinkUnavailableError
            raise error(f"{where} refused the connection: {name}")
        result, mid = client.subscribe(settings.topic, settings.qos)
        if result != mqtt.MQTT_ERR_SUCCESS:
            raise LinkUnavailableError(f"cannot subscribe at {where}: {mqtt.error_string(result)}")
        granted = await self._answer(f"suback {mid}", f"{where} did not confirm the subscription within {settings.timeout:g} s")
        if granted.is_failure:
            raise LinkConfigError(f"{where} refused the subscription to {settings.topic!r}: {granted.getName()}")

    async def _answer(self, key: str, late: str) -> Any:
        with trio.move_on_after(self._settings.timeout):
            while key not in self._replies:
                with self._lock:
                    lost = self._lost
                if lost is not None:
                    raise LinkUnavailableError(f"the MQTT broker {self._settings.host}:{self._settings.port}: {lost}")
                self._check_open()
                self._answered = trio.Event()
                await self._answered.wait()
            return self._replies.pop(key)
        raise LinkUnavailableError(late)

    def _take(self) -> str | None:
        with self._lock:
            messages = list(self._messages)
            self._messages.clear()
            lost, dropped = self._lost, self.dropped
        line = self._settings.framing == "line"
        for payload in messages:
            self._pending += payload
            if line and not payload.endswith(b"\n"):
                self._pending += b"\n"
        if dropped != self._reported:
            log.warning(
                "%s: the reader fell behind; %d messages dropped so far (buffer %d)",
                self._settings.describe(),
                dropped,
                self._settings.buffer,
            )
            self._reported = dropped
        return lost

    def _wake(self) -> None:
        self._ready.set()

    def _wake_all(self) -> None:
        self._ready.set()
        self._answered.set()

    def _reply(self, key: str, value: Any) -> None:
        self._replies[key] = value
        self._answered.set()

    def _to_trio(self, function: Any, *args: Any) -> None:
        try:
            self._token.run_sync_soon(function, *args, idempotent=function == self._wake)
        except trio.RunFinishedError:
            pass  # the runtime is gone; nobody is left to tell

    # paho's thread.

    def _on_connect(self, client: Any, userdata: Any, flags: Any, reason: Any, properties: Any) -> None:
        self._to_trio(self._reply, "connack", reason)

    def _on_subscribe(self, client: Any, userdata: Any, mid: int, reasons: list[Any], properties: Any) -> None:
        self._to_trio(self._reply, f"suback {mid}", reasons[0])

    def _on_message(self, client: Any, userdata: Any, message: Any) -> None:
        with self._lock:
            if len(self._messages) == self._messages.maxlen:
                self.dropped += 1  # the deque drops the oldest itself
            self._messages.append(message.payload)
        self._to_trio(self._wake)

    def _on_disconnect(self, client: Any, userdata: Any, flags: Any, reason: Any, properties: Any) -> None:
        with self._lock:
            if self._lost is None:
                self._lost = f"the connection to the broker was lost ({reason})"
        self._to_trio(self._wake_all)


def _shut_down(client: Any) -> None:
    client.disconnect()
    client.loop_stop()


def _password(location: str) -> str | None:
    try:
        password = urlsplit(f"//{location}").password
    except ValueError:
        return None
    return unquote(password) if password is not None else None


def _check_topic(topic: str, *, what: str, wildcards: bool) -> None:
    if "\0" in topic or len(topic.encode()) > 65535:
        raise LinkConfigError(f"{what} {topic!r} is not a valid MQTT topic")
    levels = topic.split("/")
    for index, level in enumerate(levels):
        if "+" not in level and "#" not in level:
            continue
        if not wildcards:
            raise LinkConfigError(f"{what} {topic!r} cannot have wildcards (+ or #): commands go to one topic")
        if level == "+" or (level == "#" and index == len(levels) - 1):
            continue
        raise LinkConfigError(
            f"{what} {topic!r} has a misplaced wildcard: + stands for a whole level and # only for the last"
            " (e.g. sensors/+/temperature, sensors/#)"
        )
