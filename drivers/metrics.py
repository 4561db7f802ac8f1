"""The host's CPU, memory, disk and load, read through psutil, with a fallback that never fails.

:class:`SystemProbe` is the boundary: :class:`PsutilProbe` is the real one, tests pass fakes that
implement the same methods. :func:`read_system` takes one :class:`HostSample` through a probe.
When the environment sets ``VAREON_MOCK_SYSTEM_METRICS=true``, or the probe raises (psutil meets
``PermissionError`` on Android/Termux, where ``/proc/stat`` is closed to apps, or anything else),
the sample comes from what other sources give (``os.getloadavg``, ``os.cpu_count``,
``shutil.disk_usage``, ``/proc/meminfo``), with ``mocked`` set and the ``reason``; a value no
source gives is ``None``. The shape is the same either way, and :func:`read_system` never raises
for a failing source.

:func:`read_process` does the same for the runtime's own process (resident memory, threads, CPU
time): psutil, or ``/proc/self`` read directly, ``os.times`` and ``getrusage``, ``mocked`` with the
``reason``.
"""

from __future__ import annotations

import os
import resource
import shutil
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Protocol

import psutil

from vareon_runtime.clock import utcnow

__all__ = [
    "MOCK_ENV",
    "DiskUsage",
    "HostSample",
    "MemoryUsage",
    "ProcessSample",
    "PsutilProbe",
    "SystemProbe",
    "fallback_process",
    "fallback_sample",
    "mock_requested",
    "read_process",
    "read_system",
]

MOCK_ENV = "VAREON_MOCK_SYSTEM_METRICS"
"""Set to ``true`` (or ``1``, ``yes``, ``on``) to skip psutil and report the fallback."""

_TRUE = frozenset({"1", "true", "yes", "on"})
_MEMINFO = Path("/proc/meminfo")
_SELF_STATUS = Path("/proc/self/status")


@dataclass(frozen=True)
class MemoryUsage:
    """Bytes of physical memory (``None``: no source gave it)."""

    total: int | None
    available: int | None
    used: int | None
    percent: float | None


@dataclass(frozen=True)
class DiskUsage:
    """Bytes of the file system holding ``path``."""

    path: str
    total: int | None
    used: int | None
    free: int | None
    percent: float | None


@dataclass(frozen=True)
class HostSample:
    """One reading of the host. ``load_average`` is 1, 5 and 15 minutes where the OS has one."""

    time: datetime
    cpu_percent: float | None
    cpu_count: int | None
    memory: MemoryUsage
    disk: DiskUsage
    load_average: tuple[float, float, float] | None
    mocked: bool
    reason: str | None


@dataclass(frozen=True)
class ProcessSample:
    """The runtime's own process. ``rss`` and ``peak_rss`` in bytes (``None``: no source gave it)."""

    pid: int
    rss: int | None
    peak_rss: int | None
    threads: int | None
    cpu_seconds: float
    mocked: bool
    reason: str | None


class SystemProbe(Protocol):
    """Where the numbers come from. Any method may raise (``PermissionError`` first of all)."""

    def cpu_percent(self) -> float:
        """CPU use of the whole host since the previous call, 0-100."""
        ...

    def cpu_count(self) -> int | None:
        """Logical CPUs."""
        ...

    def memory(self) -> MemoryUsage:
        """Physical memory."""
        ...

    def disk(self, path: Path) -> DiskUsage:
        """The file system holding ``path``."""
        ...

    def load_average(self) -> tuple[float, float, float] | None:
        """1, 5 and 15 minute load averages, ``None`` where the OS has none."""
        ...


class PsutilProbe:
    """The real probe. Its first ``cpu_percent`` measures over 0.1 s (psutil's first reading
    since process start means nothing); later ones cover the time since the previous call.
    Blocking: call it from a worker thread."""

    def __init__(self) -> None:
        self._primed = False

    def cpu_percent(self) -> float:
        if not self._primed:
            value = float(psutil.cpu_percent(interval=0.1))
            self._primed = True
            return value
        return float(psutil.cpu_percent(interval=None))

    def cpu_count(self) -> int | None:
        count = psutil.cpu_count(logical=True)
        return int(count) if count is not None else None

    def memory(self) -> MemoryUsage:
        mem = psutil.virtual_memory()
        return MemoryUsage(int(mem.total), int(mem.available), int(mem.used), float(mem.percent))

    def disk(self, path: Path) -> DiskUsage:
        usage = psutil.disk_usage(str(path))
        return DiskUsage(str(path), int(usage.total), int(usage.used), int(usage.free), float(usage.percent))

    def load_average(self) -> tuple[float, float, float] | None:
        if not hasattr(psutil, "getloadavg"):
            return None
        one, five, fifteen = psutil.getloadavg()
        return (float(one), float(five), float(fifteen))


def mock_requested(environ: Mapping[str, str]) -> bool:
    """Whether ``VAREON_MOCK_SYSTEM_METRICS`` asks for the fallback."""
    return environ.get(MOCK_ENV, "").strip().lower() in _TRUE


