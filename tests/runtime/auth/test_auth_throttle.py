"""The login throttle and the registration limit, in trio time.

Updated for decision 0025 (no lockout by strangers): the lock tests used to lock a ``user:``
key (``test_max_failures_lock_the_key_then_it_opens_again``) and a success used to clear the
username (``test_success_clears_the_username_only``); a ``user:`` key now only slows, and a
success clears the (address, user) pair.
"""

from __future__ import annotations

import pytest
import trio
import trio.testing

from vareon_runtime.auth import LoginThrottle, RateLimit
from vareon_runtime.auth.throttle import LOCAL, known_client_keys, sign_in_keys
from vareon_runtime.errors import TooManyRequestsError

KEYS = sign_in_keys("alice", "10.0.0.1")


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
    pair = ["pair:10.0.0.1|alice"]
    with trio.fail_after(600):
        for _ in range(3):
            throttle.failed(pair)
        with pytest.raises(
            TooManyRequestsError,
            match=r"^too many failed sign-ins for this user from this address; try again in 300 s$",
        ) as info:
            await throttle.wait(pair)
        assert info.value.retry_after == 300
        assert info.value.status == 429
        assert throttle.locked(pair[0])
        await trio.sleep(120)
        with pytest.raises(TooManyRequestsError) as info:
            await throttle.wait([*pair, "addr:10.0.0.2"])
        assert info.value.retry_after == 180
        # Other keys are not affected: the same user from elsewhere, another user from here.
        assert await timed_wait(throttle, ["pair:10.0.0.2|alice"]) == 0
        assert await timed_wait(throttle, ["pair:10.0.0.1|bob"]) == 0
        await trio.sleep(180)
        # Unlocked, with a clean count.
        assert not throttle.locked(pair[0])
        assert await timed_wait(throttle, pair) == 0


async def test_a_user_key_slows_but_never_locks(autojump_clock: trio.testing.MockClock) -> None:
    # Decision 0025: failures for an account from anywhere make its unknown clients wait (at
    # most max_delay per attempt), but never refuse them; only addresses and pairs lock.
    throttle = LoginThrottle(3, 300, base_delay=0.5, max_delay=8)
    with trio.fail_after(600):
        for n in range(200):  # far past max_failures, from 200 addresses
            throttle.failed(["user:alice"])
            assert not throttle.locked("user:alice")
        assert await timed_wait(throttle, ["user:alice"]) == 8
        # The owner's own address and pair hold nothing: only the slow-down applies.
        assert await timed_wait(throttle, sign_in_keys("alice", "192.0.2.1")) == 8
        await trio.sleep(301)  # the failures leave the window
        assert await timed_wait(throttle, ["user:alice"]) == 0
    assert len(throttle._entries["user:alice"].failures) == 0


def test_sign_in_keys_name_the_address_the_pair_and_the_user() -> None:
    assert sign_in_keys("alice", "10.0.0.1") == ["addr:10.0.0.1", "pair:10.0.0.1|alice", "user:alice"]
    # An IPv6 client counts as its /64; no address at all (a Unix socket) is one local source.
    assert sign_in_keys("bob", "2001:db8:1:2::7")[:2] == ["addr:2001:db8:1:2::/64", "pair:2001:db8:1:2::/64|bob"]
    assert sign_in_keys("bob", None)[0] == f"addr:{LOCAL}"
    # A username cannot make its pair key another address's: the address comes first.
    assert sign_in_keys("x|alice", "10.0.0.9")[1] == "pair:10.0.0.9|x|alice"
    assert sign_in_keys("a" * 500, "10.0.0.1")[2] == "user:" + "a" * 65
    assert known_client_keys("abc") == ["client:abc"]


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


