"""A device's ``configuration``: how to talk to it (framing, identify), read it (telemetry),
upload to it, and where it stands in the 3D scene.

The seeds leave ``configuration`` free-form; this is the shape the runtime understands, with
camelCase on the wire like the rest of Myntrix. Unknown keys are refused (a misspelled
``replyTerminator`` would otherwise silently do nothing). Every key has a default, so ``{}``
is a valid configuration: newline-terminated lines, replies ending at ``ok``, no telemetry.

Examples::

    Marlin printer  {"identifyCommand": "M115", "firmwarePattern": "FIRMWARE_NAME:(?P<version>[^ ]+)",
                     "telemetry": {"format": "regex",
                                   "pattern": "T:(?P<hotend>[-\\\\d.]+) /[-\\\\d.]+ B:(?P<bed>[-\\\\d.]+)"},
                     "upload": {"mode": "gcode"}}
    SCPI instrument {"identifyCommand": "*IDN?", "replyTerminator": null}
    JSON sensor     {"telemetry": {"format": "json"}}
"""

from __future__ import annotations

import enum
import re
from typing import Any

from pydantic import ConfigDict, Field, field_validator, model_validator

from actors.kit.wire import CamelModel

__all__ = [
    "DeviceConfiguration",
    "Position",
    "TelemetryFormat",
    "TelemetrySettings",
    "UploadMode",
    "UploadSettings",
]

_TERMINATORS = {"\n", "\r\n", "\r"}


def _compile(value: str | None, *, what: str) -> str | None:
    if value is None:
        return None
    try:
        re.compile(value)
    except re.error as exc:
        raise ValueError(f"{what} is not a valid regular expression: {exc}") from None
    return value


class TelemetryFormat(str, enum.Enum):
    """How a received line becomes samples."""

    NONE = "none"  # no telemetry: lines go to the stream as log events only
    JSON = "json"  # a JSON object per line; every numeric member is a sample
    KV = "kv"  # key=value pairs (separator configurable, e.g. ":" for Marlin's T:21.5)
    REGEX = "regex"  # a regular expression with named groups; each numeric group is a sample


class TelemetrySettings(CamelModel):
    """Which received lines are telemetry, and how they are read."""

    model_config = ConfigDict(frozen=True)

    format: TelemetryFormat = Field(TelemetryFormat.NONE, description="How a line becomes samples.")
    pattern: str | None = Field(
        None, max_length=2048, description="For regex: named groups become metric names (needs at least one)."
    )
    separator: str = Field("=", min_length=1, max_length=4, description="For kv: between a key and its value.")
    metric_prefix: str = Field(
        "", max_length=64, description="Put before every metric name (e.g. 'printer.')."
    )

    @field_validator("pattern")
    @classmethod
    def _regex(cls, value: str | None) -> str | None:
        return _compile(value, what="pattern")

    @model_validator(mode="after")
    def _pattern_for_regex(self) -> TelemetrySettings:
        if self.format is TelemetryFormat.REGEX:
            if not self.pattern:
                raise ValueError("a regex telemetry format needs a pattern with named groups")
            if not re.compile(self.pattern).groupindex:
                raise ValueError("the telemetry pattern needs at least one named group, e.g. (?P<temp>[\\d.]+)")
        return self


class UploadMode(str, enum.Enum):
    """How an uploaded file goes to the device."""

    GCODE = "gcode"  # line by line, comments stripped, each line waiting for the reply terminator
    CHUNKS = "chunks"  # raw bytes in chunks (firmware images, scripts)


class UploadSettings(CamelModel):
    """How uploads reach the device."""

    model_config = ConfigDict(frozen=True)

    mode: UploadMode = Field(UploadMode.CHUNKS, description="gcode: line by line with flow control; chunks: raw bytes.")
    chunk_size: int = Field(4096, ge=1, le=1024 * 1024, description="Bytes per chunk in chunks mode.")
    line_numbers: bool = Field(
        False, description="gcode: send N<line> ... *<checksum> (Marlin's checked mode) so Resend: can name a line."
    )


class Position(CamelModel):
    """Where the device stands in the 3D scene."""

    model_config = ConfigDict(frozen=True)

    x: float = 0.0
    y: float = 0.0
    z: float = 0.0


class DeviceConfiguration(CamelModel):
    """How to talk to one device. ``{}`` is valid: every key has a default."""

    model_config = ConfigDict(frozen=True)

    line_terminator: str = Field("\n", description="Appended to every command sent: \\n, \\r\\n or \\r.")
    reply_terminator: str | None = Field(
        "ok",
        max_length=256,
        description=(
            "A reply ends at the first line that starts with this (Marlin's ok). null: the reply is"
            " the first line received (SCPI instruments)."
        ),
    )
    error_pattern: str | None = Field(
        "^(Error|error|!!)",
        max_length=256,
        description="A reply line matching this regular expression ends the reply as a device error.",
    )
    command_timeout: float | None = Field(
        None, gt=0, le=3600, description="Seconds the device has to finish a reply; default from config."
    )
    identify_command: str | None = Field(
        None, max_length=256, description="Sent on connect; its reply gives firmwareVersion (M115, *IDN?)."
    )
    firmware_pattern: str | None = Field(
        None,
        max_length=512,
        description="Regular expression over the identify reply; the group 'version' (else the whole match) is the firmware version.",
    )
    encoding: str = Field("utf-8", description="Text encoding of lines; undecodable bytes are replaced.")
    reconnect: bool = Field(True, description="Reconnect with backoff when the link drops while connected is wanted.")
    telemetry: TelemetrySettings = Field(default_factory=TelemetrySettings)
    upload: UploadSettings = Field(default_factory=UploadSettings)
    position: Position | None = Field(None, description="Place in the 3D scene; default a deterministic layout.")

    @field_validator("line_terminator")
    @classmethod
    def _terminator(cls, value: str) -> str:
        if value not in _TERMINATORS:
            raise ValueError("must be one of \\n, \\r\\n, \\r")
        return value

    @field_validator("error_pattern", "firmware_pattern")
    @classmethod
    def _regex(cls, value: str | None) -> str | None:
        return _compile(value, what="the pattern")

    @field_validator("encoding")
    @classmethod
    def _encoding(cls, value: str) -> str:
        import codecs

        try:
            codecs.lookup(value)
        except LookupError:
            raise ValueError(f"{value!r} is not a known text encoding") from None
        return value

    def wire(self) -> dict[str, Any]:
        """The configuration as the API returns it (camelCase)."""
        return self.model_dump(mode="json", by_alias=True)
