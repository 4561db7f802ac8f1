"""``UserView``: every account in memory, kept exact, so that checking a caller costs no query.

Each authenticated request needs its caller's account as it is now: an account disabled,
removed or given another role is treated so by the very next request (decision 0018). The
``users`` table is small (a handful of accounts on an edge box), so the view holds all of it.

How it stays exact:

- Every write of the auth service to ``users`` goes through :meth:`UserView.write`. The write's
  function runs in the store's writer thread and notes there what it made of each account it
  touched (:class:`UserNotes`). The writer runs write functions one at a time, in the order the
  database applies them, so a stamp taken there (a counter) orders the notes as the database
  ordered the writes. Once committed, a note replaces an account's entry only if the entry's
  stamp is older: writers that wake up in another order cannot put an older state back.
- :meth:`UserView.load` reads the whole table at boot, through the writer and stamped the same
  way.
- An id the view does not hold (an account another process created, such as ``vareon user
  create`` while the runtime runs) is read through the writer, stamped, and kept, found or
  absent; the id of a removed account stays known as absent.
- A write whose outcome is unknown (the store failed it: the commit may or may not have
  happened) makes the entries of the accounts it noted stale: the next lookup reads them again.

What it cannot see by itself: another process changing an account the view already holds. The
only such writer today is ``vareon user verify`` (it changes no access); :meth:`UserView.read`,
the account's next sign-in or refresh (both read it in the writer) or a restart brings it in.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

import trio
from sqlalchemy import select
from sqlalchemy.orm import Session

from vareon_runtime.auth.models import UserRecord
from vareon_runtime.auth.schemas import Principal, User
from vareon_runtime.errors import StoreError
from vareon_runtime.store import Store

__all__ = ["UserEntry", "UserNotes", "UserView"]

T = TypeVar("T")

# The columns a User shows, read with one Core statement (no ORM objects to build).
_USER_COLUMNS = tuple(getattr(UserRecord, name) for name in User.model_fields)
_ALL_USERS = select(*_USER_COLUMNS)


@dataclass(frozen=True, slots=True)
class UserEntry:
    """What the view holds for one user id.

    Attributes:
        user: the account, or None when there is none with this id.
        principal: the caller the account makes (its current name and role), or None unless
            the account exists and is active.
        stamp: the writer's order of the write or read this entry came from.
        stale: the last write's outcome is unknown; the next lookup reads the account again.
    """

    user: User | None
    principal: Principal | None
    stamp: int
    stale: bool = False


class UserNotes:
    """What one write function did to accounts, noted in the writer thread.

    A write function may run more than once (the store re-runs a batch without a failed
    write); the notes are cleared before each run, so they hold the run that committed.
    """

    __slots__ = ("changed", "stamp")

    def __init__(self) -> None:
        self.changed: dict[str, User | None] = {}
        self.stamp = 0

    def saw(self, user: User) -> None:
        """The account is now ``user`` (written, or read in the writer's transaction)."""
        self.changed[user.id] = user

    def removed(self, user_id: str) -> None:
        """There is no account ``user_id`` (deleted, or never was)."""
        self.changed[user_id] = None


class UserView:
    """Every account of the store in memory, exact for the writes made through it.

    Args:
        store: the running store; writes and misses go through its writer.
    """

    def __init__(self, store: Store) -> None:
        self._store = store
        self._entries: dict[str, UserEntry] = {}
        self._stamps = itertools.count(1)
        self._loaded = False
        self._load_lock = trio.Lock()

    def __len__(self) -> int:
        """The accounts the view holds (not counting ids known to be absent)."""
        return sum(1 for entry in self._entries.values() if entry.user is not None)

    @property
    def loaded(self) -> bool:
        """Whether :meth:`load` has read the table."""
        return self._loaded

    async def load(self) -> None:
        """Read every account (once; later calls return at once).

        Raises:
            StoreError: the store failed the read.
        """
        async with self._load_lock:
            if self._loaded:
                return

            def read_all(session: Session) -> tuple[int, list[User]]:
                rows = session.connection().execute(_ALL_USERS).mappings().all()
                return next(self._stamps), [User.model_validate(dict(row)) for row in rows]

            stamp, users = await self._store.write(read_all)
            found = {user.id for user in users}
            for user in users:
                self._apply(user.id, user, stamp)
            for user_id, entry in list(self._entries.items()):
                if user_id not in found and entry.user is not None:
                    self._apply(user_id, None, stamp)  # removed before the read
            self._loaded = True

    def known(self, user_id: str) -> UserEntry | None:
        """The entry of ``user_id`` if the view can answer without the store, else None."""
        entry = self._entries.get(user_id)
        if entry is None or entry.stale:
            return None
        return entry

    async def entry(self, user_id: str) -> UserEntry:
        """The entry of ``user_id``: from memory, or read through the writer and kept.

        Raises:
            StoreError: the account had to be read and the store failed the read.
        """
        entry = self._entries.get(user_id)
        if entry is not None and not entry.stale:
            return entry
        if not self._loaded:
            await self.load()
            entry = self._entries.get(user_id)
            if entry is not None and not entry.stale:
                return entry
        return await self.read(user_id)

    async def write(self, fn: Callable[[Session, UserNotes], T]) -> T:
        """Run ``fn(session, notes)`` as a store write; apply its notes once it committed.

        ``fn`` calls ``notes.saw(user)`` or ``notes.removed(user_id)`` for every account it
        changed (or read and wants kept). It follows :meth:`Store.write`'s rules: database work
        only, plain data out.

        Raises:
            Whatever :meth:`Store.write` raises; a ``StoreError`` also makes the noted accounts
            stale (the write may have committed).
        """
        notes = UserNotes()

        def run(session: Session) -> T:
            notes.changed.clear()
            result = fn(session, notes)
            notes.stamp = next(self._stamps)
            return result

        try:
            result = await self._store.write(run)
        except StoreError:
            self._forget(notes)
            raise
        # No checkpoint from the commit to here: no request sees the database ahead of the view.
        for user_id, user in notes.changed.items():
            self._apply(user_id, user, notes.stamp)
        return result

    async def read(self, user_id: str) -> UserEntry:
        """Read the account ``user_id`` through the writer, keep it and return its entry.

        Exact even for a change another process made (what :meth:`entry` cannot promise).

        Raises:
            StoreError: the store failed the read.
        """

        def read_one(session: Session) -> tuple[int, User | None]:
            row = (
                session.connection()
                .execute(_ALL_USERS.where(UserRecord.id == user_id))
                .mappings()
                .first()
            )
            return next(self._stamps), None if row is None else User.model_validate(dict(row))

        while True:
            stamp, user = await self._store.write(read_one)
            self._apply(user_id, user, stamp)
            # The entry holds whichever is newer: this read, or a write that landed meanwhile
            # (read again only if that write's outcome is unknown).
            entry = self._entries[user_id]
            if not entry.stale:
                return entry

    def _apply(self, user_id: str, user: User | None, stamp: int) -> None:
        current = self._entries.get(user_id)
        if current is not None and current.stamp > stamp:
            return  # the view already holds a newer state
        principal = None
        if user is not None and user.is_active:
            principal = Principal(user_id=user.id, username=user.username, role=user.role)
        self._entries[user_id] = UserEntry(user, principal, stamp)

    def _forget(self, notes: UserNotes) -> None:
        for user_id in notes.changed:
            current = self._entries.get(user_id)
            stamp = max(notes.stamp, current.stamp if current is not None else 0)
            self._entries[user_id] = UserEntry(None, None, stamp, stale=True)
