"""Telling processes apart: whose a process is (its owner mark) and which process a pid names
(its creation time).

The owner mark: the process runner puts :data:`OWNER_VARIABLE` (the owner's name, such as
``agent/<uuid>``) in the environment of every program it starts for an owner; the program's
descendants inherit it, also those that leave its process group with ``setsid``. Reading
another process's environment needs the same user (or root); a process we may not read is not
ours. A zombie's environment cannot be read: mark a process while it runs.

A pid alone does not name a process: once reaped, its number is handed out again. A pid and
the creation time psutil reports for it do.
"""

from __future__ import annotations

import psutil

__all__ = ["CREATE_TIME_TOLERANCE", "OWNER_VARIABLE", "create_time", "owner_of", "same_process"]

OWNER_VARIABLE = "VAREON_PROCESS_OWNER"
"""The environment variable that marks a started program and its descendants with their owner."""

CREATE_TIME_TOLERANCE = 1.0
"""Seconds two creation times of one pid may differ and still be the same process.

psutil derives the creation time from the boot time, which the kernel recomputes when the wall
clock is stepped; a reused pid is never created within a second of its previous owner.
"""


def owner_of(proc: psutil.Process) -> str | None:
    """The owner mark of ``proc``; None when it has none or may not be read (not ours)."""
    try:
        return proc.environ().get(OWNER_VARIABLE)
    except (psutil.Error, OSError):
        return None


def create_time(pid: int) -> float | None:
    """When ``pid`` started (seconds since the epoch, psutil's), or None when it cannot be told."""
    try:
        return psutil.Process(pid).create_time()
    except psutil.Error:
        return None


def same_process(proc: psutil.Process, started: float | None) -> bool:
    """Whether ``proc`` is the process that started at ``started`` (True when that is unknown).

    Raises:
        psutil.Error: the process is gone or may not be inspected.
    """
    return started is None or abs(proc.create_time() - started) <= CREATE_TIME_TOLERANCE
