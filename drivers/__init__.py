"""drivers layer of Vareon Runtime (see docs/architecture.md): I/O behind small interfaces.

``drivers.process``: OS processes in their own process group, stopped group-wide, reaped by pid
and creation time. ``drivers.metrics``: the host's CPU, memory, disk and load through psutil
behind :class:`SystemProbe`, with a fallback that never fails. ``drivers.link``: byte streams to
devices behind the :class:`Link` Protocol, a driver per connection-string scheme in :data:`LINKS`
(``drivers.serial`` for device paths and pyserial's URLs, ``drivers.tcp``, ``drivers.mqtt``; each
imports its foreign library only when first used). Errors are in ``drivers.errors`` (its docstring draws the hierarchy).
"""

from drivers.errors import BadWorkingDirectoryError as BadWorkingDirectoryError
from drivers.errors import DriverError as DriverError
from drivers.errors import ExecutableNotFoundError as ExecutableNotFoundError
from drivers.errors import LinkClosedError as LinkClosedError
from drivers.errors import LinkConfigError as LinkConfigError
from drivers.errors import LinkError as LinkError
from drivers.errors import LinkUnavailableError as LinkUnavailableError
from drivers.errors import ProcessBrokenError as ProcessBrokenError
from drivers.errors import ProcessConfigError as ProcessConfigError
from drivers.errors import ProcessError as ProcessError
from drivers.errors import UnknownSchemeError as UnknownSchemeError
from drivers.link import LINKS as LINKS
from drivers.link import ConnectionTarget as ConnectionTarget
from drivers.link import Link as Link
from drivers.link import LinkDriver as LinkDriver
from drivers.link import LinkRegistry as LinkRegistry
from drivers.link import mask_connection_string as mask_connection_string
from drivers.link import open_link as open_link
from drivers.link import parse_connection_string as parse_connection_string
from drivers.metrics import DiskUsage as DiskUsage
from drivers.metrics import HostSample as HostSample
from drivers.metrics import MemoryUsage as MemoryUsage
from drivers.metrics import PsutilProbe as PsutilProbe
from drivers.metrics import SystemProbe as SystemProbe
from drivers.metrics import read_system as read_system
from drivers.mqtt import MqttDriver as MqttDriver
from drivers.mqtt import MqttLink as MqttLink
from drivers.mqtt import MqttSettings as MqttSettings
from drivers.process import LineReader as LineReader
from drivers.process import OSProcess as OSProcess
from drivers.process import describe_exit as describe_exit
from drivers.process import reap_orphan_group as reap_orphan_group
from drivers.process import validate_command as validate_command
from drivers.serial import SerialDriver as SerialDriver
from drivers.serial import SerialLink as SerialLink
from drivers.serial import SerialSettings as SerialSettings
from drivers.serial import SerialUrlLink as SerialUrlLink
from drivers.tcp import TcpDriver as TcpDriver
from drivers.tcp import TcpLink as TcpLink

__all__ = [
    "LINKS",
    "BadWorkingDirectoryError",
    "ConnectionTarget",
    "DiskUsage",
    "DriverError",
    "ExecutableNotFoundError",
    "HostSample",
    "LineReader",
    "Link",
    "LinkClosedError",
    "LinkConfigError",
    "LinkDriver",
    "LinkError",
    "LinkRegistry",
    "LinkUnavailableError",
    "MemoryUsage",
    "MqttDriver",
    "MqttLink",
    "MqttSettings",
    "OSProcess",
    "ProcessBrokenError",
    "ProcessConfigError",
    "ProcessError",
    "PsutilProbe",
    "SerialDriver",
    "SerialLink",
    "SerialSettings",
    "SerialUrlLink",
    "SystemProbe",
    "TcpDriver",
    "TcpLink",
    "UnknownSchemeError",
    "describe_exit",
    "mask_connection_string",
    "open_link",
    "parse_connection_string",
    "read_system",
    "reap_orphan_group",
    "validate_command",
]
