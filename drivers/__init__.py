"""drivers layer of Vareon Runtime (see docs/architecture.md): I/O behind small interfaces.

``drivers.process``: the process runner, OS processes in their own process group, stopped
group-wide with what they left outside it (``drivers.subreaper``, ``drivers.orphans``: found by
pid and creation time, or by the owner mark in their environment, ``drivers.identity``);
``drivers.lines`` reads their output, ``drivers.commands`` checks an argv list.
``drivers.metrics``: the host's CPU, memory, disk and load through psutil behind
:class:`SystemProbe`, with a fallback that never fails. ``drivers.link``: byte streams to devices
behind the :class:`Link` Protocol, a driver per connection-string scheme in :data:`LINKS`
(``drivers.serial`` for device paths and pyserial's URLs, ``drivers.tcp``, ``drivers.mqtt``).
``drivers.outbound``: where the outbound calls users aim may go (:class:`OutboundGuard`, checked
after DNS resolution) and an httpx transport pinned to the address checked.
Errors are in ``drivers.errors`` (its docstring draws the hierarchy).

The face is lazy but for the errors and the link registry: any other name is imported from its
module when first asked for, so importing one driver (the process runner for agents) loads
neither the others nor their libraries; a link driver's module, pyserial and the MQTT client load
only when a link of theirs is first checked or opened.
"""

from __future__ import annotations

import typing

# The errors and the link registry are light and wanted by every user of a driver: imported now.
from drivers.errors import BadWorkingDirectoryError as BadWorkingDirectoryError
from drivers.errors import DriverError as DriverError
from drivers.errors import ExecutableNotFoundError as ExecutableNotFoundError
from drivers.errors import LinkBrokenError as LinkBrokenError
from drivers.errors import LinkClosedError as LinkClosedError
from drivers.errors import LinkConfigError as LinkConfigError
from drivers.errors import LinkError as LinkError
from drivers.errors import LinkUnavailableError as LinkUnavailableError
from drivers.errors import OutboundError as OutboundError
from drivers.errors import OutboundRefusedError as OutboundRefusedError
from drivers.errors import OutboundUnresolvedError as OutboundUnresolvedError
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

from vareon_runtime.lazy import lazy_face as _lazy_face

from . import errors, link

if typing.TYPE_CHECKING:
    from drivers.commands import describe_exit as describe_exit
    from drivers.commands import validate_command as validate_command
    from drivers.identity import OWNER_VARIABLE as OWNER_VARIABLE
    from drivers.lines import LineReader as LineReader
    from drivers.metrics import DiskUsage as DiskUsage
    from drivers.metrics import HostSample as HostSample
    from drivers.metrics import MemoryUsage as MemoryUsage
    from drivers.metrics import PsutilProbe as PsutilProbe
    from drivers.metrics import SystemProbe as SystemProbe
    from drivers.metrics import read_system as read_system
    from drivers.mqtt import MqttDriver as MqttDriver
    from drivers.mqtt import MqttLink as MqttLink
    from drivers.mqtt import MqttSettings as MqttSettings
    from drivers.orphans import reap_orphan_group as reap_orphan_group
    from drivers.outbound import OutboundGuard as OutboundGuard
    from drivers.outbound import internal_kind as internal_kind
    from drivers.process import OSProcess as OSProcess
    from drivers.serial import SerialDriver as SerialDriver
    from drivers.serial import SerialLink as SerialLink
    from drivers.serial import SerialSettings as SerialSettings
    from drivers.serial import SerialUrlLink as SerialUrlLink
    from drivers.subreaper import enable_subreaper as enable_subreaper
    from drivers.subreaper import watch_adopted as watch_adopted
    from drivers.tcp import TcpDriver as TcpDriver
    from drivers.tcp import TcpLink as TcpLink

_EXPORTS = {
    "drivers.commands": ("describe_exit", "validate_command"),
    "drivers.identity": ("OWNER_VARIABLE",),
    "drivers.lines": ("LineReader",),
    "drivers.metrics": ("DiskUsage", "HostSample", "MemoryUsage", "PsutilProbe", "SystemProbe", "read_system"),
    "drivers.mqtt": ("MqttDriver", "MqttLink", "MqttSettings"),
    "drivers.orphans": ("reap_orphan_group",),
    "drivers.outbound": ("OutboundGuard", "internal_kind"),
    "drivers.process": ("OSProcess",),
    "drivers.serial": ("SerialDriver", "SerialLink", "SerialSettings", "SerialUrlLink"),
    "drivers.subreaper": ("enable_subreaper", "watch_adopted"),
    "drivers.tcp": ("TcpDriver", "TcpLink"),
}
"""The lazily imported public names by the module they live in (the imports above, for type
checkers, say the same; a test holds them together)."""

_HOMES = {name: module for module, names in _EXPORTS.items() for name in names}

__all__ = sorted([*_HOMES, *errors.__all__, *link.__all__])


__getattr__, __dir__ = _lazy_face(__name__, _HOMES, globals())
