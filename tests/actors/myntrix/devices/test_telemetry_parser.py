"""Telemetry parsing per device configuration, and the stream that publishes it on the bus."""

from __future__ import annotations

import json
from datetime import datetime, timezone

import pytest
import trio
from pydantic import ValidationError

from actors.myntrix.devices.configuration import DeviceConfiguration, TelemetrySettings
from actors.myntrix.devices.telemetry import (
    MAX_METRIC_NAME,
    DeviceStream,
    TelemetryParser,
    telemetry_topic,
)
from vareon_runtime.bus import Event, EventBus

AT = datetime(2025, 3, 1, 12, 0, 0, tzinfo=timezone.utc)
MARLIN_REPORT = "ok T:21.3 /0.0 B:20.1 /60.0 @:0 B@:127"


def parser(**settings: object) -> TelemetryParser:
    return TelemetryParser(TelemetrySettings.model_validate(settings))


# -- kv ---------------------------------------------------------------------------------------


def test_kv_reads_marlin_temperatures_with_targets() -> None:
    samples = parser(format="kv", separator=":").parse(MARLIN_REPORT)
    assert samples == {"T": 21.3, "T.target": 0.0, "B": 20.1, "B.target": 60.0, "@": 0.0, "B@": 127.0}


def test_kv_pairs_split_by_spaces_commas_and_semicolons() -> None:
    samples = parser(format="kv").parse("temp=21.5,hum=40;pressure=1013.2 volts=-1e-3 count=+7")
    assert samples == {"temp": 21.5, "hum": 40.0, "pressure": 1013.2, "volts": -0.001, "count": 7.0}


def test_kv_skips_values_that_are_not_numbers() -> None:
    p = parser(format="kv")
    assert p.parse("state=idle temp=21.5C rpm=1200 mode= x=1.2.3") == {"rpm": 1200.0}
    assert p.parse("ok") == {}
    assert p.parse("") == {}
    assert p.malformed == 0  # a line without pairs is a log line, not a bad one


def test_kv_separator_made_of_delimiters() -> None:
    assert parser(format="kv", separator=" ").parse("T 21.3 B 20 ok") == {"T": 21.3, "B": 20.0}
    assert parser(format="kv", separator=", ").parse("a, 1 b, 2") == {"a": 1.0, "b": 2.0}


def test_kv_prefix_and_infinite_values() -> None:
    p = parser(format="kv", metricPrefix="printer.")
    assert p.parse("t=1 huge=1e999") == {"printer.t": 1.0}
    assert p.malformed == 1


def test_kv_overlong_names_are_dropped_and_counted() -> None:
    p = parser(format="kv")
    assert p.parse(f"{'k' * MAX_METRIC_NAME}=1 ok=2") == {"ok": 2.0}
    assert p.malformed == 1


# -- json -------------------------------------------------------------------------------------


def test_json_flattens_numeric_leaves() -> None:
    line = json.dumps(
        {"seq": 3, "env": {"t": 21.5, "deep": {"x": -1}}, "on": True, "off": False,
         "name": "probe", "none": None, "list": [1, {"y": 2}]}
    )
    assert parser(format="json", metricPrefix="s.").parse(line) == {
        "s.seq": 3.0,
        "s.env.t": 21.5,
        "s.env.deep.x": -1.0,
        "s.on": 1.0,
        "s.off": 0.0,
        "s.list.0": 1.0,
        "s.list.1.y": 2.0,
    }


def test_json_lines_that_are_not_objects() -> None:
    p = parser(format="json")
    assert p.parse("ok") == {}
    assert p.parse("[1, 2]") == {}
    assert p.parse("  ") == {}
    assert p.malformed == 0
    assert p.parse('{"t": 21.5') == {}
    assert p.parse('{"a": ' * 100_000) == {}  # nested beyond the decoder's recursion limit
    assert p.parse('{"n": ' + "9" * 400 + "}") == {}  # an integer beyond a double
    assert p.malformed == 3


def test_json_non_finite_numbers_are_not_samples() -> None:
    assert parser(format="json").parse('{"a": NaN, "b": Infinity, "c": 1}') == {"c": 1.0}


# -- regex ------------------------------------------------------------------------------------


