"""Myntrix devices: serial, TCP and MQTT devices, each a supervised actor owning its link.

The web front reaches the domain through its face, :class:`Devices`
(``registry.face(Devices)``, provided by :mod:`actors.myntrix.devices.component`). A device's actor (:class:`DeviceActor`) keeps its link
open while it is to be connected, reconnecting with backoff; its lines go to the bus as
telemetry (:class:`DeviceStream`, recorded by :class:`TelemetryRecorder`), its commands run one at
a time, and uploads go through :func:`send_gcode` / :func:`send_chunks` as jobs.

``actors.myntrix.devices.simulator`` (simulated printer and instrument for tests and demos) is a
tool run with ``python -m``, deliberately not imported here.
"""

from actors.myntrix.devices.commands import CommandTicket as CommandTicket
from actors.myntrix.devices.component import DEVICES_NAME as DEVICES_NAME
from actors.myntrix.devices.component import DeviceModule as DeviceModule
from actors.myntrix.devices.component import component as component
from actors.myntrix.devices.configuration import DeviceConfiguration as DeviceConfiguration
from actors.myntrix.devices.configuration import Position as Position
from actors.myntrix.devices.configuration import TelemetryFormat as TelemetryFormat
from actors.myntrix.devices.configuration import TelemetrySettings as TelemetrySettings
from actors.myntrix.devices.configuration import UploadMode as UploadMode
from actors.myntrix.devices.configuration import UploadSettings as UploadSettings
from actors.myntrix.devices.actor import DeviceActor as DeviceActor
from actors.myntrix.devices.actor import DeviceServices as DeviceServices
from actors.myntrix.devices.actor import status_topic as status_topic
from actors.myntrix.devices.service import UPLOAD_JOB_TYPE as UPLOAD_JOB_TYPE
from actors.myntrix.devices.service import Devices as Devices
from actors.myntrix.devices.firmware import firmware_version as firmware_version
from actors.myntrix.devices.messages import CancelUpload as CancelUpload
from actors.myntrix.devices.messages import ConnectDevice as ConnectDevice
from actors.myntrix.devices.messages import DisconnectDevice as DisconnectDevice
from actors.myntrix.devices.messages import GetDeviceState as GetDeviceState
from actors.myntrix.devices.messages import ReleaseDevice as ReleaseDevice
from actors.myntrix.devices.messages import RenameDevice as RenameDevice
from actors.myntrix.devices.messages import SendCommand as SendCommand
from actors.myntrix.devices.messages import UploadFile as UploadFile
from actors.myntrix.devices.models import DeviceRecord as DeviceRecord
from actors.myntrix.devices.lines import LineRouter as LineRouter
from actors.myntrix.devices.lines import LineSplitter as LineSplitter
from actors.myntrix.devices.recorder import TelemetryRecorder as TelemetryRecorder
from actors.myntrix.devices.schemas import CommandReply as CommandReply
from actors.myntrix.devices.schemas import CommandRequest as CommandRequest
from actors.myntrix.devices.schemas import Device as Device
from actors.myntrix.devices.schemas import DeviceCreate as DeviceCreate
from actors.myntrix.devices.schemas import DeviceDesiredState as DeviceDesiredState
from actors.myntrix.devices.schemas import DeviceStatus as DeviceStatus
from actors.myntrix.devices.schemas import DeviceStatusReport as DeviceStatusReport
from actors.myntrix.devices.schemas import DeviceUpdate as DeviceUpdate
from actors.myntrix.devices.seen import SeenBoard as SeenBoard
from actors.myntrix.devices.settings import DeviceSettings as DeviceSettings
from actors.myntrix.devices.telemetry import DeviceStream as DeviceStream
from actors.myntrix.devices.telemetry import TelemetryParser as TelemetryParser
from actors.myntrix.devices.telemetry import telemetry_topic as telemetry_topic
from actors.myntrix.devices.upload import LineChannel as LineChannel
from actors.myntrix.devices.upload import UploadError as UploadError
from actors.myntrix.devices.upload import UploadResult as UploadResult
from actors.myntrix.devices.upload import UploadTimeoutError as UploadTimeoutError
from actors.myntrix.devices.upload import count_gcode_lines as count_gcode_lines
from actors.myntrix.devices.upload import send_chunks as send_chunks
from actors.myntrix.devices.upload import send_gcode as send_gcode

__all__ = [
    "DEVICES_NAME",
    "UPLOAD_JOB_TYPE",
    "CancelUpload",
    "CommandReply",
    "CommandRequest",
    "CommandTicket",
    "ConnectDevice",
    "Device",
    "DeviceActor",
    "DeviceConfiguration",
    "DeviceCreate",
    "DeviceDesiredState",
    "DeviceModule",
    "DeviceRecord",
    "DeviceServices",
    "DeviceSettings",
    "DeviceStatus",
    "DeviceStatusReport",
    "DeviceStream",
    "DeviceUpdate",
    "Devices",
    "DisconnectDevice",
    "GetDeviceState",
    "LineChannel",
    "LineRouter",
    "LineSplitter",
    "Position",
    "ReleaseDevice",
    "RenameDevice",
    "SeenBoard",
    "SendCommand",
    "TelemetryFormat",
    "TelemetryParser",
    "TelemetryRecorder",
    "TelemetrySettings",
    "UploadError",
    "UploadFile",
    "UploadMode",
    "UploadResult",
    "UploadSettings",
    "UploadTimeoutError",
    "count_gcode_lines",
    "component",
    "firmware_version",
    "send_chunks",
    "send_gcode",
    "status_topic",
    "telemetry_topic",
]
