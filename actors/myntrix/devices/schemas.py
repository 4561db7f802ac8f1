"""Wire shapes of Myntrix devices (seeds 001, 002, 003: camelCase on the wire).

Every model reads both spellings (``connectionString`` and ``connection_string``) and the web
front writes the camelCase aliases. A device's ``connectionString`` goes out with its password
masked (``mqtt://user:***@broker/t``): the row keeps it in clear because the runtime needs it to
connect, and nothing else ever shows it.
"""

from __future__ import annotations

import enum

from pydantic import ConfigDict, Field, field_validator

from actors.kit.wire import CamelModel, Name, Timestamp
from drivers.link import mask_connection_string
from .configuration import DeviceConfiguration

__all__ = [
    "MAX_COMMAND",
    "CommandReply",
    "CommandRequest",
    "Device",
    "DeviceCreate",
    "DeviceDesiredState",
    "DeviceStatus",
    "DeviceStatusReport",
    "DeviceUpdate",
]

MAX_COMMAND = 4096
"""Characters of one command, at most."""

_MAX_CONNECTION_STRING = 2048


class DeviceStatus(str, enum.Enum):
    """Where the device's link is. ``connected`` if and only if the runtime holds an open link."""

    DISCONNECTED = "disconnected"  # no link (never connected, disconnected, or waiting to reconnect)
    CONNECTING = "connecting"  # opening the link, and asking the device who it is
    CONNECTED = "connected"
    ERROR = "error"  # the connection string cannot work as it is (lastError says why); no retries


class DeviceDesiredState(str, enum.Enum):
    """What the user asked for; brought back when the runtime starts."""

    CONNECTED = "connected"
    DISCONNECTED = "disconnected"


def _connection_string(value: str) -> str:
    if not value.strip():
        raise ValueError("must not be empty: give a device path (/dev/ttyUSB0) or a URL (tcp://host:port)")
    if any(character in value for character in "\x00\r\n"):
        raise ValueError("must not contain NUL or line breaks")
    return value


class DeviceCreate(CamelModel):
    """``POST /api/myntrix/devices``."""

    name: Name
    type: str = Field("generic", min_length=1, max_length=64, description="What it is: printer, instrument, sensor...")
    connection_string: str = Field(
        max_length=_MAX_CONNECTION_STRING,
        description="A device path with options (/dev/ttyUSB0?baudrate=115200), socket://, rfc2217://, loop://, tcp://host:port or mqtt://broker:port/topic.",
        examples=["/dev/ttyUSB0?baudrate=115200", "tcp://127.0.0.1:5025"],
    )
    configuration: DeviceConfiguration = Field(default_factory=DeviceConfiguration)

    _checked = field_validator("connection_string")(_connection_string)


class DeviceUpdate(CamelModel):
    """``PUT /api/myntrix/devices/{id}``: the fields given are changed. A new connection string or
    configuration reopens the link (if the device is to be connected)."""

    name: Name | None = None
    type: str | None = Field(None, min_length=1, max_length=64)
    connection_string: str | None = Field(None, max_length=_MAX_CONNECTION_STRING)
    configuration: DeviceConfiguration | None = None

    @field_validator("connection_string")
    @classmethod
    def _checked(cls, value: str | None) -> str | None:
        return None if value is None else _connection_string(value)


class Device(CamelModel):
    """One device as the API shows it."""

    model_config = ConfigDict(frozen=True)

    id: str
    name: str
    type: str
    connection_string: str = Field(description="As configured, with any password shown as ***.")
    status: DeviceStatus
    last_seen: Timestamp | None = Field(description="When the device last sent anything.")

    # The row keeps the password in clear (the runtime needs it to connect); the wire never does.
    _masked = field_validator("connection_string")(mask_connection_string)
    firmware_version: str | None = Field(description="From the reply to the configuration's identifyCommand.")
    configuration: DeviceConfiguration
    desired_state: DeviceDesiredState
    last_error: str | None = Field(description="Why the link dropped or could not open; null once connected.")
    created_at: Timestamp
    updated_at: Timestamp


class DeviceStatusReport(CamelModel):
    """``GET /api/myntrix/hardware/{id}/status`` (seed 002's legacy name): the live part of a device."""

    model_config = ConfigDict(frozen=True)

    id: str
    status: DeviceStatus
    connected: bool
    last_seen: Timestamp | None
    firmware_version: str | None
    desired_state: DeviceDesiredState
    last_error: str | None


class CommandRequest(CamelModel):
    """``POST /api/myntrix/devices/{id}/command``."""

    command: str = Field(
        min_length=1,
        max_length=MAX_COMMAND,
        description="One command, without its line terminator (the configuration's lineTerminator is appended).",
        examples=["M115", "*IDN?"],
    )
    timeout: float | None = Field(
        None, gt=0, le=3600, description="Seconds for the reply; default the configuration's commandTimeout, else the runtime's."
    )

    @field_validator("command")
    @classmethod
    def _one_line(cls, value: str) -> str:
        if any(character in value for character in "\x00\r\n"):
            raise ValueError("must be one line: no NUL, carriage return or newline (send one command per request)")
        return value


class CommandReply(CamelModel):
    """What the device answered. ``ok`` is false when a line matched the configuration's
    ``errorPattern``: the device did answer, with an error."""

    model_config = ConfigDict(frozen=True)

    command: str
    reply: list[str] = Field(description="The reply lines, the terminating one (ok) included.")
    ok: bool
    duration_ms: float = Field(description="From the command written to the reply complete, milliseconds.")
