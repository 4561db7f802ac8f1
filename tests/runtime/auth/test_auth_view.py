"""The users view: every account in memory, exact for every write made through the service.

Updated for decision 0025 (token epochs): a disabled account's tokens used to be admitted again
once it was enabled (``test_a_disabled_account_is_refused_at_once_and_admitted_once_enabled``,
now ``..._and_signs_in_again_once_enabled``), and a new password used to let access tokens live
out their lifetime (``test_a_new_password_ends_every_sign_in``).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, TypeVar

import pytest
import trio
import trio.testing
from sqlalchemy import select
from sqlalchemy.orm import Session

from vareon_runtime.auth import (
    Auth,
    Passwords,
    Role,
    User,
    UserNotes,
    UserRecord,
    UserView,
)
from vareon_runtime.config import Config
from vareon_runtime.errors import (
    AuthenticationError,
    NotFoundError,
    StoreClosedError,
    StoreError,
)
from vareon_runtime.store import Store

T = TypeVar("T")

PASSWORD = "correct horse battery"
TIMEOUT = 30
GONE = "^account disabled or removed; sign in again$"
ENDED = r"^this sign-in has ended \(a new password, a lower role or a deactivation since\); sign in again$"


def cheap(auth: Auth) -> Auth:
    """The real hasher at a test cost: argon2 at its production cost would dominate the run."""
    auth.passwords = Passwords(time_cost=1, memory_cost=1024)
    return auth


@pytest.fixture
def service(config: Config, store: Store) -> Auth:
    return cheap(Auth(config, store, environ={}))


async def stored(store: Store, user_id: str) -> User | None:
    """The account as the database has it."""

    def fetch(session: Session) -> User | None:
        record = session.get(UserRecord, user_id)
        return None if record is None else User.model_validate(record)

    return await store.read(fetch)


async def stored_epoch(store: Store, user_id: str) -> int:
    """The account's token epoch as the database has it."""

    def fetch(session: Session) -> int:
        return session.scalars(select(UserRecord.token_epoch).where(UserRecord.id == user_id)).one()

    return await store.read(fetch)


# -- a change made through the service reaches the next check -----------------------------------


async def test_a_new_role_applies_to_the_token_already_held(service: Auth) -> None:
    with trio.fail_after(TIMEOUT):
        user = await service.create_user("alice", None, PASSWORD, Role.VIEWER)
        token = (await service.login("alice", PASSWORD, None)).access_token
        assert (await service.authenticate(token)).role is Role.VIEWER

        await service.update_user(user.id, role=Role.OPERATOR)
        assert (await service.authenticate(token)).role is Role.OPERATOR
        assert (await service.account(user.id)).role is Role.OPERATOR
    # The token itself still says what it said when issued.
    assert service.verify_access_token(token).role is Role.VIEWER


async def test_a_disabled_account_is_refused_at_once_and_signs_in_again_once_enabled(
    service: Auth,
) -> None:
    with trio.fail_after(TIMEOUT):
        user = await service.create_user("alice", None, PASSWORD, Role.VIEWER)
        pair = await service.login("alice", PASSWORD, None)

        disabled = await service.update_user(user.id, is_active=False)
        assert not disabled.is_active
        with pytest.raises(AuthenticationError, match=GONE):
            await service.authenticate(pair.access_token)
        assert service.authenticate_now(pair.access_token) is None
        with pytest.raises(AuthenticationError, match=GONE):
            await service.refresh(pair.refresh_token)

        # Enabled again, the account signs in again; what it held before stays ended.
        await service.update_user(user.id, is_active=True)
        with pytest.raises(AuthenticationError, match=ENDED):
            await service.authenticate(pair.access_token)
        assert service.authenticate_now(pair.access_token) is None
        with pytest.raises(AuthenticationError, match=ENDED):
            await service.refresh(pair.refresh_token)
        again = await service.login("alice", PASSWORD, None)
        assert (await service.authenticate(again.access_token)).username == "alice"


async def test_a_removed_account_is_refused_at_once(service: Auth, store: Store) -> None:
    with trio.fail_after(TIMEOUT):
        user = await service.create_user("alice", None, PASSWORD, Role.VIEWER)
        pair = await service.login("alice", PASSWORD, None)
        await service.delete_user(user.id)

        with pytest.raises(AuthenticationError, match=GONE):
            await service.authenticate(pair.access_token)
        with pytest.raises(NotFoundError):
            await service.account(user.id)
        with pytest.raises(NotFoundError):
            await service.get_user(user.id)
        # Its refresh tokens went with it.
        with pytest.raises(AuthenticationError, match="^invalid token$"):
            await service.refresh(pair.refresh_token)
        assert await stored(store, user.id) is None
        with pytest.raises(NotFoundError, match="no user with id"):
            await service.delete_user(user.id)


