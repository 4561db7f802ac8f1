"""User administration in the auth service: token epochs end sign-ins at once, the last admin
stays, one's own change of password, the list of accounts, sign-in watches (decision 0025)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import trio
from sqlalchemy import select, text
from sqlalchemy.orm import Session

from vareon_runtime.auth import Auth, LoginThrottle, Passwords, Role, UserRecord
from vareon_runtime.config import Config
from vareon_runtime.errors import (
    AuthenticationError,
    ConflictError,
    InvalidRequestError,
    NotFoundError,
    TooManyRequestsError,
)
from vareon_runtime.store import Store

PASSWORD = "correct horse battery"
NEW_PASSWORD = "a brand new passphrase"
TIMEOUT = 30
GONE = "^account disabled or removed; sign in again$"
ENDED = r"^this sign-in has ended \(a new password, a lower role or a deactivation since\); sign in again$"


@pytest.fixture
def service(config: Config, store: Store) -> Auth:
    auth = Auth(config, store, environ={})
    auth.passwords = Passwords(time_cost=1, memory_cost=1024)
    auth.throttle = LoginThrottle(3, 300, base_delay=0.001, max_delay=0.002)
    return auth


async def epoch_of(store: Store, user_id: str) -> int:
    def fetch(session: Session) -> int:
        return session.scalars(select(UserRecord.token_epoch).where(UserRecord.id == user_id)).one()

    return await store.read(fetch)


async def ended(service: Auth, access: str, refresh: str) -> None:
    """Both tokens of a sign-in are refused as ended, from memory and through the view."""
    assert service.authenticate_now(access) is None
    with pytest.raises(AuthenticationError, match=ENDED):
        await service.authenticate(access)
    with pytest.raises(AuthenticationError, match=ENDED):
        await service.refresh(refresh)


# -- a lower role, a deactivation, a new password end every sign-in at once ---------------------


async def test_a_lower_role_ends_every_sign_in_at_once(service: Auth, store: Store) -> None:
    with trio.fail_after(TIMEOUT):
        await service.create_user("root", None, PASSWORD, Role.ADMIN)
        user = await service.create_user("alice", None, PASSWORD, Role.ADMIN)
        first = await service.login("alice", PASSWORD, "10.0.0.1")
        second = await service.login("alice", PASSWORD, "10.0.0.2")
        await service.update_user(user.id, role=Role.OPERATOR)
        for pair in (first, second):
            await ended(service, pair.access_token, pair.refresh_token)
        assert await epoch_of(store, user.id) == 1
        # A new sign-in carries the new role.
        again = await service.login("alice", PASSWORD, "10.0.0.1")
        assert (await service.authenticate(again.access_token)).role is Role.OPERATOR


async def test_a_higher_role_keeps_the_sign_ins(service: Auth, store: Store) -> None:
    with trio.fail_after(TIMEOUT):
        user = await service.create_user("alice", None, PASSWORD, Role.VIEWER)
        pair = await service.login("alice", PASSWORD, None)
        await service.update_user(user.id, role=Role.OPERATOR)
        assert (await service.authenticate(pair.access_token)).role is Role.OPERATOR
        renewed = await service.refresh(pair.refresh_token)
        assert (await service.authenticate(renewed.access_token)).role is Role.OPERATOR
        # Changing nothing that lowers access (verified mail, the same role) ends nothing.
        await service.update_user(user.id, role=Role.OPERATOR, is_active=True)
        assert (await service.authenticate(renewed.access_token)).username == "alice"
        assert await epoch_of(store, user.id) == 0


async def test_a_deactivation_ends_every_sign_in_for_good(service: Auth) -> None:
    with trio.fail_after(TIMEOUT):
        user = await service.create_user("alice", None, PASSWORD, Role.VIEWER)
        pair = await service.login("alice", PASSWORD, None)
        await service.update_user(user.id, is_active=False)
        with pytest.raises(AuthenticationError, match=GONE):
            await service.authenticate(pair.access_token)
        await service.update_user(user.id, is_active=True)
        await ended(service, pair.access_token, pair.refresh_token)


async def test_a_new_password_ends_access_tokens_at_once(service: Auth) -> None:
    with trio.fail_after(TIMEOUT):
        user = await service.create_user("alice", None, PASSWORD, Role.VIEWER)
        pair = await service.login("alice", PASSWORD, None)
        await service.set_password(user.id, NEW_PASSWORD)
        await ended(service, pair.access_token, pair.refresh_token)


async def test_the_epoch_is_stored_so_a_restart_keeps_sign_ins_ended(
    config: Config, store: Store
) -> None:
    with trio.fail_after(TIMEOUT):
        before = Auth(config, store, environ={})
        before.passwords = Passwords(time_cost=1, memory_cost=1024)
        user = await before.create_user("alice", None, PASSWORD, Role.VIEWER)
        old = await before.login("alice", PASSWORD, None)
        await before.set_password(user.id, NEW_PASSWORD)
        kept = await before.login("alice", NEW_PASSWORD, None)

        after = Auth(config, store, environ={})  # the runtime started again
        await after.ensure_bootstrap_admin()
        await ended(after, old.access_token, old.refresh_token)
        assert (await after.authenticate(kept.access_token)).username == "alice"


async def test_tokens_issued_before_epochs_existed_are_epoch_0(service: Auth) -> None:
    with trio.fail_after(TIMEOUT):
        user = await service.create_user("alice", None, PASSWORD, Role.VIEWER)
        # What the previous release signed: no `ep` claim.
        legacy = service.tokens._encode(
            {"sub": user.id, "name": "alice", "role": "viewer"}, "access", 900, None
        )
        assert (await service.authenticate(legacy)).username == "alice"
        await service.set_password(user.id, NEW_PASSWORD)
        with pytest.raises(AuthenticationError, match=ENDED):
            await service.authenticate(legacy)


# -- the last admin -------------------------------------------------------------------------------


async def test_the_last_active_admin_cannot_be_demoted_deactivated_or_removed(
    service: Auth,
) -> None:
    with trio.fail_after(TIMEOUT):
        root = await service.create_user("root", None, PASSWORD, Role.ADMIN)
        pair = await service.login("root", PASSWORD, None)
        refusals = {
            "made viewer": service.update_user(root.id, role=Role.VIEWER),
            "deactivated": service.update_user(root.id, is_active=False),
            "removed": service.delete_user(root.id),
        }
        for doing, change in refusals.items():
            with pytest.raises(ConflictError) as info:
                await change
            assert info.value.status == 409
            assert info.value.message == (
                f"'root' is the last active admin and cannot be {doing}; make another user an"
                " admin first"
            )
        # Nothing changed, nothing ended.
        assert (await service.authenticate(pair.access_token)).role is Role.ADMIN

        # An inactive admin does not count; an active one does.
        spare = await service.create_user("spare", None, PASSWORD, Role.ADMIN)
        await service.update_user(spare.id, is_active=False)
        with pytest.raises(ConflictError):
            await service.update_user(root.id, role=Role.OPERATOR)
        await service.update_user(spare.id, is_active=True)
        demoted = await service.update_user(root.id, role=Role.OPERATOR)
        assert demoted.role is Role.OPERATOR
        with pytest.raises(ConflictError, match="'spare' is the last active admin"):
            await service.update_user(spare.id, is_active=False)


async def test_two_admins_demoting_each_other_at_once_leave_one(service: Auth) -> None:
    with trio.fail_after(TIMEOUT):
        ids = [(await service.create_user(f"admin{n}", None, PASSWORD, Role.ADMIN)).id for n in range(2)]
        outcomes: list[str] = []

        async def demote(user_id: str) -> None:
            try:
                await service.update_user(user_id, role=Role.VIEWER)
                outcomes.append("demoted")
            except ConflictError:
                outcomes.append("409")

        async with trio.open_nursery() as nursery:
            for user_id in ids:
                nursery.start_soon(demote, user_id)
        assert sorted(outcomes) == ["409", "demoted"]
        users, total = await service.list_users(role=Role.ADMIN)
        assert total == 1 and len(users) == 1


# -- one's own change of password -----------------------------------------------------------------


async def test_changing_ones_password_ends_the_other_sign_ins_and_keeps_the_callers(
    service: Auth,
) -> None:
    with trio.fail_after(TIMEOUT):
        user = await service.create_user("alice", None, PASSWORD, Role.VIEWER)
        mine = await service.login("alice", PASSWORD, "10.0.0.1")
        other = await service.login("alice", PASSWORD, "10.0.0.2")
        fresh = await service.change_password(user.id, PASSWORD, NEW_PASSWORD, "10.0.0.1")
        assert fresh.client_token is not None
        for pair in (mine, other):
            await ended(service, pair.access_token, pair.refresh_token)
        assert (await service.authenticate(fresh.access_token)).username == "alice"
        renewed = await service.refresh(fresh.refresh_token)
        assert (await service.authenticate(renewed.access_token)).username == "alice"
        with pytest.raises(AuthenticationError, match="incorrect username or password"):
            await service.login("alice", PASSWORD, "10.0.0.1")
        await service.login("alice", NEW_PASSWORD, "10.0.0.1")


async def test_a_password_change_needs_the_current_password_and_a_new_one(service: Auth) -> None:
    with trio.fail_after(TIMEOUT):
        user = await service.create_user("alice", None, PASSWORD, Role.VIEWER)
        pair = await service.login("alice", PASSWORD, None)
        cases = [
            ("wrong password", NEW_PASSWORD, "current_password is not this account's password", "current_password"),
            (PASSWORD, PASSWORD, "new_password is the current password; choose another", "new_password"),
            (PASSWORD, "short", "password must be at least 8 characters, not 5", "password"),
        ]
        for current, new, message, field in cases:
            with pytest.raises(InvalidRequestError) as info:
                await service.change_password(user.id, current, new, None)
            assert (info.value.status, info.value.message, info.value.details) == (
                422,
                message,
                {"field": field},
            )
        # Nothing changed: the sign-in holds, the password is the old one.
        assert (await service.authenticate(pair.access_token)).username == "alice"
        await service.login("alice", PASSWORD, None)


async def test_wrong_current_passwords_are_throttled_like_sign_ins(service: Auth) -> None:
    # A stolen access token must not be a way to guess the password.
    with trio.fail_after(TIMEOUT):
        user = await service.create_user("alice", None, PASSWORD, Role.VIEWER)
        for _ in range(3):
            with pytest.raises(InvalidRequestError):
                await service.change_password(user.id, "guess", NEW_PASSWORD, "203.0.113.5")
        with pytest.raises(TooManyRequestsError, match="for this address"):
            await service.change_password(user.id, PASSWORD, NEW_PASSWORD, "203.0.113.5")
        assert service.throttle.check(["user:alice"]) > 0
        # The owner elsewhere is not refused.
        await service.change_password(user.id, PASSWORD, NEW_PASSWORD, "198.51.100.1")


async def test_a_disabled_account_cannot_change_its_password(service: Auth) -> None:
    with trio.fail_after(TIMEOUT):
        await service.create_user("root", None, PASSWORD, Role.ADMIN)
        user = await service.create_user("alice", None, PASSWORD, Role.VIEWER)
        await service.update_user(user.id, is_active=False)
        with pytest.raises(AuthenticationError, match=GONE):
            await service.change_password(user.id, PASSWORD, NEW_PASSWORD, None)
        with pytest.raises(AuthenticationError, match=GONE):
            await service.change_password("no-such-id", PASSWORD, NEW_PASSWORD, None)


# -- the list ----------------------------------------------------------------------------------------


async def test_the_list_is_paged_oldest_first_and_filtered(service: Auth) -> None:
    with trio.fail_after(TIMEOUT):
        made = []
        for n, role in enumerate([Role.ADMIN, Role.VIEWER, Role.OPERATOR, Role.VIEWER, Role.VIEWER]):
            made.append(await service.create_user(f"user{n}", None, PASSWORD, role))
        await service.update_user(made[4].id, is_active=False)

        users, total = await service.list_users(limit=2, offset=1)
        assert total == 5 and [user.username for user in users] == ["user1", "user2"]
        users, total = await service.list_users(role=Role.VIEWER)
        assert total == 3 and [user.username for user in users] == ["user1", "user3", "user4"]
        users, total = await service.list_users(role=Role.VIEWER, is_active=True)
        assert total == 2 and [user.username for user in users] == ["user1", "user3"]
        users, total = await service.list_users(offset=10)
        assert (users, total) == ([], 5)
        assert all("password" not in str(user.model_dump()) for user in users)


# -- sign-in watches (what closes an open WebSocket) ----------------------------------------------


async def test_a_watch_ends_when_its_sign_in_ends_and_only_then(service: Auth, store: Store) -> None:
    with trio.fail_after(TIMEOUT):
        await service.create_user("root", None, PASSWORD, Role.ADMIN)
        users = {
            name: await service.create_user(name, None, PASSWORD, Role.OPERATOR)
            for name in ("demoted", "disabled", "new-password", "removed", "promoted", "bystander")
        }
        ends: list[str] = []
        watches = {}
        for name, user in users.items():
            principal = await service.authenticate((await service.login(name, PASSWORD, None)).access_token)
            watches[name] = service.watch(principal, lambda name=name: ends.append(name))
            assert service.users.watching(user.id) == 1

        await service.update_user(users["promoted"].id, role=Role.ADMIN)
        await service.mark_verified("bystander")
        assert ends == []
        await service.update_user(users["demoted"].id, role=Role.VIEWER)
        assert ends == ["demoted"]  # at once: before the service call returned
        await service.update_user(users["disabled"].id, is_active=False)
        await service.set_password(users["new-password"].id, NEW_PASSWORD)
        await service.delete_user(users["removed"].id)
        assert ends == ["demoted", "disabled", "new-password", "removed"]
        assert {name: watch.reason for name, watch in watches.items()} == {
            "demoted": "signed out (a new password or a lower role)",
            "disabled": "account disabled",
            "new-password": "signed out (a new password or a lower role)",
            "removed": "account removed",
            "promoted": None,
            "bystander": None,
        }
        # An ended watch is dropped; the others go when their connection does.
        assert service.users.watching(users["demoted"].id) == 0
        for watch in watches.values():
            with watch:
                pass
        assert all(service.users.watching(user.id) == 0 for user in users.values())


async def test_a_watch_of_a_sign_in_already_ended_ends_at_once(service: Auth) -> None:
    with trio.fail_after(TIMEOUT):
        user = await service.create_user("alice", None, PASSWORD, Role.VIEWER)
        principal = await service.authenticate((await service.login("alice", PASSWORD, None)).access_token)
        await service.set_password(user.id, NEW_PASSWORD)
        ends: list[int] = []
        with service.watch(principal, lambda: ends.append(1)) as watch:
            assert ends == [1] and watch.reason is not None
        assert service.users.watching(user.id) == 0


async def test_a_failing_watch_callback_is_logged_and_the_change_stands(
    service: Auth, log_records: Any
) -> None:
    with trio.fail_after(TIMEOUT):
        user = await service.create_user("alice", None, PASSWORD, Role.OPERATOR)
        principal = await service.authenticate((await service.login("alice", PASSWORD, None)).access_token)

        def broken() -> None:
            raise RuntimeError("a bug in the watcher")

        with service.watch(principal, broken):
            changed = await service.update_user(user.id, role=Role.VIEWER)
        assert changed.role is Role.VIEWER
        assert (await service.account(user.id)).role is Role.VIEWER
    assert any("failed to end" in message for message in log_records.messages(logging.ERROR))


# -- the log ---------------------------------------------------------------------------------------


async def test_admin_actions_are_logged_with_escaped_names_and_no_secret(
    service: Auth, log_records: Any
) -> None:
    with trio.fail_after(TIMEOUT):
        await service.create_user("root", None, PASSWORD, Role.ADMIN)
        user = await service.create_user("alice", None, PASSWORD, Role.OPERATOR)
        pair = await service.login("alice", PASSWORD, None)
        await service.update_user(user.id, role=Role.VIEWER, by="root\nFAKE admin line")
        await service.update_user(user.id, is_active=False, by="root")
        await service.update_user(user.id, is_active=True, by="root")
        fresh = await service.login("alice", PASSWORD, None)
        await service.change_password(user.id, PASSWORD, NEW_PASSWORD, None)
        # A name the client sent is escaped in the throttle's log line too.
        for _ in range(3):
            with pytest.raises(AuthenticationError):
                await service.login("mallory\nFAKE", "guess", "10.9.9.9")
        await service.delete_user(user.id, by="root")
    messages = log_records.messages()
    assert (
        f"the admin 'root\\nFAKE admin line' changed the user 'alice' (id {user.id}): role operator"
        " -> viewer, active True -> True; its sign-ins are ended"
    ) in messages
    assert (
        f"the admin 'root' changed the user 'alice' (id {user.id}): role viewer -> viewer,"
        " active False -> True"
    ) in messages
    assert f"the admin 'root' removed the user 'alice' (id {user.id})" in messages
    assert "'alice' changed its password; its other sign-ins are ended" in messages
    assert any("pair:'10.9.9.9|mallory\\nFAKE'" in message for message in messages)
    logged = "\n".join(messages)
    assert "FAKE admin line'" in logged and "\nFAKE" not in logged
    for secret in (PASSWORD, NEW_PASSWORD, pair.access_token, pair.refresh_token, fresh.client_token or "?"):
        assert secret not in logged


# -- the migration -----------------------------------------------------------------------------------


async def test_the_migration_adds_the_epoch_to_existing_accounts(
    database_url: str, make_config: Callable[..., Config]
) -> None:
    """A database made by the previous release (the kernel at 0003) gets `token_epoch` = 0, and
    its users' tokens (no `ep` claim) keep working."""
    from alembic import command
    from sqlalchemy import create_engine

    from vareon_runtime.store.migrate import alembic_config

    if database_url.startswith("sqlite:///"):
        Path(database_url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(database_url)
    try:
        with engine.begin() as connection:
            command.upgrade(alembic_config(connection=connection), "0003_telemetry")
            connection.execute(
                text(
                    "INSERT INTO users (id, username, email, password_hash, role, email_verified,"
                    " is_active, created_at, updated_at) VALUES ('00000000-0000-0000-0000-000000000001',"
                    " 'old', NULL, 'x', 'admin', true, true, CURRENT_TIMESTAMP, CURRENT_TIMESTAMP)"
                )
            )
    finally:
        engine.dispose()
    config = make_config()
    with trio.fail_after(TIMEOUT):
        async with trio.open_nursery() as nursery:
            store: Store = await nursery.start(Store(config.database_url).run)
            try:
                auth = Auth(config, store, environ={})
                await auth.ensure_bootstrap_admin()
                assert await epoch_of(store, "00000000-0000-0000-0000-000000000001") == 0
                legacy = auth.tokens._encode(
                    {"sub": "00000000-0000-0000-0000-000000000001", "name": "old", "role": "admin"},
                    "access",
                    900,
                    None,
                )
                assert (await auth.authenticate(legacy)).username == "old"
            finally:
                await store.close()


async def test_unknown_ids_are_not_found(service: Auth) -> None:
    with trio.fail_after(TIMEOUT):
        with pytest.raises(NotFoundError, match="no user with id 'nobody'"):
            await service.update_user("nobody", is_active=False)
        with pytest.raises(NotFoundError, match="no user with id 'nobody'"):
            await service.delete_user("nobody")
