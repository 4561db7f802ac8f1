"""Telemetry: received lines read into samples (:class:`TelemetryParser`) and published on the
bus, one event per batch of lines (:class:`DeviceStream`).

A device actor hands every batch of complete lines it read from its link to
``DeviceStream.received(lines, at)`` and every command it wrote to ``DeviceStream.sent(line,
at)``. Both publish on the topic ``telemetry.device.<id>`` without waiting (the bus never blocks a
publisher), so a device that streams thousands of lines a second is never held up by a slow
WebSocket client or the database. The two event shapes::

    {"deviceId": "<id>", "time": <datetime>, "samples": [{"metric": "T", "value": 21.3}, ...],
     "lines": ["ok T:21.3 /0.0 B:20.1 /0.0", ...]}
    {"deviceId": "<id>", "time": <datetime>, "sent": "M105"}

``lines`` holds every line of the batch (the device's log, as a serial monitor shows it);
``samples`` what the device's :class:`~actors.myntrix.devices.configuration.TelemetrySettings` read
from them. ``time`` is the aware UTC datetime the batch was read at (the WebSocket sends it as ISO
8601; the recorder stores it).

How each format reads a line (``metricPrefix`` goes before every metric name):

``json``
    One JSON object per line. Every numeric leaf is a sample; nested keys are joined with ``.``
    (``{"env": {"t": 21.5}}`` gives ``env.t``), array items by their index (``a.0``); booleans
    count as 0 and 1; strings, nulls, NaN and infinities are not samples. A line that is not a
    JSON object is not telemetry (an ``ok``, a banner); one that starts with ``{`` and does not
    decode is counted as malformed.
``kv``
    ``key<separator>value`` pairs, separated by spaces, commas or semicolons; values that are not
    numbers are skipped (``state=idle``). A ``/<number>`` right after a value is that key's target:
    Marlin's ``ok T:21.3 /200.0 B:20.1 /60.0`` with the separator ``:`` gives ``T=21.3``,
    ``T.target=200``, ``B=20.1``, ``B.target=60``.
``regex``
    The pattern is searched in the line; each named group that matched is a sample named after the
    group. A group that matched text that is not a number is counted as malformed.
``none``
    No samples: lines go to the stream as log lines only.

Metric names longer than :data:`MAX_METRIC_NAME` characters (the ``telemetry`` table's column) are
dropped and counted as malformed rather than truncated into a name that collides with another.
"""

from __future__ import annotations

import json
import logging
import math
import re
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

from vareon_runtime.bus import EventBus

from .configuration import TelemetryFormat, TelemetrySettings

__all__ = ["MAX_METRIC_NAME", "DeviceStream", "TelemetryParser", "telemetry_topic"]

log = logging.getLogger("vareon.devices.telemetry")

MAX_METRIC_NAME = 255
"""Longest metric name kept (the ``telemetry.metric_name`` column's length)."""

# A decimal number as devices print them: 21, -0.5, .5, 1e-3, +3.
_NUMBER = r"[-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?"
_PAIR_DELIMITERS = " \t\r\n\f\v,;"


def telemetry_topic(device_id: str) -> str:
    """The bus topic a device's telemetry and log lines are published on."""
    return f"telemetry.device.{device_id}"


def _kv_pattern(separator: str) -> re.Pattern[str]:
    """The pattern of one ``key<separator>value[ /target]`` pair.

    Keys hold no space, comma or semicolon; a pair starts at the line's start or after one of
    them and its value ends at one or at the line's end, so ``T:21.3C`` is not read as 21.3. The
    separator is matched literally, so one made of delimiters (``" "``, ``", "``) still works.
    """
    delim = re.escape(_PAIR_DELIMITERS)
    sep = re.escape(separator)
    return re.compile(
        rf"(?:^|(?<=[{delim}]))([^{delim}]+?){sep}[ \t]*({_NUMBER})"
        rf"(?:[ \t]*/[ \t]*({_NUMBER}))?(?=$|[{delim}])"
    )


