"""Tunables of the agents module that are not per agent (log retention, health, shutdown).

The one a user tunes comes from ``config.toml``'s ``[myntrix]`` section (``agent_log_lines``,
mapped by :mod:`actors.myntrix.agents.component`); the rest keep these defaults, and tests
pass their own.
"""

from __future__ import annotations

from dataclasses import dataclass

from vareon_runtime.checks import check_counts, check_seconds

__all__ = ["AgentSettings"]


@dataclass(frozen=True)
class AgentSettings:
    """Args:
    log_ring: output lines each agent keeps in memory for quick ``logs?tail=``.
    log_keep: lines kept in ``agent_logs`` per agent; older ones are pruned.
    log_prune_every: lines written between two prunes (so a prune is one statement per batch,
        and a table holds at most ``log_keep + log_prune_every`` lines of one agent).
    log_flush_interval: seconds lines wait in memory before they are written, at most.
    log_flush_lines: written at once when this many are waiting.
    log_pending_max: lines waiting for the database at most; beyond, the oldest are dropped
        (and a system line says how many).
    max_line: bytes of one output line; longer lines are split.
    health_interval: seconds between health samples (CPU and memory of the process tree).
    actor_max_restarts, actor_period: how often an agent's actor (not its process) may crash
        within the period before the kernel supervisor marks it failed.
    shutdown_timeout: seconds the whole module may take to stop (every agent at once).
    """

    log_ring: int = 1000
    log_keep: int = 5000
    log_prune_every: int = 500
    log_flush_interval: float = 0.1
    log_flush_lines: int = 256
    log_pending_max: int = 10_000
    max_line: int = 8192
    health_interval: float = 5.0
    actor_max_restarts: int = 5
    actor_period: float = 60.0
    shutdown_timeout: float = 30.0

    def __post_init__(self) -> None:
        check_counts(vars(self), "log_ring", "log_keep", "log_prune_every", "log_flush_lines", "log_pending_max", "max_line")
        check_seconds(vars(self), "log_flush_interval", "health_interval", "actor_period", "shutdown_timeout")
