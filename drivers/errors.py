"""Errors raised by the drivers.

The hierarchy, named by whose fault it was::

    VareonError                          (vareon_runtime.errors)
    └── DriverError                      base of every driver error
        └── ProcessError                 an OS process could not be run or controlled
            ├── ProcessConfigError       the command cannot run as configured (the user's fault)
            │   ├── ExecutableNotFoundError   no such executable, or it is not executable
            │   └── BadWorkingDirectoryError  the working directory is missing or not a directory
            └── ProcessBrokenError       the operating system failed us (fork, exec, signals)

Foreign errors (``OSError``, ``psutil.Error``) are translated at the driver's boundary and
chained as the cause; none escapes a driver.
"""

from __future__ import annotations

from vareon_runtime.errors import VareonError

__all__ = [
    "BadWorkingDirectoryError",
    "DriverError",
    "ExecutableNotFoundError",
    "ProcessBrokenError",
    "ProcessConfigError",
    "ProcessError",
]


class DriverError(VareonError):
    """Base class of every error a driver raises."""


class ProcessError(DriverError):
    """An OS process could not be started or controlled."""


class ProcessConfigError(ProcessError):
    """The command cannot run as configured; fixing the configuration fixes it."""


class ExecutableNotFoundError(ProcessConfigError, FileNotFoundError):
    """The command's executable does not exist, is not on PATH, or is not executable."""


class BadWorkingDirectoryError(ProcessConfigError, NotADirectoryError):
    """The working directory does not exist or is not a directory."""


class ProcessBrokenError(ProcessError):
    """The operating system failed to start, signal or reap a process."""