class TelemetryParser:
    """Read lines into samples as one device's telemetry settings say.

    Args:
        settings: the device's ``configuration.telemetry`` (already validated: a regex format
            has a compilable pattern with named groups).

    Attributes:
        malformed: lines (or values) that looked like telemetry but could not be read, since
            creation. ``parse`` never raises; this counter is how bad input shows.
    """

    __slots__ = ("_parse", "_pattern", "_prefix", "_separator", "malformed", "settings")

    def __init__(self, settings: TelemetrySettings) -> None:
        self.settings = settings
        self.malformed = 0
        self._prefix = settings.metric_prefix
        self._pattern: re.Pattern[str] | None = None
        fmt = settings.format
        parse: Callable[[str], dict[str, float]]
        if fmt is TelemetryFormat.JSON:
            parse = self._parse_json
        elif fmt is TelemetryFormat.KV:
            self._pattern = _kv_pattern(settings.separator)
            parse = self._parse_kv
        elif fmt is TelemetryFormat.REGEX:
            assert settings.pattern is not None, "TelemetrySettings requires a pattern for regex"
            self._pattern = re.compile(settings.pattern)
            parse = self._parse_regex
        else:
            parse = _parse_none
        self._parse = parse

    @property
    def enabled(self) -> bool:
        """Whether lines can give samples at all (the format is not ``none``)."""
        return self.settings.format is not TelemetryFormat.NONE

    def parse(self, line: str) -> dict[str, float]:
        """Return the samples of one line, ``{metric name: value}``; empty when it has none.

        Never raises: a line that cannot be read gives no samples and counts in
        :attr:`malformed`.
        """
        try:
            return self._parse(line)
        except Exception:  # a bug here must not take the device's connection down
            self.malformed += 1
            log.exception("telemetry parser failed on a line of %d characters", len(line))
            return {}

    # -- formats ------------------------------------------------------------------------------

    def _parse_json(self, line: str) -> dict[str, float]:
        text = line.strip()
        if not text.startswith("{"):
            return {}
        try:
            value = json.loads(text)
        except (ValueError, RecursionError):  # not JSON, an over-long integer, nested too deep
            self.malformed += 1
            return {}
        if not isinstance(value, dict):  # pragma: no cover - a "{" line decodes to an object
            self.malformed += 1
            return {}
        out: dict[str, float] = {}
        self._flatten(value, self._prefix, out)
        return out

    def _flatten(self, node: dict[str, Any] | list[Any], prefix: str, out: dict[str, float]) -> None:
        items = node.items() if isinstance(node, dict) else enumerate(node)
        for key, value in items:
            name = f"{prefix}{key}"
            kind = type(value)
            if kind is float:
                if math.isfinite(value):
                    self._keep(name, value, out)
            elif kind is int or kind is bool:
                try:
                    self._keep(name, float(value), out)
                except OverflowError:  # an integer beyond a double's range
                    self.malformed += 1
            elif kind is dict or kind is list:
                self._flatten(value, name + ".", out)

    def _keep(self, name: str, value: float, out: dict[str, float]) -> None:
        if len(name) > MAX_METRIC_NAME:
            self.malformed += 1
        else:
            out[name] = value

    def _parse_kv(self, line: str) -> dict[str, float]:
        assert self._pattern is not None
        out: dict[str, float] = {}
        prefix = self._prefix
        for key, value, target in self._pattern.findall(line):
            name = prefix + key
            if len(name) > MAX_METRIC_NAME - 7:  # room for ".target"
                self.malformed += 1
                continue
            number = float(value)
            if not math.isfinite(number):  # 1e999 reads as infinity
                self.malformed += 1
                continue
            out[name] = number
            if target:
                number = float(target)
                if math.isfinite(number):
                    out[name + ".target"] = number
                else:
                    self.malformed += 1
        return out

    def _parse_regex(self, line: str) -> dict[str, float]:
        assert self._pattern is not None
        match = self._pattern.search(line)
        if match is None:
            return {}
        out: dict[str, float] = {}
        prefix = self._prefix
        for group, text in match.groupdict().items():
            if text is None:  # an optional group that did not take part
                continue
            try:
                value = float(text)
            except ValueError:
                self.malformed += 1
                continue
            if math.isfinite(value):
                out[prefix + group] = value
            else:
                self.malformed += 1
        return out


def _parse_none(line: str) -> dict[str, float]:
    return {}


class DeviceStream:
    """Publish one device's received lines (with their samples) and sent commands on the bus.

    Neither method waits nor raises: publishing on the bus never blocks, and a line the parser
    cannot read is counted (:attr:`malformed`) and still published as a log line.

    Args:
        device_id: the device's id; events go to :func:`telemetry_topic` of it.
        settings: the device's telemetry settings.
        bus: the runtime's event bus.

    Attributes:
        lines_received: lines handed to :meth:`received` since creation.
        samples_parsed: samples published since creation.
        events_published: events published since creation (batches and sent commands).
    """

    __slots__ = (
        "_bus",
        "_parse",
        "_topic",
        "device_id",
        "events_published",
        "lines_received",
        "parser",
        "samples_parsed",
    )

    def __init__(self, device_id: str, settings: TelemetrySettings, bus: EventBus) -> None:
        self.device_id = device_id
        self.parser = TelemetryParser(settings)
        self._bus = bus
        self._topic = telemetry_topic(device_id)
        self._parse = self.parser.parse if self.parser.enabled else None
        self.lines_received = 0
        self.samples_parsed = 0
        self.events_published = 0

    @property
    def topic(self) -> str:
        """The bus topic this stream publishes on."""
        return self._topic

    @property
    def malformed(self) -> int:
        """Lines or values the parser could not read, since creation."""
        return self.parser.malformed

    def received(self, lines: Sequence[str], at: datetime) -> None:
        """Publish a batch of complete lines read from the device, with the samples they carry.

        Args:
            lines: the lines, without their terminators.
            at: when they were read (aware UTC, from :func:`vareon_runtime.clock.utcnow`).
        """
        if not lines:
            return
        samples: list[dict[str, Any]] = []
        parse = self._parse
        if parse is not None:
            append = samples.append
            for line in lines:
                for metric, value in parse(line).items():
                    append({"metric": metric, "value": value})
        self.lines_received += len(lines)
        self.samples_parsed += len(samples)
        self.events_published += 1
        self._bus.publish(
            self._topic,
            {"deviceId": self.device_id, "time": at, "samples": samples, "lines": list(lines)},
        )

    def sent(self, line: str, at: datetime) -> None:
        """Publish a command written to the device (its echo in the device's log).

        Args:
            line: the command as sent, without its terminator.
            at: when it was written (aware UTC).
        """
        self.events_published += 1
        self._bus.publish(self._topic, {"deviceId": self.device_id, "time": at, "sent": line})
