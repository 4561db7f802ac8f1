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

Each entry also holds the account's token epoch (decision 0025): a token issued under another
epoch is refused. What holds a sign-in open (a WebSocket) registers a :class:`SignInWatch`; the
entry that ends the sign-in (the account removed, disabled, or at another epoch) ends the watch
in the same step that applies it, so no request and no open stream outlives the change.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Callable
from dataclasses import dataclass
from types import TracebackType
from typing import Self, TypeVar

import trio
from sqlalchemy import select
from sqlalchemy.orm import Session

from vareon_runtime.auth.models import UserRecord
from vareon_runtime.auth.schemas import Principal, User
from vareon_runtime.errors import StoreError
from vareon_runtime.store import Store

__all__ = ["SignInWatch", "UserEntry", "UserNotes", "UserView", "sign_in_ended"]

T = TypeVar("T")

logger = logging.getLogger("vareon.auth")

# The columns a User shows and the token epoch, read with one Core statement (no ORM objects).
_USER_COLUMNS = tuple(getattr(UserRecord, name) for name in User.model_fields)
_ALL_USERS = select(*_USER_COLUMNS, UserRecord.token_epoch)


def _user_of(row: dict[str, object]) -> tuple[User, int]:
    epoch = row.pop("token_epoch")
    assert isinstance(epoch, int), "token_epoch is an integer column"
    return User.model_validate(row), epoch


@dataclass(frozen=True, slots=True)
class UserEntry:
    """What the view holds for one user id.

    Attributes:
        user: the account, or None when there is none with this id.
        principal: the caller the account makes (its current name and role), or None unless
            the account exists and is active.
        stamp: the writer's order of the write or read this entry came from.
        stale: the last write's outcome is unknown; the next lookup reads the account again.
        epoch: the account's token epoch: only tokens issued under it are honoured.
    """

    user: User | None
    principal: Principal | None
    stamp: int
    stale: bool = False
    epoch: int = 0


def sign_in_ended(entry: UserEntry | None, epoch: int) -> str | None:
    """Why a sign-in under ``epoch`` no longer holds with the account as ``entry`` has it.

    Returns:
        None while it holds (or while the view cannot tell: no entry, or a stale one); else
        ``"account removed"``, ``"account disabled"`` or, at another epoch, ``"signed out (a new
        password or a lower role)"``.
    """
    if entry is None or entry.stale:
        return None
    if entry.user is None:
        return "account removed"
    if not entry.user.is_active:
        return "account disabled"
    if entry.epoch != epoch:
        return "signed out (a new password or a lower role)"
    return None


class SignInWatch:
    """An open connection's hold on one sign-in, ended when the sign-in ends.

    Made by :meth:`UserView.watch`; use it as a context manager, so it is dropped when the
    connection ends. ``on_end`` is called once, synchronously, in the task that applied the
    change (it must not block: cancelling a scope is the intended use).

    Attributes:
        reason: None while the sign-in holds; then what ended it (:func:`sign_in_ended`).
    """

    __slots__ = ("_on_end", "_view", "epoch", "reason", "user_id")

    def __init__(
        self, view: UserView, user_id: str, epoch: int, on_end: Callable[[], None]
    ) -> None:
        self._view = view
        self._on_end = on_end
        self.user_id = user_id
        self.epoch = epoch
        self.reason: str | None = None

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._view._unwatch(self)

    def _end(self, reason: str) -> None:
        if self.reason is not None:
            return
        self.reason = reason
        self._view._unwatch(self)
        try:
            self._on_end()
        except Exception:  # a watcher's bug must not stop the view from applying a write
            logger.exception("a sign-in watch of user %s failed to end", self.user_id)