async def test_a_new_password_ends_every_sign_in(service: Auth) -> None:
    with trio.fail_after(TIMEOUT):
        user = await service.create_user("alice", None, PASSWORD, Role.VIEWER)
        first = await service.login("alice", PASSWORD, None)
        await service.set_password(user.id, "a brand new passphrase")
        with pytest.raises(AuthenticationError, match=ENDED):
            await service.refresh(first.refresh_token)
        with pytest.raises(AuthenticationError, match=ENDED):
            await service.authenticate(first.access_token)
        with pytest.raises(AuthenticationError, match="incorrect username or password"):
            await service.login("alice", PASSWORD, None)
        again = await service.login("alice", "a brand new passphrase", None)
        assert (await service.authenticate(again.access_token)).user_id == user.id


async def test_registration_and_verification_show_in_the_view(service: Auth) -> None:
    with trio.fail_after(TIMEOUT):
        user = await service.register("alice", "alice@example.com", PASSWORD)
        assert (await service.account(user.id)).email_verified is False
        await service.mark_verified("alice")
        assert (await service.account(user.id)).email_verified is True


async def test_updates_are_checked_like_the_rest(service: Auth) -> None:
    with trio.fail_after(TIMEOUT):
        user = await service.create_user("alice", None, PASSWORD, Role.VIEWER)
        with pytest.raises(NotFoundError, match="no user with id 'nobody'"):
            await service.update_user("nobody", role=Role.ADMIN)
        with pytest.raises(Exception, match="role must be one of admin, operator, viewer, not 'root'"):
            await service.update_user(user.id, role="root")  # type: ignore[arg-type]
        with pytest.raises(Exception, match="password must be at least 8 characters, not 5"):
            await service.set_password(user.id, "short")


# -- loaded at boot, then no query --------------------------------------------------------------


async def test_the_view_is_loaded_at_boot_and_then_needs_no_store(
    config: Config, store: Store
) -> None:
    with trio.fail_after(TIMEOUT):
        earlier = cheap(Auth(config, store, environ={}))  # a previous run of the runtime
        alice = await earlier.create_user("alice", None, PASSWORD, Role.OPERATOR)
        bob = await earlier.create_user("bob", None, PASSWORD, Role.VIEWER)
        await earlier.update_user(bob.id, is_active=False)
        alice_token = (await earlier.login("alice", PASSWORD, None)).access_token
        bob_token = earlier.tokens.issue_access(bob.id, "bob", Role.VIEWER)

        booted = cheap(Auth(config, store, environ={}))
        await booted.ensure_bootstrap_admin()  # what the runtime calls at boot
        assert booted.users.loaded and len(booted.users) == 2

        await store.close()
        # Admitting a caller reads nothing: the store is closed and the answers still come.
        principal = await booted.authenticate(alice_token)
        assert (principal.username, principal.role) == ("alice", Role.OPERATOR)
        assert (await booted.account(alice.id)).username == "alice"
        with pytest.raises(AuthenticationError, match=GONE):
            await booted.authenticate(bob_token)
        with pytest.raises(StoreClosedError):
            await booted.get_user(alice.id)  # the exact read goes to the database


async def test_an_account_another_process_made_is_read_when_first_seen(
    config: Config, store: Store
) -> None:
    with trio.fail_after(TIMEOUT):
        runtime = cheap(Auth(config, store, environ={}))
        await runtime.ensure_bootstrap_admin()
        other = cheap(Auth(config, store, environ={}))  # say `vareon user create`

        carol = await other.create_user("carol", None, PASSWORD, Role.VIEWER)
        token = (await other.login("carol", PASSWORD, None)).access_token
        assert runtime.users.known(carol.id) is None
        assert runtime.authenticate_now(token) is None  # cannot tell without the store
        assert (await runtime.authenticate(token)).username == "carol"
        assert runtime.authenticate_now(token) is not None  # kept

        dave = await other.create_user("dave", None, PASSWORD, Role.VIEWER)
        gone = (await other.login("dave", PASSWORD, None)).access_token
        await other.delete_user(dave.id)
        with pytest.raises(AuthenticationError, match=GONE):
            await runtime.authenticate(gone)
        entry = runtime.users.known(dave.id)
        assert entry is not None and entry.user is None  # known to be absent: no second read


