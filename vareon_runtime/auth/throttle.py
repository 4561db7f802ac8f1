"""Failed-login throttle: refuse a guessing source, slow a guessed account, never lock its owner.

Who is counted (decision 0025, after OWASP's "slow down online guessing attacks with device
cookies"; :func:`sign_in_keys`):

- An **unknown client** (no known-client token for the account) is counted under three keys:
  ``addr:<address>`` (an IPv6 address counts as its /64, see :func:`address_key`),
  ``pair:<address>|<username>`` and ``user:<username>``. ``max_failures`` failures within
  ``lockout`` seconds lock an ``addr:`` or ``pair:`` key for ``lockout`` seconds: attempts on it
  are refused at once with ``TooManyRequestsError`` and its ``retry_after``. A ``user:`` key is
  never locked: its failures only slow the next attempt. So a stranger locks only its own
  address, and strangers everywhere can only make the account's unknown clients slower.
- A **known client** (a browser that signed in as this account before, under its current token
  epoch) is counted under ``client:<token id>`` alone: strangers' failures on the account or the
  client's address never refuse nor slow it. Its own ``max_failures`` failures lock that key;
  it then signs in as an unknown client would (:meth:`LoginThrottle.locked`).

The next attempt on keys with recent failures waits ``base_delay * 2**(failures-1)`` seconds (at
most ``max_delay``; the largest over its keys) before its password is even checked; the wait is
a ``trio.sleep``, so the server keeps answering everyone else. A successful sign-in clears its
``pair:`` (or ``client:``) key, not the address (one valid account must not launder an address
that is guessing others' passwords) nor the account's slow-down (the owner signing in must not
reset it for the guesser).

An attempt runs inside :meth:`LoginThrottle.attempt`, which lets one attempt at a time be in
flight on each key: the next one on that key starts after the previous one's outcome is counted.
Without that, fifty guesses sent at once would all pass the check before the first failure was
counted, and all fifty passwords would be checked against a limit of five. On a ``user:`` key
this also bounds the guesses at an account from any number of addresses: one at a time, each
waiting up to ``max_delay``.

Time is ``trio.current_time()``, so tests run on ``autojump_clock``. Memory is bounded: at most
``max_keys`` keys are remembered, and keys with nothing recent to remember go first.
"""

from __future__ import annotations

import ipaddress
import logging
import math
from collections import OrderedDict, deque
from collections.abc import AsyncIterator, Sequence
from contextlib import AsyncExitStack, asynccontextmanager

import trio

from vareon_runtime.checks import check_counts, check_seconds
from vareon_runtime.errors import TooManyRequestsError

__all__ = ["LOCAL", "LoginThrottle", "address_key", "known_client_keys", "sign_in_keys"]

logger = logging.getLogger("vareon.auth")

LOCAL = "local"
"""The address of a client without an IP address (a Unix socket): all of them are one source."""

_SLOW_ONLY = "user:"
_CLEARED_BY_SUCCESS = ("pair:", "client:")
# Failures remembered per key at most: enough to reach any delay and any lock. A `user:` key is
# never cleared by a lock, so its count must not grow with a long attack.
_MIN_REMEMBERED = 64


def address_key(address: str) -> str:
    """The key a client address is counted under: the address, or its /64 for IPv6.

    An IPv6 host usually holds a whole /64 and can pick a new address in it for every request,
    so single IPv6 addresses would not limit anything. An IPv4 address seen through an IPv6
    socket (``::ffff:203.0.113.9``) counts as the IPv4 address. A peer that is not an IP address
    (a Unix socket) is its own key.
    """
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return address
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        # int(): drops a zone (fe80::1%eth0), which belongs to this host's link, not the client.
        return str(ipaddress.IPv6Network((int(ip), 64), strict=False))
    return str(ip)


def sign_in_keys(username: str, client: str | None) -> list[str]:
    """The keys an attempt from an unknown client is counted under.

    Args:
        username: as the client sent it (cut to 65 characters: no account has a longer name).
        client: the client's address; None (no IP address) counts as :data:`LOCAL`.
    """
    name = username[:65]
    address = LOCAL if not client else address_key(client)
    # The address first: it never holds "|", so the pair key cannot be forged by a username.
    return [f"addr:{address}", f"pair:{address}|{name}", f"{_SLOW_ONLY}{name}"]


def known_client_keys(client_id: str) -> list[str]:
    """The key an attempt from a known client is counted under: its known-client token's id."""
    return [f"client:{client_id}"]


class _Entry:
    __slots__ = ("failures", "locked_until")

    def __init__(self, remembered: int) -> None:
        self.failures: deque[float] = deque(maxlen=remembered)
        self.locked_until: float | None = None


class _Turn:
    __slots__ = ("lock", "users")

    def __init__(self) -> None:
        self.lock = trio.Lock()
        self.users = 0


