"""The event bus: patterns, bounded queues, drop counting, unsubscribe."""

from __future__ import annotations

import pytest
import trio
import trio.testing

from vareon_runtime.bus import Event, EventBus, Overflow


async def test_exact_prefix_and_all_patterns() -> None:
    bus = EventBus()
    exact = bus.subscribe("telemetry.device.a")
    prefix = bus.subscribe("telemetry.*")
    everything = bus.subscribe("*")
    other = bus.subscribe("agent.*")
    bus.publish("telemetry.device.a", {"t": 1})
    bus.publish("telemetry.device.b", {"t": 2})
    assert [e.data for e in _drain(exact)] == [{"t": 1}]
    assert [e.data for e in _drain(prefix)] == [{"t": 1}, {"t": 2}]
    assert [e.topic for e in _drain(everything)] == ["telemetry.device.a", "telemetry.device.b"]
    assert _drain(other) == []


async def test_prefix_pattern_does_not_match_a_longer_word() -> None:
    bus = EventBus()
    sub = bus.subscribe("agent.*")
    bus.publish("agents.x")
    bus.publish("agent")
    assert _drain(sub) == []


async def test_slow_subscriber_loses_oldest_is_told_and_never_blocks_publisher() -> None:
    bus = EventBus()
    slow = bus.subscribe("status.*", queue_size=3)
    fast = bus.subscribe("status.*", queue_size=100)
    for i in range(10):
        bus.publish("status.x", i)  # synchronous: returns even though `slow` is full
    first = slow.receive_nowait()
    assert first == Overflow(dropped=7)
    assert [e.data for e in _drain(slow)] == [7, 8, 9]
    assert slow.dropped_total == 7
    assert [e.data for e in _drain(fast)] == list(range(10))
    assert fast.dropped_total == 0


async def test_receive_waits_for_the_next_event(nursery: trio.Nursery) -> None:
    bus = EventBus()
    sub = bus.subscribe("a")
    got: list[Event | Overflow] = []

    async def reader() -> None:
        async for item in sub:
            got.append(item)

    nursery.start_soon(reader)
    await trio.testing.wait_all_tasks_blocked()
    bus.publish("a", 1)
    await trio.testing.wait_all_tasks_blocked()
    assert [e.data for e in got if isinstance(e, Event)] == [1]
    sub.close()  # ends the iteration
    await trio.testing.wait_all_tasks_blocked()


async def test_unsubscribe_stops_delivery_and_is_symmetric() -> None:
    bus = EventBus()
    with bus.subscribe("a.*") as sub:
        assert bus.subscriber_count == 1
    assert bus.subscriber_count == 0
    bus.publish("a.b", 1)
    with pytest.raises(trio.ClosedResourceError):
        sub.receive_nowait()


@pytest.mark.parametrize("pattern", ["", "a.*.b", "a*", "*.a"])
def test_invalid_patterns_are_refused(pattern: str) -> None:
    with pytest.raises(ValueError, match="use an exact topic"):
        EventBus().subscribe(pattern)


@pytest.mark.parametrize("size", [0, -1])
def test_a_queue_size_below_one_is_refused_not_defaulted(size: int) -> None:
    bus = EventBus(default_queue_size=5)
    with pytest.raises(ValueError, match=f"a subscription queue holds at least 1 event, not {size}"):
        bus.subscribe("a", queue_size=size)
    assert bus.subscriber_count == 0
    assert bus.subscribe("a").maxlen == 5, "no queue_size means the bus's default"
    assert bus.subscribe("a", queue_size=None).maxlen == 5


def _drain(sub) -> list:  # type: ignore[no-untyped-def]
    items = []
    while True:
        try:
            items.append(sub.receive_nowait())
        except trio.WouldBlock:
            return items


def test_wants_says_whether_a_topic_would_reach_anyone() -> None:
    bus = EventBus()
    assert not bus.wants("job.1")
    with bus.subscribe("job.2"):
        assert bus.wants("job.2") and not bus.wants("job.1")
    with bus.subscribe("job.*"):
        assert bus.wants("job.1") and bus.wants("job.1.progress") and not bus.wants("jobs.1")
    with bus.subscribe("*"):
        assert bus.wants("anything")
    assert not bus.wants("job.2")
