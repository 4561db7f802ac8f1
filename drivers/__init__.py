"""drivers layer of Vareon Runtime (see docs/architecture.md): I/O behind small interfaces.

``drivers.process``: OS processes in their own process group, stopped group-wide, reaped by pid
and creation time. Errors are in ``drivers.errors`` (its docstring draws the hierarchy).
"""

from drivers.errors import BadWorkingDirectoryError as BadWorkingDirectoryError
from drivers.errors import DriverError as DriverError
from drivers.errors import ExecutableNotFoundError as ExecutableNotFoundError
from drivers.errors import ProcessBrokenError as ProcessBrokenError
from drivers.errors import ProcessConfigError as ProcessConfigError
from drivers.errors import ProcessError as ProcessError
from drivers.process import LineReader as LineReader
from drivers.process import OSProcess as OSProcess
from drivers.process import describe_exit as describe_exit
from drivers.process import reap_orphan_group as reap_orphan_group
from drivers.process import validate_command as validate_command

__all__ = [
    "BadWorkingDirectoryError",
    "DriverError",
    "ExecutableNotFoundError",
    "LineReader",
    "OSProcess",
    "ProcessBrokenError",
    "ProcessConfigError",
    "ProcessError",
    "describe_exit",
    "reap_orphan_group",
    "validate_command",
]
