"""The health of an agent, 0 to 100.

0 unless its process runs. Otherwise 100, minus 15 per restart within the agent's period (at
most 45), minus 30 while heartbeat checks fail, minus 10 when the process tree uses more than 90%
of the CPUs, minus 10 above 50% of the memory (20 above 80%). A running agent's health is at
least 1. CPU and memory come from psutil (:class:`TreeSampler`); when it cannot read the process
tree (Termux denies ``/proc``; any psutil error) those terms are left out, never an error.
"""

from __future__ import annotations

import logging

import psutil

__all__ = ["TreeSampler", "health_score"]

log = logging.getLogger("vareon.myntrix.health")


def health_score(
    *,
    running: bool,
    recent_restarts: int = 0,
    heartbeat_failing: bool = False,
    cpu_percent: float | None = None,
    memory_percent: float | None = None,
) -> int:
    """The health of an agent from what is known of it (see the module docstring)."""
    if not running:
        return 0
    health = 100 - 15 * min(recent_restarts, 3)
    if heartbeat_failing:
        health -= 30
    if cpu_percent is not None and cpu_percent > 90:
        health -= 10
    if memory_percent is not None:
        if memory_percent > 80:
            health -= 20
        elif memory_percent > 50:
            health -= 10
    return max(health, 1)


class TreeSampler:
    """CPU and memory of a process and its descendants, sample after sample.

    A process's CPU use is measured between two samples, so the psutil objects are kept from one
    sample to the next. Call :meth:`sample` in a worker thread.
    """

    def __init__(self) -> None:
        self._known: dict[int, psutil.Process] = {}

    def sample(self, pid: int) -> tuple[float, float] | None:
        """CPU (% of all CPUs) and memory (% of RAM) of the tree under ``pid``; None if psutil
        cannot tell."""
        try:
            leader = self._known.get(pid) or psutil.Process(pid)
            known: dict[int, psutil.Process] = {}
            cpu = 0.0
            rss = 0
            for member in [leader, *leader.children(recursive=True)]:
                member = self._known.get(member.pid, member)
                try:
                    with member.oneshot():
                        cpu += member.cpu_percent(None)  # since this object's previous sample
                        rss += member.memory_info().rss
                except psutil.NoSuchProcess:
                    continue
                known[member.pid] = member
            self._known = known
            return cpu / (psutil.cpu_count() or 1), rss * 100 / psutil.virtual_memory().total
        except (psutil.Error, OSError) as exc:
            log.debug("pid %d: no CPU and memory reading (%s); health from liveness only", pid, exc)
            self._known = {}
            return None