async def test_success_clears_the_pair_only(autojump_clock: trio.testing.MockClock) -> None:
    throttle = LoginThrottle(5, 60)
    address, pair, user = KEYS
    throttle.failed(KEYS)
    throttle.failed(KEYS)
    throttle.succeeded(KEYS)
    assert throttle.check([pair]) == 0
    # The address keeps its count (it may be guessing others' passwords), and the account's
    # slow-down stays for whoever else tries it.
    assert throttle.check([address]) == 1.0
    assert throttle.check([user]) == 1.0
    client = known_client_keys("t1")
    throttle.failed(client)
    throttle.succeeded(client)
    assert throttle.check(client) == 0
    with pytest.raises(TypeError, match="list of keys"):
        throttle.succeeded(pair)


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


async def test_attempts_on_a_key_go_one_at_a_time(autojump_clock: trio.testing.MockClock) -> None:
    throttle = LoginThrottle(3, 60, base_delay=0.5, max_delay=4)
    inside: list[str] = []
    outcomes: list[str] = []

    async def attempt(n: int, keys: list[str]) -> None:
        try:
            async with throttle.attempt(keys):
                inside.append(f"in {n}")
                await trio.sleep(1)  # the password check, during which others must wait
                inside.append(f"out {n}")
                throttle.failed(keys)
            outcomes.append("failed")
        except TooManyRequestsError:
            outcomes.append("refused")

    with trio.fail_after(600):
        async with trio.open_nursery() as nursery:
            for n in range(10):
                # Alternating key lists that share the address: the address serialises them all.
                nursery.start_soon(attempt, n, [f"user:u{n % 2}", "addr:10.0.0.1"])
                await trio.testing.wait_all_tasks_blocked()
    # Never two inside at once, and only as many as the limit got in.
    assert inside == [f"{what} {n}" for n in range(3) for what in ("in", "out")]
    assert sorted(outcomes) == ["failed"] * 3 + ["refused"] * 7
    assert not throttle._turns  # nothing left behind by the waiters


async def test_a_cancelled_waiter_leaves_no_turn_behind(autojump_clock: trio.testing.MockClock) -> None:
    throttle = LoginThrottle(3, 60)
    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:

            async def hold() -> None:
                async with throttle.attempt(["user:a"]):
                    await trio.sleep(10)

            async def wait_then_give_up() -> None:
                with trio.move_on_after(1):
                    async with throttle.attempt(["user:a"]):
                        raise AssertionError("must still be waiting its turn")

            nursery.start_soon(hold)
            await trio.testing.wait_all_tasks_blocked()
            nursery.start_soon(wait_then_give_up)
    assert not throttle._turns
    assert await timed_wait(throttle, ["user:a"]) == 0


# -- the registration limit ----------------------------------------------------------------------


async def test_rate_limit_counts_within_a_sliding_window(autojump_clock: trio.testing.MockClock) -> None:
    limit = RateLimit(2, 100, refusal="too many things from this address")
    limit.take("addr:a")
    await trio.sleep(30)
    limit.take("addr:a")
    with pytest.raises(TooManyRequestsError, match=r"^too many things from this address; try again in 70 s$") as info:
        limit.take("addr:a")
    assert info.value.retry_after == 70
    limit.take("addr:b")  # other keys have their own budget
    await trio.sleep(70)  # the first event leaves the window: one more fits
    limit.take("addr:a")
    with pytest.raises(TooManyRequestsError, match="try again in 30 s"):
        limit.take("addr:a")


async def test_rate_limit_memory_is_bounded(autojump_clock: trio.testing.MockClock) -> None:
    limit = RateLimit(1, 60, refusal="no", max_keys=100)
    for n in range(1000):
        limit.take(f"addr:{n}")
    assert len(limit) <= 100
    with pytest.raises(TooManyRequestsError):
        limit.take("addr:999")  # the most recent keys are remembered


def test_rate_limit_bad_arguments_are_refused() -> None:
    with pytest.raises(ValueError, match="limit must be at least 1, not 0"):
        RateLimit(0, 60, refusal="no")
    with pytest.raises(ValueError, match="window must be a positive number of seconds, not 0"):
        RateLimit(1, 0, refusal="no")
