"""``VisualizationFeed``: the 3D scene published on the bus when agents or devices change."""

from __future__ import annotations

import logging
import math

import trio

from vareon_runtime.actor import Actor
from vareon_runtime.bus import Event, EventBus, Subscription
from vareon_runtime.checks import check_seconds
from vareon_runtime.errors import StoreError
from vareon_runtime.store import Store

from .scene import VISUALIZATION_TOPIC, VisualizationData, visualization_data

__all__ = ["VisualizationFeed"]

log = logging.getLogger("vareon.myntrix.visualization")

_RETRY_PAUSE_MAX = 30.0  # seconds between two reads of a database that keeps failing


def _triggers(event: Event) -> bool:
    """Whether an ``agent.*`` or ``device.*`` event may change the scene (not output or health)."""
    topic = event.topic
    return not (topic.endswith(".log") or topic.endswith(".health"))


class VisualizationFeed(Actor):
    """Publish the scene on :data:`VISUALIZATION_TOPIC` when agents or devices change.

    It listens to ``agent.*`` and ``device.*`` (status changes and the like; agents' output and
    health samples are ignored) and, after a change, reads the tables and publishes the payload's
    wire form (camelCase) once, at most every ``min_interval`` seconds: a burst of changes (twenty
    agents starting) gives one or two publications, not twenty. A lost bus event (the queue
    overflowed) counts as a change. Start it with ``await nursery.start(feed.run)``.

    Args:
        store: the runtime's store.
        bus: the runtime's event bus.
        min_interval: seconds between two publications, at least.

    Attributes:
        published: payloads published since start.
        latest: the last payload published (None before the first).
    """

    def __init__(self, store: Store, bus: EventBus, *, min_interval: float = 0.5) -> None:
        super().__init__()
        check_seconds({"min_interval": min_interval})
        self.name = "visualization-feed"
        self.store = store
        self.bus = bus
        self.min_interval = min_interval
        self.published = 0
        self.latest: VisualizationData | None = None
        self._changed = trio.Event()
        self._subscriptions: list[Subscription] = []

    async def on_start(self) -> None:
        for pattern in ("agent.*", "device.*"):
            subscription = self.bus.subscribe(pattern, queue_size=256)
            self._subscriptions.append(subscription)
            self.nursery.start_soon(self._watch, subscription)
        self.nursery.start_soon(self._publish_loop)

    async def on_stop(self) -> None:
        for subscription in self._subscriptions:
            subscription.close()
        self._subscriptions.clear()

    async def _watch(self, subscription: Subscription) -> None:
        while True:
            try:
                item = await subscription.receive()
            except trio.ClosedResourceError:
                return
            if not isinstance(item, Event) or _triggers(item):
                self._changed.set()

    async def _publish_loop(self) -> None:
        last = -math.inf
        failures = 0
        while True:
            await self._changed.wait()
            pause = self.min_interval * 2**failures if failures else self.min_interval
            if last + pause > trio.current_time():
                await trio.sleep_until(last + min(pause, _RETRY_PAUSE_MAX))
            # Changes from here on trigger the next round: this read may already miss them.
            self._changed = trio.Event()
            try:
                payload = await visualization_data(self.store)
            except StoreError as exc:
                failures += 1
                log.warning("visualization: cannot read agents and devices (retrying): %s", exc)
                self._changed.set()
                last = trio.current_time()
                continue
            failures = 0
            last = trio.current_time()
            self.latest = payload
            self.published += 1
            self.bus.publish(VISUALIZATION_TOPIC, payload.model_dump(mode="json", by_alias=True))