class LoginThrottle:
    """Count failed logins per key; delay, then lock (except ``user:`` keys, which only delay).

    Args:
        max_failures: failures within ``lockout`` seconds that lock a key.
        lockout: seconds a key stays locked, and the window failures are counted in.
        base_delay: seconds the attempt after the first failure waits; doubled per failure.
        max_delay: upper bound of that wait.
        max_keys: keys remembered at most.
    """

    def __init__(
        self,
        max_failures: int,
        lockout: float,
        *,
        base_delay: float = 0.5,
        max_delay: float = 8.0,
        max_keys: int = 10_000,
    ) -> None:
        check_counts({"max_failures": max_failures, "max_keys": max_keys})
        check_seconds({"lockout": lockout})
        self.max_failures = max_failures
        self.lockout = lockout
        self.base_delay = base_delay
        self.max_delay = max_delay
        self.max_keys = max_keys
        self._remembered = max(max_failures, _MIN_REMEMBERED)
        # Least recently touched first.
        self._entries: OrderedDict[str, _Entry] = OrderedDict()
        # The attempt in flight per key, and how many wait for it; gone when none do.
        self._turns: dict[str, _Turn] = {}

    def __len__(self) -> int:
        return len(self._entries)

    @asynccontextmanager
    async def attempt(self, keys: Sequence[str]) -> AsyncIterator[None]:
        """Run one sign-in attempt on ``keys``: wait its turn and its delay, or be refused.

        Inside the block, check the password and count the outcome (:meth:`failed` or
        :meth:`succeeded`): the next attempt on any of these keys begins only after the block
        is left, so it sees that outcome. Attempts on other keys run alongside.

        Raises:
            TooManyRequestsError: a key is locked (also when it was locked while this attempt
                waited its turn).
        """
        async with AsyncExitStack() as stack:
            for key in sorted(set(keys)):  # one order for everyone: no two attempts deadlock
                await stack.enter_async_context(self._turn(key))
            await self.wait(keys)
            yield

    @asynccontextmanager
    async def _turn(self, key: str) -> AsyncIterator[None]:
        turn = self._turns.get(key)
        if turn is None:
            turn = self._turns[key] = _Turn()
        turn.users += 1
        try:
            async with turn.lock:  # trio's Lock is fair: attempts go in the order they came
                yield
        finally:
            turn.users -= 1
            if turn.users == 0:
                del self._turns[key]

    async def wait(self, keys: Sequence[str]) -> None:
        """Refuse a locked key; otherwise sleep the delay that recent failures earned.

        Raises:
            TooManyRequestsError: a key is locked; ``retry_after`` is the seconds left.
        """
        delay = self.check(keys)
        if delay > 0:
            await trio.sleep(delay)
            # Attempts running beside this one may have locked a key meanwhile.
            self.check(keys)

    def check(self, keys: Sequence[str]) -> float:
        """Return the delay the next attempt on ``keys`` must wait (the largest over the keys).

        Raises:
            TooManyRequestsError: a key is locked.
        """
        now = trio.current_time()
        delay = 0.0
        for key in keys:
            entry = self._entries.get(key)
            if entry is None:
                continue
            if entry.locked_until is not None:
                left = entry.locked_until - now
                if left > 0:
                    seconds = math.ceil(left)
                    raise TooManyRequestsError(
                        f"too many failed sign-ins for this {_what(key)}; try again in"
                        f" {seconds} s",
                        retry_after=seconds,
                    )
                entry.locked_until = None
            self._expire(entry, now)
            if entry.failures:
                delay = max(delay, self._delay(len(entry.failures)))
        return delay

    def locked(self, key: str) -> bool:
        """Whether ``key`` is locked now (a known client then signs in as an unknown one)."""
        entry = self._entries.get(key)
        return (
            entry is not None
            and entry.locked_until is not None
            and entry.locked_until > trio.current_time()
        )

    def failed(self, keys: Sequence[str]) -> None:
        """Count one failed attempt against each key, locking those that reach the limit
        (``user:`` keys are only slowed)."""
        now = trio.current_time()
        for key in keys:
            entry = self._entries.get(key)
            if entry is None:
                entry = self._entries[key] = _Entry(self._remembered)
            else:
                self._entries.move_to_end(key)
            self._expire(entry, now)
            entry.failures.append(now)
            if len(entry.failures) >= self.max_failures and not key.startswith(_SLOW_ONLY):
                entry.locked_until = now + self.lockout
                entry.failures.clear()
                logger.warning(
                    "sign-in locked for %.0f s after %d failures: %s",
                    self.lockout,
                    self.max_failures,
                    _logged(key),
                )
        if len(self._entries) > self.max_keys:
            self._shrink(now)

    def succeeded(self, keys: Sequence[str]) -> None:
        """Forget the failures of a successful sign-in's ``pair:`` or ``client:`` key.

        Its address keeps its count (a valid account must not launder an address guessing
        others' passwords), and so does its ``user:`` key (the owner's success must not reset
        the slow-down for whoever else guesses).
        """
        if isinstance(keys, str):
            raise TypeError(f"succeeded() takes the attempt's list of keys, not the string {keys!r}")
        for key in keys:
            if key.startswith(_CLEARED_BY_SUCCESS):
                self._entries.pop(key, None)

    def _delay(self, failures: int) -> float:
        return min(self.max_delay, self.base_delay * 2 ** (failures - 1))

    def _expire(self, entry: _Entry, now: float) -> None:
        horizon = now - self.lockout
        failures = entry.failures
        while failures and failures[0] <= horizon:
            failures.popleft()

    def _shrink(self, now: float) -> None:
        # First the keys with nothing left to remember, then the least recently touched, down to
        # 90% so that a flood of new keys pays for this scan once per max_keys/10 keys.
        for key in list(self._entries):
            entry = self._entries[key]
            self._expire(entry, now)
            if not entry.failures and (entry.locked_until is None or entry.locked_until <= now):
                del self._entries[key]
        target = self.max_keys - self.max_keys // 10
        while len(self._entries) > target:
            self._entries.popitem(last=False)


def _logged(key: str) -> str:
    # The username came from the client: repr() escapes what would forge a log line. A known
    # client is not named by its token's id.
    if key.startswith("client:"):
        return "a known client"
    kind, _, rest = key.partition(":")
    return f"{kind}:{rest!r}"


def _what(key: str) -> str:
    if key.startswith("addr:"):
        return "address"
    if key.startswith("pair:"):
        return "user from this address"
    return "client"
