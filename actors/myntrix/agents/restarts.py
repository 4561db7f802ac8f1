"""``RestartIntensity``: how often an agent's process exited lately, OTP's restart intensity for
one child: more than ``max_restarts`` exits within ``period`` seconds and the agent gives up."""

from __future__ import annotations

import random
from collections import deque

import trio

from vareon_runtime.supervisor import Backoff

from .schemas import AgentConfig

__all__ = ["RestartIntensity"]


class RestartIntensity:
    """The recent exits of one agent's process, on trio's clock."""

    def __init__(self, rng: random.Random) -> None:
        self._recent: deque[float] = deque()
        self._rng = rng

    def clear(self) -> None:
        """Forget the exits (a start asked for by a user starts afresh)."""
        self._recent.clear()

    def exited(self, config: AgentConfig) -> int:
        """Count an exit now; answers the exits within the period, this one included."""
        now = trio.current_time()
        self._recent.append(now)
        while self._recent and self._recent[0] <= now - config.period:
            self._recent.popleft()
        return len(self._recent)

    def recent(self, config: AgentConfig) -> int:
        """Exits within the period up to now."""
        since = trio.current_time() - config.period
        return sum(1 for moment in self._recent if moment > since)

    def delay(self, config: AgentConfig) -> float:
        """Seconds to wait before the next restart (the first restart within the period: none)."""
        return Backoff(config.backoff_initial, config.backoff_max).delay(len(self._recent) - 1, self._rng)
