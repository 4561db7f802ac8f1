"""The event bus: topics published without blocking, read through bounded subscriptions.

Topics are dotted (``telemetry.device.<id>``, ``agent.<id>.log``, ``status.actor``). A pattern is
either an exact topic, ``prefix.*`` for every topic below ``prefix`` (any depth), or ``*`` for all.

:meth:`EventBus.publish` never waits: each subscriber has a bounded queue, and when a slow
subscriber's queue is full its oldest event is dropped and counted. The subscriber learns how many
it lost: the next thing it receives is an :class:`Overflow` carrying the count, then the events
that were kept.
"""

from __future__ import annotations

import itertools
from collections import deque
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import trio

from .clock import utcnow

__all__ = ["Event", "EventBus", "Overflow", "Subscription"]

DEFAULT_QUEUE_SIZE = 1024


@dataclass(frozen=True, slots=True)
class Event:
    """One published fact: its topic, its data, when it happened, and a bus-wide sequence number."""

    topic: str
    data: Any
    seq: int
    time: Any = field(default_factory=utcnow)


@dataclass(frozen=True, slots=True)
class Overflow:
    """Told to a subscriber that was too slow: ``dropped`` events were lost before the next one."""

    dropped: int


class Subscription:
    """A bounded queue of events for one subscriber; close it (or use ``with``) when done."""

    def __init__(self, bus: EventBus, pattern: str, maxlen: int) -> None:
        if maxlen < 1:
            raise ValueError(f"a subscription queue holds at least 1 event, not {maxlen!r}")
        self.pattern = pattern
        self.maxlen = maxlen
        self.dropped_total = 0
        self._bus = bus
        self._queue: deque[Event] = deque()
        self._pending_drops = 0
        self._wakeup = trio.lowlevel.ParkingLot()
        self._closed = False

    def _push(self, event: Event) -> None:
        queue = self._queue
        if len(queue) >= self.maxlen:
            queue.popleft()
            self._pending_drops += 1
            self.dropped_total += 1
        queue.append(event)
        if self._wakeup:
            self._wakeup.unpark_all()

    def receive_nowait(self) -> Event | Overflow:
        """Return the next item without waiting.

        Raises:
            trio.WouldBlock: nothing is queued.
            trio.ClosedResourceError: the subscription is closed.
        """
        if self._closed:
            raise trio.ClosedResourceError("subscription is closed")
        if self._pending_drops:
            dropped, self._pending_drops = self._pending_drops, 0
            return Overflow(dropped)
        if not self._queue:
            raise trio.WouldBlock
        return self._queue.popleft()

    async def receive(self) -> Event | Overflow:
        """Wait for the next item: an :class:`Event`, or an :class:`Overflow` after losses.

        Raises:
            trio.ClosedResourceError: the subscription is (or gets) closed.
        """
        # Trio's convention (as memory channels): a cancellation comes before an item is taken,
        # never after, so a cancelled receive() loses nothing.
        await trio.lowlevel.checkpoint_if_cancelled()
        while True:
            try:
                item = self.receive_nowait()
            except trio.WouldBlock:
                await self._wakeup.park()
                continue
            await trio.lowlevel.cancel_shielded_checkpoint()
            return item

    def __aiter__(self) -> AsyncIterator[Event | Overflow]:
        return self._iterate()

    async def _iterate(self) -> AsyncIterator[Event | Overflow]:
        while True:
            try:
                yield await self.receive()
            except trio.ClosedResourceError:
                return

    @property
    def queued(self) -> int:
        """Events waiting to be received."""
        return len(self._queue)

    def close(self) -> None:
        """Stop receiving; a task waiting in :meth:`receive` gets ``ClosedResourceError``."""
        if self._closed:
            return
        self._closed = True
        self._bus._remove(self)
        self._queue.clear()
        self._wakeup.unpark_all()

    def __enter__(self) -> Subscription:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


class EventBus:
    """Topic-based publish/subscribe inside one runtime."""

    def __init__(self, *, default_queue_size: int = DEFAULT_QUEUE_SIZE) -> None:
        self.default_queue_size = default_queue_size
        self._exact: dict[str, list[Subscription]] = {}
        self._prefix: dict[str, list[Subscription]] = {}  # "a.b" for the pattern "a.b.*"; "" for "*"
        self._seq = itertools.count(1)
        self.published = 0

    def subscribe(self, pattern: str, *, queue_size: int | None = None) -> Subscription:
        """Subscribe to a topic or pattern (``a.b``, ``a.*``, ``*``).

        Args:
            queue_size: events kept for this subscriber; None for the bus's default.

        Raises:
            ValueError: the pattern is empty or uses ``*`` other than as its last segment, or
                ``queue_size`` is less than 1.
        """
        body = pattern[:-2] if pattern.endswith(".*") else pattern
        if pattern != "*" and (not body or "*" in body):
            raise ValueError(
                f"topic pattern {pattern!r} is invalid: use an exact topic, 'prefix.*' or '*'"
            )
        if queue_size is None:
            queue_size = self.default_queue_size
        sub = Subscription(self, pattern, queue_size)
        if pattern == "*":
            self._prefix.setdefault("", []).append(sub)
        elif pattern.endswith(".*"):
            self._prefix.setdefault(pattern[:-2], []).append(sub)
        else:
            self._exact.setdefault(pattern, []).append(sub)
        return sub

    def _remove(self, sub: Subscription) -> None:
        pattern = sub.pattern
        if pattern == "*":
            table, key = self._prefix, ""
        elif pattern.endswith(".*"):
            table, key = self._prefix, pattern[:-2]
        else:
            table, key = self._exact, pattern
        subs = table.get(key)
        if subs is not None:
            subs.remove(sub)
            if not subs:
                del table[key]

    def publish(self, topic: str, data: Any = None) -> Event:
        """Deliver an event to every matching subscriber without ever waiting; returns it."""
        event = Event(topic, data, next(self._seq))
        self.published += 1
        for sub in self._exact.get(topic, ()):
            sub._push(event)
        if self._prefix:
            for sub in self._prefix.get("", ()):
                sub._push(event)
            prefix = topic
            while True:
                cut = prefix.rfind(".")
                if cut < 0:
                    break
                prefix = prefix[:cut]
                for sub in self._prefix.get(prefix, ()):
                    sub._push(event)
        return event

    def wants(self, topic: str) -> bool:
        """Whether an event on ``topic`` would reach anyone (so a publisher can skip making it)."""
        if topic in self._exact:
            return True
        if not self._prefix:
            return False
        if "" in self._prefix:
            return True
        prefix = topic
        while (cut := prefix.rfind(".")) >= 0:
            prefix = prefix[:cut]
            if prefix in self._prefix:
                return True
        return False

    @property
    def subscriber_count(self) -> int:
        """Open subscriptions."""
        return sum(map(len, self._exact.values())) + sum(map(len, self._prefix.values()))