async def test_a_change_another_process_made_is_seen_by_get_user_and_sign_in(
    config: Config, store: Store
) -> None:
    with trio.fail_after(TIMEOUT):
        runtime = cheap(Auth(config, store, environ={}))
        user = await runtime.register("alice", "alice@example.com", PASSWORD)
        other = cheap(Auth(config, store, environ={}))  # say `vareon user verify`
        await other.mark_verified("alice")

        assert (await runtime.get_user(user.id)).email_verified  # read, and kept
        assert (await runtime.account(user.id)).email_verified

        await other.update_user(user.id, role=Role.OPERATOR)
        token = (await runtime.login("alice", PASSWORD, None)).access_token
        assert (await runtime.authenticate(token)).role is Role.OPERATOR


async def test_concurrent_writes_leave_the_view_as_the_database(
    service: Auth, store: Store
) -> None:
    with trio.fail_after(TIMEOUT):
        # Another admin, so that no change below is refused as removing the last one.
        await service.create_user("root", None, PASSWORD, Role.ADMIN)
        user = await service.create_user("alice", None, PASSWORD, Role.VIEWER)
        changes: list[dict[str, Any]] = [
            {"role": role, "is_active": active}
            for role in Role
            for active in (True, False)
        ] * 5
        async with trio.open_nursery() as nursery:
            for change in changes:
                nursery.start_soon(lambda change=change: service.update_user(user.id, **change))
        assert await service.account(user.id) == await stored(store, user.id)
        entry = service.users.known(user.id)
        assert entry is not None and entry.epoch == await stored_epoch(store, user.id) > 0


# -- the ordering rule, on a store that answers out of order ------------------------------------


class ReorderingStore:
    """A store that runs writes in the order they come and holds their answers until told.

    Writers of one group commit may wake in any order (trio shuffles its run queue); this store
    makes the worst order happen on purpose.
    """

    def __init__(self) -> None:
        self.gates: list[trio.Event] = []
        self.fail = False

    async def write(self, fn: Callable[[Any], T]) -> T:
        result = fn(None)  # the session is not used by the functions below
        gate = trio.Event()
        self.gates.append(gate)
        await gate.wait()
        if self.fail:
            raise StoreError("the commit failed")
        return result


def version(role: Role, *, active: bool = True) -> User:
    return User(
        id="u1",
        username="alice",
        email=None,
        role=role,
        email_verified=True,
        is_active=active,
        created_at=datetime(2026, 1, 1, tzinfo=UTC),
    )


async def test_an_older_write_answered_last_does_not_win() -> None:
    store = ReorderingStore()
    view = UserView(store)  # type: ignore[arg-type]
    ran: list[User] = []

    def saw(user: User) -> Callable[[Session, UserNotes], None]:
        def fn(session: Session, notes: UserNotes) -> None:
            ran.append(user)
            notes.saw(user, 0)

        return fn

    with trio.fail_after(TIMEOUT):
        async with trio.open_nursery() as nursery:
            for role in (Role.VIEWER, Role.OPERATOR, Role.ADMIN):
                nursery.start_soon(view.write, saw(version(role)))
            await trio.testing.wait_all_tasks_blocked()
            for gate in reversed(store.gates):  # the last write is answered first
                gate.set()
                await trio.testing.wait_all_tasks_blocked()
    entry = view.known("u1")
    assert entry is not None and entry.user == ran[-1]
    assert entry.principal is not None and entry.principal.role is ran[-1].role


async def test_a_write_the_store_failed_leaves_the_account_to_be_read_again() -> None:
    store = ReorderingStore()
    view = UserView(store)  # type: ignore[arg-type]

    def fn(session: Session, notes: UserNotes) -> None:
        notes.saw(version(Role.ADMIN), 0)

    with trio.fail_after(TIMEOUT):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(view.write, lambda s, notes: notes.saw(version(Role.VIEWER), 0))
            await trio.testing.wait_all_tasks_blocked()
            store.gates[-1].set()
        assert view.known("u1") is not None

        store.fail = True

        async def failing() -> None:
            with pytest.raises(StoreError):
                await view.write(fn)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(failing)
            await trio.testing.wait_all_tasks_blocked()
            store.gates[-1].set()
    # Did the commit happen? The view cannot tell, so it no longer answers for the account.
    assert view.known("u1") is None


async def test_the_view_reads_the_table_once(config: Config, store: Store) -> None:
    with trio.fail_after(TIMEOUT):
        auth = cheap(Auth(config, store, environ={}))
        await auth.create_user("alice", None, PASSWORD, Role.VIEWER)
        await auth.users.load()
        await auth.create_user("bob", None, PASSWORD, Role.VIEWER)
        await auth.users.load()  # a second call reads nothing and forgets nothing
        assert len(auth.users) == 2

        def names(session: Session) -> list[str]:
            return list(session.scalars(select(UserRecord.username)))

        assert sorted(await store.read(names)) == ["alice", "bob"]