def test_regex_named_groups_become_metrics() -> None:
    marlin = DeviceConfiguration.model_validate(
        {"telemetry": {"format": "regex",
                       "pattern": r"T:(?P<hotend>[-\d.]+) /[-\d.]+ B:(?P<bed>[-\d.]+)(?: /(?P<bed_target>[-\d.]+))?"}}
    )
    p = TelemetryParser(marlin.telemetry)
    assert p.parse(MARLIN_REPORT) == {"hotend": 21.3, "bed": 20.1, "bed_target": 60.0}
    assert p.parse("ok T:21.3 /0.0 B:20.1") == {"hotend": 21.3, "bed": 20.1}  # optional group absent
    assert p.parse("echo:busy") == {}
    assert p.malformed == 0


def test_regex_group_that_is_not_a_number_counts_as_malformed() -> None:
    p = parser(format="regex", pattern=r"v=(?P<v>\S+)")
    assert p.parse("v=1.5") == {"v": 1.5}
    assert p.parse("v=abc") == {}
    assert p.parse("v=inf") == {}
    assert p.malformed == 2


def test_regex_pattern_is_checked_when_the_configuration_is() -> None:
    with pytest.raises(ValidationError, match="not a valid regular expression"):
        TelemetrySettings.model_validate({"format": "regex", "pattern": "(?P<x>"})
    with pytest.raises(ValidationError, match="at least one named group"):
        TelemetrySettings.model_validate({"format": "regex", "pattern": r"\d+"})


def test_none_format_reads_nothing() -> None:
    p = parser()
    assert not p.enabled
    assert p.parse("t=1") == {}


# -- the stream -------------------------------------------------------------------------------


def drain(subscription: object) -> list[Event]:
    events = []
    while True:
        try:
            item = subscription.receive_nowait()  # type: ignore[attr-defined]
        except trio.WouldBlock:
            return events
        assert isinstance(item, Event)
        events.append(item)


async def test_stream_publishes_one_event_per_batch() -> None:
    bus = EventBus()
    stream = DeviceStream("dev-1", TelemetrySettings.model_validate({"format": "kv", "separator": ":"}), bus)
    with bus.subscribe(telemetry_topic("dev-1")) as subscription:
        stream.received([MARLIN_REPORT, "echo:busy processing", "ok"], AT)
        stream.received([], AT)  # nothing read: nothing published
        stream.sent("M105", AT)
        events = drain(subscription)
    assert [event.topic for event in events] == ["telemetry.device.dev-1"] * 2
    batch, echo = events[0].data, events[1].data
    assert batch["deviceId"] == "dev-1" and batch["time"] == AT
    assert batch["lines"] == [MARLIN_REPORT, "echo:busy processing", "ok"]
    assert batch["samples"][:2] == [{"metric": "T", "value": 21.3}, {"metric": "T.target", "value": 0.0}]
    assert len(batch["samples"]) == 6
    assert echo == {"deviceId": "dev-1", "time": AT, "sent": "M105"}
    assert (stream.lines_received, stream.samples_parsed, stream.events_published) == (3, 6, 2)


async def test_stream_counts_bad_lines_and_still_logs_them() -> None:
    bus = EventBus()
    stream = DeviceStream("d", TelemetrySettings.model_validate({"format": "json"}), bus)
    with bus.subscribe("telemetry.*") as subscription:
        stream.received(['{"t": 1}', '{"broken', "\udcff not utf-8 \x00"], AT)
        (event,) = drain(subscription)
    assert event.data["samples"] == [{"metric": "t", "value": 1.0}]
    assert len(event.data["lines"]) == 3
    assert stream.malformed == 1


async def test_stream_without_telemetry_publishes_log_lines_only() -> None:
    bus = EventBus()
    stream = DeviceStream("d", TelemetrySettings(), bus)
    with bus.subscribe("telemetry.device.d") as subscription:
        stream.received(["t=1"], AT)
        (event,) = drain(subscription)
    assert event.data["samples"] == [] and event.data["lines"] == ["t=1"]


async def test_stream_never_blocks_on_a_full_subscriber() -> None:
    bus = EventBus()
    stream = DeviceStream("d", TelemetrySettings.model_validate({"format": "kv"}), bus)
    with bus.subscribe("telemetry.*", queue_size=2) as subscription:
        for n in range(10):
            stream.received([f"n={n}"], AT)
        assert subscription.dropped_total == 8
    assert stream.samples_parsed == 10
