"""``LatencyHistogram``: durations counted into fixed buckets, cheap enough for every request.

What a Prometheus histogram holds (a count per bucket, their sum, their number), kept in plain
Python so that counting costs a bisection and two additions, and nothing is imported until the
numbers are read (``GET /metrics`` reads them, decision 0028). Not thread-safe: it is counted
from the trio thread only.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Sequence

__all__ = ["HTTP_BUCKETS", "STORE_BUCKETS", "LatencyHistogram"]

HTTP_BUCKETS: tuple[float, ...] = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
"""Upper bounds in seconds for an HTTP answer: a direct answer takes well under a millisecond, an
upload minutes (the last, infinite, bucket)."""

STORE_BUCKETS: tuple[float, ...] = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
"""Upper bounds in seconds for one group commit: an fsync on an SSD takes about a millisecond, on
an SD card tens to hundreds of milliseconds."""


class LatencyHistogram:
    """Durations in buckets: ``counts[i]`` holds those at most ``bounds[i]`` and above the bound
    before; the last count holds those above every bound.

    Args:
        bounds: increasing upper bounds in seconds.

    Raises:
        ValueError: the bounds are empty or not strictly increasing.
    """

    __slots__ = ("bounds", "count", "counts", "total")

    def __init__(self, bounds: Sequence[float]) -> None:
        bounds = tuple(float(b) for b in bounds)
        if not bounds or any(low >= high for low, high in zip(bounds, bounds[1:])):
            raise ValueError(f"histogram bounds must be strictly increasing seconds, not {bounds!r}")
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)
        self.total = 0.0
        self.count = 0

    def observe(self, seconds: float) -> None:
        """Count one duration."""
        self.counts[bisect_left(self.bounds, seconds)] += 1
        self.total += seconds
        self.count += 1

    def cumulative(self) -> list[tuple[float, int]]:
        """``(upper bound, durations at most that)`` for each bound and ``inf``: Prometheus's
        ``le`` buckets."""
        running = 0
        buckets: list[tuple[float, int]] = []
        for bound, count in zip((*self.bounds, float("inf")), self.counts):
            running += count
            buckets.append((bound, running))
        return buckets
