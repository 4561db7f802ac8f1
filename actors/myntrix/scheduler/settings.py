"""Tunables of the scheduler module.

The ones a user tunes come from ``config.toml``'s ``[myntrix]`` section
(``scheduler_timezone``, ``task_misfire_grace``, ``task_runs_keep``; the ``component``
maps them); the rest keep these defaults, and tests pass their own.
"""

from __future__ import annotations

from dataclasses import dataclass

from vareon_runtime.checks import check_counts, check_seconds

from actors.kit.jobs import JOB_LOG_MAX

__all__ = ["SchedulerSettings"]


@dataclass(frozen=True)
class SchedulerSettings:
    """Args:
    timezone: IANA zone of a task created without one.
    misfire_grace: seconds, for a task created without its own misfireGrace.
    runs_keep: runs kept per task; older ones are pruned when a run ends.
    log_max: characters of a run's log kept (the tail), as a job keeps.
    sleep_max: the longest the scheduler sleeps before looking at the wall clock again, seconds.
        Not polling (one wake a minute with nothing due): it bounds how late a jump of the wall
        clock (NTP setting the time of a box without a real-time clock) is noticed.
    jump_tolerance: seconds the wall clock may drift from the monotonic clock between two wakes
        before the difference counts as a jump.
    backward_rebase: a backward jump longer than this (seconds) reschedules every task from the
        new time; a shorter one lets the repeated interval pass without runs, as cron does.
    run_shutdown: seconds a run gets to stop when cancelled (a script's stop timeout fits).
    shutdown_timeout: seconds the whole module may take to stop (every run at once).
    ask_timeout: seconds the face waits for the scheduler actor's answer.
    """

    timezone: str = "UTC"
    misfire_grace: float = 300.0
    runs_keep: int = 1000
    log_max: int = JOB_LOG_MAX
    sleep_max: float = 60.0
    jump_tolerance: float = 2.0
    backward_rebase: float = 3 * 3600.0
    run_shutdown: float = 15.0
    shutdown_timeout: float = 30.0
    ask_timeout: float = 10.0

    def __post_init__(self) -> None:
        check_counts(vars(self), "runs_keep", "log_max")
        check_seconds(vars(self), "sleep_max", "jump_tolerance", "run_shutdown", "shutdown_timeout", "ask_timeout")
        if self.misfire_grace < 0 or self.backward_rebase < 0:
            raise ValueError("misfire_grace and backward_rebase must be 0 or more seconds")
