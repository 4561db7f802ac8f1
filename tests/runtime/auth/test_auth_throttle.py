"""The login throttle: slower after each failure, then refused for a while, in trio time."""

from __future__ import annotations

import pytest
import trio
import trio.testing

from vareon_runtime.auth import LoginThrottle
from vareon_runtime.errors import TooManyRequestsError

KEYS = ["user:alice", "addr:10.0.0.1"]


async def timed_wait(throttle: LoginThrottle, keys: list[str]) -> float:
    start = trio.current_time()
    await throttle.wait(keys)
    return trio.current_time() - start


async def test_each_failure_slows_the_next_attempt(autojump_clock: trio.testing.MockClock) -> None:
    throttle = LoginThrottle(10, 300, base_delay=0.5, max_delay=4)
    with trio.fail_after(60):
        assert await timed_wait(throttle, KEYS) == 0
        delays = []
        for _ in range(6):
            throttle.failed(KEYS)
            delays.append(await timed_wait(throttle, KEYS))
    assert delays == [0.5, 1.0, 2.0, 4.0, 4.0, 4.0]


async def test_max_failures_lock_the_key_then_it_opens_again(
    autojump_clock: trio.testing.MockClock,
) -> None:
    throttle = LoginThrottle(3, 300)
    with trio.fail_after(600):
        for _ in range(3):
            throttle.failed(["user:alice"])
        with pytest.raises(TooManyRequestsError, match=r"too many failed sign-ins for this user; try again in 300 s") as info:
            await throttle.wait(["user:alice"])
        assert info.value.retry_after == 300
        assert info.value.status == 429
        await trio.sleep(120)
        with pytest.raises(TooManyRequestsError) as info:
            await throttle.wait(["user:alice", "addr:10.0.0.1"])
        assert info.value.retry_after == 180
        # Other keys are not affected.
        assert await timed_wait(throttle, ["user:bob"]) == 0
        await trio.sleep(180)
        # Unlocked, with a clean count.
        assert await timed_wait(throttle, ["user:alice"]) == 0


async def test_the_address_locks_whatever_the_username(autojump_clock: trio.testing.MockClock) -> None:
    throttle = LoginThrottle(3, 60)
    for name in ("a", "b", "c"):
        throttle.failed([f"user:{name}", "addr:10.0.0.9"])
    with pytest.raises(TooManyRequestsError, match="for this address"):
        await throttle.wait(["user:d", "addr:10.0.0.9"])
    assert await timed_wait(throttle, ["user:d", "addr:10.0.0.10"]) == 0


async def test_failures_older_than_the_window_are_forgotten(
    autojump_clock: trio.testing.MockClock,
) -> None:
    throttle = LoginThrottle(3, 60)
    with trio.fail_after(600):
        throttle.failed(["user:alice"])
        throttle.failed(["user:alice"])
        await trio.sleep(61)
        throttle.failed(["user:alice"])  # only one within the window: not locked
        assert await timed_wait(throttle, ["user:alice"]) == 0.5


async def test_success_clears_the_username_only(autojump_clock: trio.testing.MockClock) -> None:
    throttle = LoginThrottle(5, 60)
    throttle.failed(KEYS)
    throttle.failed(KEYS)
    throttle.succeeded("user:alice")
    assert throttle.check(["user:alice"]) == 0
    assert throttle.check(["addr:10.0.0.1"]) == 1.0


async def test_memory_is_bounded(autojump_clock: trio.testing.MockClock) -> None:
    throttle = LoginThrottle(5, 60, max_keys=100)
    for n in range(1000):
        throttle.failed([f"user:guess{n}"])
    assert len(throttle) <= 100
    # The most recent keys are the ones remembered.
    assert throttle.check(["user:guess999"]) == 0.5
    await trio.sleep(61)
    throttle.failed(["user:late"])
    for n in range(50):
        throttle.failed([f"user:again{n}"])
    assert len(throttle) <= 100
    # The stale keys went first: the older but recent one is still counted.
    assert throttle.check(["user:late"]) == 0.5


def test_bad_arguments_are_refused() -> None:
    with pytest.raises(ValueError, match="max_failures must be at least 1, not 0"):
        LoginThrottle(0, 60)
    with pytest.raises(ValueError, match="lockout must be a positive number of seconds, not 0"):
        LoginThrottle(5, 0)
