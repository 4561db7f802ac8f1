"""``RateLimit``: at most so many events per key within a sliding window, then 429.

The auth service limits registrations per client address with it: each costs an argon2 hash
and a row, so an open registration must not be a free way to spend the box's CPU and disk.

:meth:`RateLimit.take` checks and counts in one step with no checkpoint between, so requests
arriving together cannot all pass the check before any of them is counted. Time is
``trio.current_time()``; memory is bounded by ``max_keys`` (keys with nothing left in the window
are forgotten first, then the least recently used).
"""

from __future__ import annotations

import math
from collections import OrderedDict, deque

import trio

from vareon_runtime.checks import check_counts, check_seconds
from vareon_runtime.errors import TooManyRequestsError

__all__ = ["RateLimit"]


class RateLimit:
    """Allow ``limit`` events per key within any ``window`` seconds.

    Args:
        limit: events allowed per key within the window.
        window: the window in seconds.
        refusal: what the error says before "; try again in N s", e.g. "too many accounts
            registered from this address".
        max_keys: keys remembered at most.
    """

    def __init__(self, limit: int, window: float, *, refusal: str, max_keys: int = 10_000) -> None:
        check_counts({"limit": limit, "max_keys": max_keys})
        check_seconds({"window": window})
        self.limit = limit
        self.window = window
        self.refusal = refusal
        self.max_keys = max_keys
        # Each key's event times, oldest first; least recently used key first.
        self._events: OrderedDict[str, deque[float]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._events)

    def take(self, key: str) -> None:
        """Count one event on ``key``, or refuse it when the window is full.

        Raises:
            TooManyRequestsError: ``limit`` events on ``key`` within the last ``window``
                seconds; ``retry_after`` is when the oldest of them leaves the window.
        """
        now = trio.current_time()
        events = self._events.get(key)
        if events is None:
            events = self._events[key] = deque()
        else:
            self._events.move_to_end(key)
        self._expire(events, now)
        if len(events) >= self.limit:
            seconds = max(1, math.ceil(events[0] + self.window - now))
            raise TooManyRequestsError(
                f"{self.refusal}; try again in {seconds} s", retry_after=seconds
            )
        events.append(now)
        if len(self._events) > self.max_keys:
            self._shrink(now)

    def _expire(self, events: deque[float], now: float) -> None:
        horizon = now - self.window
        while events and events[0] <= horizon:
            events.popleft()

    def _shrink(self, now: float) -> None:
        # As in LoginThrottle: the empty keys first, then the least recently used, down to 90%.
        for key in list(self._events):
            events = self._events[key]
            self._expire(events, now)
            if not events:
                del self._events[key]
        target = self.max_keys - self.max_keys // 10
        while len(self._events) > target:
            self._events.popitem(last=False)