class UserNotes:
    """What one write function did to accounts, noted in the writer thread.

    A write function may run more than once (the store re-runs a batch without a failed
    write); the notes are cleared before each run, so they hold the run that committed.
    """

    __slots__ = ("changed", "stamp")

    def __init__(self) -> None:
        self.changed: dict[str, tuple[User, int] | None] = {}
        self.stamp = 0

    def saw(self, user: User, epoch: int) -> None:
        """The account is now ``user`` at token ``epoch`` (written, or read in the writer's
        transaction)."""
        self.changed[user.id] = (user, epoch)

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
        self._watches: dict[str, set[SignInWatch]] = {}

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

            def read_all(session: Session) -> tuple[int, list[tuple[User, int]]]:
                rows = session.connection().execute(_ALL_USERS).mappings().all()
                return next(self._stamps), [_user_of(dict(row)) for row in rows]

            stamp, users = await self._store.write(read_all)
            found = {user.id for user, _ in users}
            for user, epoch in users:
                self._apply(user.id, (user, epoch), stamp)
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
        # No checkpoint from the commit to here: no request sees the database ahead of the view,
        # and a sign-in the write ended is ended before the writer's task goes on.
        for user_id, seen in notes.changed.items():
            self._apply(user_id, seen, notes.stamp)
        return result

    def watch(self, principal: Principal, on_end: Callable[[], None]) -> SignInWatch:
        """Hold the sign-in ``principal`` was admitted under; call ``on_end`` once it ends.

        It ends when the account is removed, disabled, or moves to another token epoch; if that
        happened already, ``on_end`` is called before this returns.
        """
        watch = SignInWatch(self, principal.user_id, principal.epoch, on_end)
        self._watches.setdefault(watch.user_id, set()).add(watch)
        reason = sign_in_ended(self._entries.get(watch.user_id), watch.epoch)
        if reason is not None:
            watch._end(reason)
        return watch

    def watching(self, user_id: str) -> int:
        """How many sign-in watches of ``user_id`` are held (for tests and status)."""
        return len(self._watches.get(user_id, ()))

    def _unwatch(self, watch: SignInWatch) -> None:
        watches = self._watches.get(watch.user_id)
        if watches is not None:
            watches.discard(watch)
            if not watches:
                del self._watches[watch.user_id]

    async def read(self, user_id: str) -> UserEntry:
        """Read the account ``user_id`` through the writer, keep it and return its entry.

        Exact even for a change another process made (what :meth:`entry` cannot promise).

        Raises:
            StoreError: the store failed the read.
        """

        def read_one(session: Session) -> tuple[int, tuple[User, int] | None]:
            row = (
                session.connection()
                .execute(_ALL_USERS.where(UserRecord.id == user_id))
                .mappings()
                .first()
            )
            return next(self._stamps), None if row is None else _user_of(dict(row))

        while True:
            stamp, seen = await self._store.write(read_one)
            self._apply(user_id, seen, stamp)
            # The entry holds whichever is newer: this read, or a write that landed meanwhile
            # (read again only if that write's outcome is unknown).
            entry = self._entries[user_id]
            if not entry.stale:
                return entry

    def _apply(self, user_id: str, seen: tuple[User, int] | None, stamp: int) -> None:
        current = self._entries.get(user_id)
        if current is not None and current.stamp > stamp:
            return  # the view already holds a newer state
        user, epoch = (None, 0) if seen is None else seen
        principal = None
        if user is not None and user.is_active:
            principal = Principal(
                user_id=user.id, username=user.username, role=user.role, epoch=epoch
            )
        entry = self._entries[user_id] = UserEntry(user, principal, stamp, epoch=epoch)
        watches = self._watches.get(user_id)
        if watches:
            for watch in list(watches):
                reason = sign_in_ended(entry, watch.epoch)
                if reason is not None:
                    watch._end(reason)

    def _forget(self, notes: UserNotes) -> None:
        for user_id in notes.changed:
            current = self._entries.get(user_id)
            stamp = max(notes.stamp, current.stamp if current is not None else 0)
            self._entries[user_id] = UserEntry(None, None, stamp, stale=True)
