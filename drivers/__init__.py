"""drivers layer of Vareon Runtime (see docs/architecture.md): I/O behind small interfaces.

``drivers.process``: OS processes in their own process group, stopped group-wide, reaped by pid
and creation time. ``drivers.metrics``: the host's CPU, memory, disk and load through psutil
behind :class:`SystemProbe`, with a fallback that never fails. Errors are in ``drivers.errors`` (its docstring draws the hierarchy).
"""

from drivers.errors import BadWorkingDirectoryError as BadWorkingDirectoryError
from drivers.errors import DriverError as DriverError
from drivers.errors import ExecutableNotFoundError as ExecutableNotFoundError
from drivers.errors import ProcessBrokenError as ProcessBrokenError
from drivers.errors import ProcessConfigError as ProcessConfigError
from drivers.errors import ProcessError as ProcessError
from drivers.metrics import DiskUsage as DiskUsage
from drivers.metrics import HostSample as HostSample
from drivers.metrics import MemoryUsage as MemoryUsage
from drivers.metrics import PsutilProbe as PsutilProbe
from drivers.metrics import SystemProbe as SystemProbe
from drivers.metrics import read_system as read_system
from drivers.process import LineReader as LineReader
from drivers.process import OSProcess as OSProcess
from drivers.process import describe_exit as describe_exit
from drivers.process import reap_orphan_group as reap_orphan_group
from drivers.process import validate_command as validate_command

__all__ = [
    "BadWorkingDirectoryError",
    "DiskUsage",
    "DriverError",
    "ExecutableNotFoundError",
    "HostSample",
    "LineReader",
    "MemoryUsage",
    "OSProcess",
    "ProcessBrokenError",
    "ProcessConfigError",
    "ProcessError",
    "PsutilProbe",
    "SystemProbe",
    "describe_exit",
    "read_system",
    "reap_orphan_group",
    "validate_command",
]