def read_system(probe: SystemProbe, path: Path, *, environ: Mapping[str, str] | None = None) -> HostSample:
    """One sample of the host through ``probe``, or the fallback with the reason. Never raises
    for a failing source. Blocking: call it from a worker thread.

    Args:
        probe: where the numbers come from.
        path: a path on the file system whose disk is reported (the runtime's data directory).
        environ: the environment (``os.environ`` when omitted), read for ``VAREON_MOCK_SYSTEM_METRICS``.
    """
    environ = os.environ if environ is None else environ
    if mock_requested(environ):
        return fallback_sample(path, f"{MOCK_ENV}={environ[MOCK_ENV]} asks for metrics without psutil")
    try:
        return HostSample(
            time=utcnow(),
            cpu_percent=probe.cpu_percent(),
            cpu_count=probe.cpu_count(),
            memory=probe.memory(),
            disk=probe.disk(path),
            load_average=probe.load_average(),
            mocked=False,
            reason=None,
        )
    except PermissionError as exc:
        return fallback_sample(
            path,
            f"psutil was denied access to the system's statistics ({exc}); as on Android/Termux,"
            " the values come from other sources",
        )
    except Exception as exc:  # any failure of the probe: the fallback, never an error page
        return fallback_sample(path, f"psutil failed ({type(exc).__name__}: {exc}); the values come from other sources")


def read_process(*, environ: Mapping[str, str] | None = None) -> ProcessSample:
    """The runtime's own process through psutil, or the fallback with the reason. Never raises
    for a failing source. Blocking (it reads ``/proc``): call it from a worker thread.

    Args:
        environ: the environment (``os.environ`` when omitted), read for ``VAREON_MOCK_SYSTEM_METRICS``.
    """
    environ = os.environ if environ is None else environ
    if mock_requested(environ):
        return fallback_process(f"{MOCK_ENV}={environ[MOCK_ENV]} asks for metrics without psutil")
    try:
        process = psutil.Process()
        with process.oneshot():
            rss = int(process.memory_info().rss)
            threads = int(process.num_threads())
    except Exception as exc:  # PermissionError on a denied /proc, or anything else: the fallback
        return fallback_process(
            f"psutil could not read the runtime's process ({type(exc).__name__}: {exc}); the values"
            " come from other sources"
        )
    return ProcessSample(os.getpid(), rss, _peak_rss(), threads, _cpu_seconds(), mocked=False, reason=None)


def fallback_process(reason: str) -> ProcessSample:
    """The runtime's process from sources other than psutil, ``mocked`` with ``reason``:
    ``/proc/self/status`` when readable, ``getrusage`` (peak memory) and ``os.times`` (CPU)."""
    fields: dict[str, str] = {}
    try:
        for line in _SELF_STATUS.read_text().splitlines():
            name, _, value = line.partition(":")
            fields[name] = value.strip()
    except (OSError, ValueError):
        pass
    rss = fields.get("VmRSS", "").split()
    threads = fields.get("Threads", "")
    return ProcessSample(
        pid=os.getpid(),
        rss=int(rss[0]) * 1024 if rss[:1] and rss[0].isdecimal() else None,
        peak_rss=_peak_rss(),
        threads=int(threads) if threads.isdecimal() else None,
        cpu_seconds=_cpu_seconds(),
        mocked=True,
        reason=reason,
    )


def _peak_rss() -> int | None:
    try:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux
    except (OSError, ValueError):
        return None


def _cpu_seconds() -> float:
    times = os.times()
    return round(times.user + times.system, 3)


def fallback_sample(path: Path, reason: str) -> HostSample:
    """A sample from sources other than psutil, ``mocked`` with ``reason``.

    CPU use is estimated from the 1-minute load average over the CPU count (capped at 100);
    memory comes from ``/proc/meminfo`` when readable.
    """
    load = _load_average()
    count = _quiet(os.cpu_count)
    cpu = min(100.0, round(load[0] / count * 100.0, 1)) if load is not None and count else None
    return HostSample(
        time=utcnow(),
        cpu_percent=cpu,
        cpu_count=count,
        memory=_meminfo(),
        disk=_disk(path),
        load_average=load,
        mocked=True,
        reason=reason,
    )


def _quiet(read: object) -> int | None:
    try:
        value = read()  # type: ignore[operator]
    except Exception:
        return None
    return int(value) if value is not None else None


def _load_average() -> tuple[float, float, float] | None:
    try:
        one, five, fifteen = os.getloadavg()
    except (OSError, AttributeError):
        return None
    return (float(one), float(five), float(fifteen))


def _disk(path: Path) -> DiskUsage:
    try:
        usage = shutil.disk_usage(path)
    except (OSError, ValueError):
        return DiskUsage(str(path), None, None, None, None)
    percent = round(usage.used / usage.total * 100.0, 1) if usage.total else None
    return DiskUsage(str(path), usage.total, usage.used, usage.free, percent)


def _meminfo() -> MemoryUsage:
    try:
        text = _MEMINFO.read_text()
    except (OSError, ValueError):  # ValueError: UnicodeDecodeError of a garbled file
        return MemoryUsage(None, None, None, None)
    fields: dict[str, int] = {}
    for line in text.splitlines():
        name, _, rest = line.partition(":")
        parts = rest.split()
        if parts and parts[0].isdecimal() and parts[0].isascii():
            fields[name] = int(parts[0]) * (1024 if parts[1:] == ["kB"] else 1)
    total = fields.get("MemTotal")
    available = fields.get("MemAvailable", fields.get("MemFree"))
    if total is None or available is None:
        return MemoryUsage(total, available, None, None)
    used = total - available
    return MemoryUsage(total, available, used, round(used / total * 100.0, 1) if total else None)
