"""Password hashing with argon2id, off the event loop and bounded in memory.

argon2id is memory-hard: every hash fills ``memory_cost`` KiB, which is what makes guessing on
GPUs expensive, and what a login flood could turn into memory pressure on a small box. So the
hashing runs in worker threads (it is CPU-bound and would stall the loop for tens of
milliseconds) behind a :class:`trio.CapacityLimiter`: at most ``max_concurrent`` hashes, and so
``max_concurrent * memory_cost`` of memory, at any time.
"""

from __future__ import annotations

import logging
import secrets
from functools import cached_property
from typing import TYPE_CHECKING

import trio

if TYPE_CHECKING:
    from argon2 import PasswordHasher

__all__ = [
    "DEFAULT_MEMORY_COST",
    "DEFAULT_PARALLELISM",
    "DEFAULT_TIME_COST",
    "Passwords",
]

logger = logging.getLogger("vareon.auth")

# OWASP's minimum for argon2id (Password Storage Cheat Sheet): 19 MiB, 2 passes, 1 lane.
# Light enough for a Raspberry Pi, a few tens of milliseconds per hash.
DEFAULT_MEMORY_COST = 19 * 1024  # KiB
DEFAULT_TIME_COST = 2
DEFAULT_PARALLELISM = 1


class Passwords:
    """Hash and verify passwords with argon2id in worker threads.

    Args:
        time_cost: passes over the memory.
        memory_cost: KiB of memory per hash.
        parallelism: lanes per hash.
        max_concurrent: hashes computed at once; the rest wait their turn.
    """

    def __init__(
        self,
        *,
        time_cost: int = DEFAULT_TIME_COST,
        memory_cost: int = DEFAULT_MEMORY_COST,
        parallelism: int = DEFAULT_PARALLELISM,
        max_concurrent: int = 2,
    ) -> None:
        if max_concurrent < 1:
            raise ValueError(f"max_concurrent must be at least 1, not {max_concurrent!r}")
        self._parameters = (time_cost, memory_cost, parallelism)
        self._limiter = trio.CapacityLimiter(max_concurrent)
        self._dummy: str | None = None

    @cached_property
    def _hasher(self) -> PasswordHasher:
        # argon2 is imported at the first sign-in, not at boot (the edge box's idle memory).
        from argon2 import PasswordHasher, Type

        time_cost, memory_cost, parallelism = self._parameters
        return PasswordHasher(time_cost=time_cost, memory_cost=memory_cost, parallelism=parallelism, type=Type.ID)

    async def hash(self, password: str) -> str:
        """Return the argon2id PHC string of ``password`` (a fresh random salt each time)."""
        return await trio.to_thread.run_sync(self._hasher.hash, password, limiter=self._limiter)

    async def verify(self, password_hash: str, password: str) -> bool:
        """Return whether ``password`` matches ``password_hash``.

        A stored hash that is not a valid argon2 string is logged (without the hash) and never
        matches.
        """
        return await trio.to_thread.run_sync(
            self._verify, password_hash, password, limiter=self._limiter
        )

    async def verify_dummy(self, password: str) -> None:
        """Spend the time of one verification on nothing.

        For an unknown username: answering at once would tell an attacker which names exist.
        """
        if self._dummy is None:
            self._dummy = await self.hash(secrets.token_hex(16))
        await self.verify(self._dummy, password)

    def needs_rehash(self, password_hash: str) -> bool:
        """Return whether ``password_hash`` was made with other parameters than the current ones."""
        from argon2.exceptions import InvalidHashError

        try:
            return self._hasher.check_needs_rehash(password_hash)
        except (InvalidHashError, ValueError):
            return True

    def _verify(self, password_hash: str, password: str) -> bool:
        from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

        try:
            return self._hasher.verify(password_hash, password)
        except VerifyMismatchError:
            return False
        except (InvalidHashError, VerificationError) as exc:
            logger.error("a stored password hash cannot be checked: %s", type(exc).__name__)
            return False
