"""The auth service on a real store, real argon2 and real JWTs.

Updated for decision 0025 (no lockout by strangers): a success used to clear the username's
failures (``test_a_success_clears_the_usernames_failures``, now ``..._its_pairs_failures``), and
guesses at one user from many addresses used to lock the user after ``login_max_failures``
(``test_parallel_guesses_get_no_more_checks_than_the_failure_limit[one-user-many-addresses]``,
now ``test_guesses_at_one_user_from_many_addresses_are_slowed_one_at_a_time_not_refused``).
"""

from __future__ import annotations

import email
import email.policy
import logging
import re
import socket
import time
import traceback
from collections.abc import Callable
from functools import partial
from typing import Any

import jwt
import pytest
import trio
import trio.testing
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from vareon_runtime.auth import (
    Auth,
    LoginThrottle,
    Mail,
    Mailer,
    Passwords,
    Role,
    TokenPair,
    User,
    UserRecord,
)
from vareon_runtime.auth.throttle import known_client_keys, sign_in_keys
from vareon_runtime.config import Config, load_config
from vareon_runtime.errors import (
    AuthenticationError,
    ConfigError,
    ConflictError,
    InvalidRequestError,
    NotFoundError,
    PermissionDeniedError,
    StoreError,
    TooManyRequestsError,
)
from vareon_runtime.runtime import Runtime
from vareon_runtime.store import Store

PASSWORD = "correct horse battery"
TIMEOUT = 30


async def set_user(store: Store, user_id: str, **values: Any) -> None:
    """Change columns of a user behind the service's back (an admin tool would)."""

    def change(session: Session) -> None:
        session.execute(update(UserRecord).where(UserRecord.id == user_id).values(**values))

    await store.write(change)


async def stored_hash(store: Store, username: str) -> str:
    def fetch(session: Session) -> str:
        return session.scalars(
            select(UserRecord.password_hash).where(UserRecord.username == username)
        ).one()

    return await store.read(fetch)


# -- registration and accounts ----------------------------------------------------------------


async def test_register_then_login_then_who_am_i(auth: Auth) -> None:
    with trio.fail_after(TIMEOUT):
        user = await auth.register("alice", "Alice@Example.com", PASSWORD)
        assert user.username == "alice"
        assert user.email == "alice@example.com"
        assert user.role is Role.VIEWER
        assert user.email_verified is False
        assert user.is_active is True
        assert user.created_at.tzinfo is not None

        pair = await auth.login("alice", PASSWORD, "127.0.0.1")
        assert isinstance(pair, TokenPair)
        assert pair.token_type == "bearer"
        assert pair.expires_in == 900
        principal = auth.verify_access_token(pair.access_token)
        assert (principal.user_id, principal.username, principal.role) == (user.id, "alice", Role.VIEWER)

        me = await auth.get_user(principal.user_id)
        assert me == user


async def test_login_records_the_time(auth: Auth, store: Store) -> None:
    with trio.fail_after(TIMEOUT):
        user = await auth.create_user("alice", None, PASSWORD, Role.OPERATOR)

        def last_login(session: Session) -> Any:
            return session.get_one(UserRecord, user.id).last_login_at

        assert await store.read(last_login) is None
        before = time.time()
        await auth.login("alice", PASSWORD, None)
        stamp = await store.read(last_login)
    assert stamp is not None and stamp.timestamp() >= before - 1


async def test_password_is_stored_as_argon2id_and_never_shown(auth: Auth, store: Store) -> None:
    with trio.fail_after(TIMEOUT):
        user = await auth.register("alice", "alice@example.com", PASSWORD)
        stored = await stored_hash(store, "alice")
    assert stored.startswith("$argon2id$v=19$m=19456,t=2,p=1$")
    assert PASSWORD not in stored
    assert "password_hash" not in User.model_fields
    assert stored not in user.model_dump_json()
    assert set(user.model_dump()) == {
        "id", "username", "email", "role", "email_verified", "is_active", "created_at"
    }


async def test_get_unknown_user_is_not_found(auth: Auth) -> None:
    with trio.fail_after(TIMEOUT), pytest.raises(NotFoundError, match="no user with id 'nope'") as info:
        await auth.get_user("nope")
    assert info.value.status == 404


async def test_taken_username_or_email_is_a_conflict(auth: Auth) -> None:
    with trio.fail_after(TIMEOUT):
        await auth.register("alice", "alice@example.com", PASSWORD)
        with pytest.raises(ConflictError, match="username 'alice' is taken") as info:
            await auth.register("alice", "other@example.com", PASSWORD)
        assert info.value.status == 409
        with pytest.raises(ConflictError, match="email 'alice@example.com' is already registered"):
            await auth.register("alice2", "ALICE@example.com", PASSWORD)
        # Accounts without an email do not collide with each other.
        await auth.create_user("bob", None, PASSWORD, Role.VIEWER)
        await auth.create_user("carol", None, PASSWORD, Role.VIEWER)


@pytest.mark.parametrize(
    ("username", "address", "password", "message"),
    [
        ("al", "a@example.com", PASSWORD, r"username must be 3 to 64 characters of letters, digits, '_', '.' and '-', not 'al'"),
        ("x" * 65, "a@example.com", PASSWORD, r"username must be 3 to 64 characters"),
        ("bad name", "a@example.com", PASSWORD, r"not 'bad name'"),
        ("alice\n", "a@example.com", PASSWORD, r"username must be"),
        ("alice", "not-an-email", PASSWORD, r"email must be an address like name@example.com, not 'not-an-email'"),
        ("alice", "a@b", PASSWORD, r"email must be an address"),
        ("alice", "a b@example.com", PASSWORD, r"email must be an address"),
        ("alice", "a@example.com", "short", r"password must be at least 8 characters, not 5"),
        ("alice", "a@example.com", "p" * 1025, r"password must be at most 1024 characters, not 1025"),
    ],
    ids=["short-name", "long-name", "space-in-name", "newline-in-name", "no-at", "no-dot", "space-in-email", "short-password", "long-password"],
)
async def test_bad_registrations_are_refused(
    auth: Auth, username: str, address: str, password: str, message: str
) -> None:
    with trio.fail_after(TIMEOUT), pytest.raises(InvalidRequestError, match=message) as info:
        await auth.register(username, address, password)
    assert info.value.status == 422
    assert password not in str(info.value)


async def test_registration_can_be_closed(make_config: Callable[..., Config], store: Store) -> None:
    auth = Auth(make_config(AUTH_ALLOW_REGISTRATION="false"), store)
    with trio.fail_after(TIMEOUT):
        with pytest.raises(PermissionDeniedError, match="registration is closed") as info:
            await auth.register("alice", "alice@example.com", PASSWORD)
        assert info.value.status == 403
        # Admins still add users.
        user = await auth.create_user("alice", "alice@example.com", PASSWORD, Role.OPERATOR)
    assert user.role is Role.OPERATOR and user.email_verified


# -- login failures and the throttle ----------------------------------------------------------


async def test_wrong_password_unknown_user_and_disabled_account_look_the_same(
    auth: Auth, store: Store
) -> None:
    with trio.fail_after(TIMEOUT):
        alice = await auth.create_user("alice", None, PASSWORD, Role.VIEWER)
        await auth.create_user("bob", None, PASSWORD, Role.VIEWER)
        await set_user(store, alice.id, is_active=False)
        errors = []
        for username, password in [("bob", "wrong password"), ("nobody", PASSWORD), ("alice", PASSWORD)]:
            with pytest.raises(AuthenticationError) as info:
                await auth.login(username, password, None)
            errors.append((info.value.status, str(info.value)))
    assert errors == [(401, "incorrect username or password")] * 3


async def test_failed_logins_are_slowed_then_refused_then_allowed_again(
    make_config: Callable[..., Config], store: Store, autojump_clock: trio.testing.MockClock
) -> None:
    # No fail_after here: the autojump clock would jump to its deadline whenever the test
    # waits for a worker thread (argon2, the store), failing it at once.
    auth = Auth(make_config(AUTH_LOGIN_MAX_FAILURES="3", AUTH_LOGIN_LOCKOUT="60"), store)
    await auth.create_user("alice", None, PASSWORD, Role.VIEWER)

    async def attempt(password: str) -> tuple[float, BaseException | TokenPair]:
        start = trio.current_time()
        try:
            result: BaseException | TokenPair = await auth.login("alice", password, "10.0.0.7")
        except (AuthenticationError, TooManyRequestsError) as exc:
            result = exc
        return trio.current_time() - start, result

    took = []
    for _ in range(3):
        elapsed, result = await attempt("wrong password")
        assert isinstance(result, AuthenticationError)
        took.append(elapsed)
    assert took == [0.0, 0.5, 1.0]

    elapsed, result = await attempt(PASSWORD)  # right password, but locked
    assert isinstance(result, TooManyRequestsError)
    assert result.status == 429
    assert result.retry_after == 60
    assert elapsed == 0.0

    await trio.sleep(60)
    elapsed, result = await attempt(PASSWORD)
    assert isinstance(result, TokenPair)
    assert auth.verify_access_token(result.access_token).username == "alice"


async def test_a_success_clears_its_pairs_failures(auth: Auth) -> None:
    address, pair, user = sign_in_keys("alice", "10.0.0.5")
    with trio.fail_after(TIMEOUT):
        await auth.create_user("alice", None, PASSWORD, Role.VIEWER)
        with pytest.raises(AuthenticationError):
            await auth.login("alice", "wrong password", "10.0.0.5")
        await auth.login("alice", PASSWORD, "10.0.0.5")  # waits the 0.5 s the failure earned
    assert auth.throttle.check([pair]) == 0
    assert auth.throttle.check([address]) == auth.throttle.check([user]) == 0.5


async def test_login_rehashes_a_password_made_with_other_parameters(
    config: Config, store: Store
) -> None:
    weak = Auth(config, store, passwords=Passwords(time_cost=1, memory_cost=8192))
    auth = Auth(config, store)
    with trio.fail_after(TIMEOUT):
        await weak.create_user("alice", None, PASSWORD, Role.VIEWER)
        assert (await stored_hash(store, "alice")).startswith("$argon2id$v=19$m=8192,t=1,p=1$")
        await auth.login("alice", PASSWORD, None)
        rehashed = await stored_hash(store, "alice")
        assert rehashed.startswith("$argon2id$v=19$m=19456,t=2,p=1$")
        # The new hash still checks the same password.
        await auth.login("alice", PASSWORD, None)


# -- tokens -------------------------------------------------------------------------------------


async def test_refresh_rotates_and_a_reused_token_revokes_the_sign_in(auth: Auth) -> None:
    with trio.fail_after(TIMEOUT):
        await auth.create_user("alice", None, PASSWORD, Role.VIEWER)
        first = await auth.login("alice", PASSWORD, None)
        second = await auth.refresh(first.refresh_token)
        assert second.refresh_token != first.refresh_token
        assert auth.verify_access_token(second.access_token).username == "alice"

        with pytest.raises(AuthenticationError, match="refresh token already used; this sign-in was revoked") as info:
            await auth.refresh(first.refresh_token)
        assert info.value.status == 401
        # The reuse revoked what descended from that sign-in...
        with pytest.raises(AuthenticationError, match="refresh token revoked; sign in again"):
            await auth.refresh(second.refresh_token)
        # ... but not the user's other sign-ins.
        other = await auth.login("alice", PASSWORD, None)
        await auth.refresh(other.refresh_token)


async def test_refreshed_access_token_carries_the_current_role(auth: Auth, store: Store) -> None:
    with trio.fail_after(TIMEOUT):
        user = await auth.create_user("alice", None, PASSWORD, Role.VIEWER)
        pair = await auth.login("alice", PASSWORD, None)
        await set_user(store, user.id, role=Role.OPERATOR.value)
        pair = await auth.refresh(pair.refresh_token)
    assert auth.verify_access_token(pair.access_token).role is Role.OPERATOR


async def test_refresh_is_refused_for_a_disabled_or_removed_account(auth: Auth, store: Store) -> None:
    with trio.fail_after(TIMEOUT):
        alice = await auth.create_user("alice", None, PASSWORD, Role.VIEWER)
        bob = await auth.create_user("bob", None, PASSWORD, Role.VIEWER)
        alice_pair = await auth.login("alice", PASSWORD, None)
        bob_pair = await auth.login("bob", PASSWORD, None)
        await set_user(store, alice.id, is_active=False)

        def remove(session: Session) -> None:
            session.delete(session.get_one(UserRecord, bob.id))

        await store.write(remove)
        with pytest.raises(AuthenticationError, match="account disabled or removed"):
            await auth.refresh(alice_pair.refresh_token)
        # Removing the user removed its refresh tokens with it.
        with pytest.raises(AuthenticationError, match="^invalid token$"):
            await auth.refresh(bob_pair.refresh_token)


async def test_refresh_refuses_access_tokens_and_garbage(auth: Auth) -> None:
    with trio.fail_after(TIMEOUT):
        await auth.create_user("alice", None, PASSWORD, Role.VIEWER)
        pair = await auth.login("alice", PASSWORD, None)
        with pytest.raises(AuthenticationError, match="invalid token: it is of type 'access'"):
            await auth.refresh(pair.access_token)
        with pytest.raises(AuthenticationError, match="^invalid token$"):
            await auth.refresh("garbage")


async def test_expired_and_tampered_access_tokens_are_refused(
    make_config: Callable[..., Config], store: Store
) -> None:
    auth = Auth(make_config(AUTH_ACCESS_TOKEN_TTL="1"), store)
    with trio.fail_after(TIMEOUT):
        user = await auth.create_user("vera", None, PASSWORD, Role.VIEWER)
        pair = await auth.login("vera", PASSWORD, None)
    assert pair.expires_in == 1
    expired = auth.tokens.issue_access(user.id, "vera", Role.VIEWER, now=time.time() - 5)
    with pytest.raises(AuthenticationError, match="^token expired$"):
        auth.verify_access_token(expired)
    claims = jwt.decode(pair.access_token, options={"verify_signature": False})
    forged = jwt.encode({**claims, "role": "admin"}, "f" * 64, algorithm="HS256")
    with pytest.raises(AuthenticationError, match="^invalid token$"):
        auth.verify_access_token(forged)


# -- email verification -------------------------------------------------------------------------


def verification_token(log: Any, username: str) -> str:
    """The verification token written to the log for ``username`` (no SMTP configured)."""
    for message in reversed(log.messages(logging.WARNING)):
        found = re.match(rf"email verification token for {re.escape(username)}: (\S+) ", message)
        if found:
            return found.group(1)
    raise AssertionError(f"no verification token for {username} in {log.messages()}")


async def test_verification_token_in_the_log_verifies_the_email(auth: Auth, log_records: Any) -> None:
    with trio.fail_after(TIMEOUT):
        user = await auth.register("alice", "alice@example.com", PASSWORD)
        token = verification_token(log_records, "alice")
        [line] = [m for m in log_records.messages(logging.WARNING) if token in m]
        assert "confirm with `vareon user verify alice` or GET /api/verify-email?token=" in line

        verified = await auth.verify_email(token)
        assert verified.email_verified is True
        assert (await auth.get_user(user.id)).email_verified is True
        # Twice is harmless.
        assert (await auth.verify_email(token)).email_verified is True


async def test_unverified_users_may_sign_in(auth: Auth) -> None:
    with trio.fail_after(TIMEOUT):
        await auth.register("alice", "alice@example.com", PASSWORD)
        pair = await auth.login("alice", PASSWORD, None)
        me = await auth.get_user(auth.verify_access_token(pair.access_token).user_id)
    assert me.email_verified is False


async def test_bad_verification_tokens_are_refused(auth: Auth) -> None:
    with trio.fail_after(TIMEOUT):
        user = await auth.register("alice", "alice@example.com", PASSWORD)
        pair = await auth.login("alice", PASSWORD, None)
        cases = {
            "garbage": "invalid email verification token",
            pair.access_token: "invalid email verification token",
            auth.tokens.issue_verification(user.id, user.email or "", now=time.time() - 49 * 3600): "email verification token expired",
            auth.tokens.issue_verification(user.id, "old@example.com"): "its account or address no longer exists",
            auth.tokens.issue_verification("no-such-id", "alice@example.com"): "its account or address no longer exists",
        }
        for token, message in cases.items():
            with pytest.raises(InvalidRequestError, match=message) as info:
                await auth.verify_email(token)
            assert info.value.status == 422
        assert (await auth.get_user(user.id)).email_verified is False


async def test_mark_verified_by_username(auth: Auth) -> None:
    with trio.fail_after(TIMEOUT):
        await auth.register("alice", "alice@example.com", PASSWORD)
        assert (await auth.mark_verified("alice")).email_verified is True
        with pytest.raises(NotFoundError, match="no user named 'nobody'"):
            await auth.mark_verified("nobody")


class FakeSmtp:
    """Just enough SMTP on 127.0.0.1 to accept mails; with ``hang``, a server that never greets.

    ``connected`` is set when a client connects; ``mails`` receives each mail's raw text.
    """

    def __init__(self, *, hang: bool = False) -> None:
        self.hang = hang
        self.connected = trio.Event()
        self._send, self.mails = trio.open_memory_channel[bytes](16)

    async def start(self, nursery: trio.Nursery) -> int:
        """Serve in ``nursery``; return the port."""
        listeners = await nursery.start(partial(trio.serve_tcp, self._handle, 0, host="127.0.0.1"))
        return int(listeners[0].socket.getsockname()[1])

    async def _handle(self, stream: trio.SocketStream) -> None:
        self.connected.set()
        if self.hang:
            await trio.sleep_forever()
        buffer = b""

        async def line() -> bytes:
            nonlocal buffer
            while b"\r\n" not in buffer:
                chunk = await stream.receive_some(4096)
                if not chunk:
                    raise EOFError
                buffer += chunk
            head, _, buffer = buffer.partition(b"\r\n")
            return head

        async def reply(text: str) -> None:
            await stream.send_all(text.encode() + b"\r\n")

        await reply("220 fake ESMTP")
        try:
            while True:
                command = (await line()).upper()
                if command.startswith(b"DATA"):
                    await reply("354 go ahead")
                    body = []
                    while (data := await line()) != b".":
                        body.append(data[1:] if data.startswith(b"..") else data)
                    await self._send.send(b"\r\n".join(body))
                    await reply("250 queued")
                elif command.startswith(b"QUIT"):
                    await reply("221 bye")
                    return
                else:
                    await reply("250 ok")
        except EOFError:
            return


def smtp_config(make_config: Callable[..., Config], port: int) -> Config:
    return make_config(
        EMAIL_SMTP_HOST="127.0.0.1",
        EMAIL_SMTP_PORT=str(port),
        EMAIL_SMTP_STARTTLS="false",
        EMAIL_FROM_ADDRESS="box@example.com",
    )


async def wait_for_log(log: Any, level: int, text: str) -> str:
    """The first message at ``level`` or above containing ``text``, waiting for it (bounded)."""
    with trio.fail_after(TIMEOUT):
        while True:
            for message in log.messages(level):
                if text in message:
                    return str(message)
            await trio.sleep(0.01)


async def test_verification_token_is_mailed_when_smtp_is_configured(
    make_config: Callable[..., Config], store: Store, log_records: Any
) -> None:
    smtp = FakeSmtp()
    with trio.fail_after(TIMEOUT):
        async with trio.open_nursery() as nursery:
            auth = Auth(smtp_config(make_config, await smtp.start(nursery)), store)
            assert auth.mailer is not None
            await nursery.start(auth.mailer.run)
            user = await auth.register("alice", "alice@example.com", PASSWORD)
            raw = await smtp.mails.receive()
            await wait_for_log(log_records, logging.INFO, "mailed the verification token of alice")
            nursery.cancel_scope.cancel()
        mail = email.message_from_bytes(raw, policy=email.policy.default)
        assert mail["To"] == "alice@example.com"
        assert mail["From"] == "box@example.com"
        assert mail["Subject"] == "Confirm your email address"
        body = mail.get_content()  # type: ignore[attr-defined]
        token = re.search(r"^([\w-]+\.[\w-]+\.[\w-]+)\r?$", body, re.MULTILINE)
        assert token is not None, body
        assert (await auth.verify_email(token.group(1))).id == user.id
    # Mailed, so not written to the log.
    assert not [m for m in log_records.messages() if token.group(1) in m]


async def test_smtp_failure_is_logged_and_registration_stands(
    make_config: Callable[..., Config], store: Store, log_records: Any
) -> None:
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    auth = Auth(make_config(EMAIL_SMTP_HOST="127.0.0.1", EMAIL_SMTP_PORT=str(port)), store)
    assert auth.mailer is not None
    with trio.fail_after(TIMEOUT):
        async with trio.open_nursery() as nursery:
            await nursery.start(auth.mailer.run)
            user = await auth.register("alice", "alice@example.com", PASSWORD)
            assert (await auth.get_user(user.id)).username == "alice"
            error = await wait_for_log(log_records, logging.ERROR, "could not mail")
            nursery.cancel_scope.cancel()
    assert f"could not mail the verification token of alice to alice@example.com via 127.0.0.1:{port}" in error
    assert "confirm it with `vareon user verify alice`" in error
    assert "eyJ" not in error  # no token in the log line


async def test_registration_does_not_wait_for_the_mail_server_nor_hold_up_the_stop(
    make_config: Callable[..., Config], log_records: Any
) -> None:
    # A mail server that accepts the connection and never answers: the old in-request send
    # blocked the registration for SMTP_TIMEOUT (15 s), and a send in flight held up the stop.
    smtp = FakeSmtp(hang=True)
    stopped = trio.Event()
    with trio.fail_after(TIMEOUT):
        async with trio.open_nursery() as nursery:
            runtime = Runtime(smtp_config(make_config, await smtp.start(nursery)), components=[])

            async def run(*, task_status: trio.TaskStatus[Runtime] = trio.TASK_STATUS_IGNORED) -> None:
                try:
                    await runtime.run(task_status=task_status)
                finally:
                    stopped.set()

            await nursery.start(run)
            assert [c.name for c in runtime.root.which_children()] == ["journal", "mailer"]
            assert runtime.context is not None
            auth = runtime.context.auth
            auth.passwords = Passwords(time_cost=1, memory_cost=1024)
            with trio.fail_after(5):  # far below the 15 s the SMTP client waits for a greeting
                user = await auth.register("alice", "alice@example.com", PASSWORD)
            assert not user.email_verified
            await smtp.connected.wait()  # the mailer is now stuck on the silent server
            runtime.stop()
            with trio.fail_after(5):  # the mailer child alone would get 5 s before being abandoned
                await stopped.wait()
            nursery.cancel_scope.cancel()
    messages = log_records.messages()
    assert not [m for m in messages if "did not stop within" in m]
    warning = await wait_for_log(log_records, logging.WARNING, "was not mailed")
    assert "verification token of alice to alice@example.com" in warning
    assert "confirm it with `vareon user verify alice`" in warning


async def test_without_smtp_there_is_no_mailer(make_config: Callable[..., Config]) -> None:
    runtime = Runtime(make_config(), components=[])
    with trio.fail_after(TIMEOUT):
        async with trio.open_nursery() as nursery:
            await nursery.start(runtime.run)
            assert runtime.context is not None and runtime.context.auth.mailer is None
            assert [c.name for c in runtime.root.which_children()] == ["journal"]
            runtime.stop()


# -- the first admin ----------------------------------------------------------------------------


async def test_bootstrap_admin_comes_from_the_environment(
    make_config: Callable[..., Config], store: Store
) -> None:
    config = make_config(AUTH_BOOTSTRAP_ADMIN="root", AUTH_BOOTSTRAP_ADMIN_PASSWORD_ENV="ROOT_PW")
    auth = Auth(config, store, environ={"ROOT_PW": PASSWORD})
    with trio.fail_after(TIMEOUT):
        admin = await auth.ensure_bootstrap_admin()
        assert admin is not None
        assert (admin.username, admin.role, admin.email, admin.email_verified) == ("root", Role.ADMIN, None, True)
        pair = await auth.login("root", PASSWORD, None)
        assert auth.verify_access_token(pair.access_token).role is Role.ADMIN
        # Once it exists, the variable is no longer needed.
        again = Auth(config, store, environ={})
        assert await again.ensure_bootstrap_admin() is None


async def test_bootstrap_admin_without_its_variable_is_a_config_error(
    make_config: Callable[..., Config], store: Store
) -> None:
    auth = Auth(make_config(AUTH_BOOTSTRAP_ADMIN="root"), store, environ={})
    with trio.fail_after(TIMEOUT):
        with pytest.raises(ConfigError, match=r"\[auth\] bootstrap_admin is 'root' but the environment variable VAREON_ADMIN_PASSWORD .* is not set"):
            await auth.ensure_bootstrap_admin()
        short = Auth(make_config(AUTH_BOOTSTRAP_ADMIN="root"), store, environ={"VAREON_ADMIN_PASSWORD": "short"})
        with pytest.raises(ConfigError, match=r"password from VAREON_ADMIN_PASSWORD\): password must be at least 8 characters, not 5"):
            await short.ensure_bootstrap_admin()
        with pytest.raises(NotFoundError):
            await auth.mark_verified("root")


async def test_nothing_is_bootstrapped_without_bootstrap_admin(auth: Auth) -> None:
    with trio.fail_after(TIMEOUT):
        assert await auth.ensure_bootstrap_admin() is None


async def test_the_runtime_creates_the_bootstrap_admin_before_its_modules(
    make_config: Callable[..., Config], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("VAREON_ADMIN_PASSWORD", PASSWORD)
    runtime = Runtime(make_config(AUTH_BOOTSTRAP_ADMIN="root"), components=[])
    with trio.fail_after(TIMEOUT):
        async with trio.open_nursery() as nursery:
            await nursery.start(runtime.run)
            assert runtime.context is not None
            auth = runtime.context.auth
            pair = await auth.login("root", PASSWORD, None)
            assert auth.verify_access_token(pair.access_token).role is Role.ADMIN
            runtime.stop()


# -- secrets stay out of errors and logs ---------------------------------------------------------


async def test_a_refused_write_does_not_carry_the_password_hash(auth: Auth, store: Store) -> None:
    # SQLAlchemy puts the statement's parameters in its messages unless told not to; a
    # password hash in a logged traceback is a leak.
    with trio.fail_after(TIMEOUT):
        user = await auth.create_user("alice", None, PASSWORD, Role.VIEWER)
        secret = await stored_hash(store, "alice")

        def duplicate(session: Session) -> None:
            now = user.created_at
            session.add(
                UserRecord(
                    id=user.id, username="alice2", email=None, password_hash=secret,
                    role="viewer", email_verified=True, is_active=True,
                    created_at=now, updated_at=now,
                )
            )

        with pytest.raises(StoreError) as info:
            await store.write(duplicate)
    shown = "".join(traceback.format_exception(info.value))
    assert "IntegrityError" in shown  # the error itself is still told
    assert secret not in shown and "argon2id" not in shown


# -- parallel guesses and registrations --------------------------------------------------------


class CountingPasswords(Passwords):
    """The real (cheap) hasher, counting the password checks it makes and how many overlap."""

    def __init__(self) -> None:
        super().__init__(time_cost=1, memory_cost=1024)
        self.checks = 0
        self.inside = 0
        self.most_inside = 0

    async def verify(self, password_hash: str, password: str) -> bool:
        # verify_dummy (an unknown username) comes through here too.
        self.checks += 1
        self.inside += 1
        self.most_inside = max(self.most_inside, self.inside)
        try:
            return await super().verify(password_hash, password)
        finally:
            self.inside -= 1


def quick_auth(make_config: Callable[..., Config], store: Store, max_failures: int = 5) -> Auth:
    """An Auth with the cheap hasher and delays of milliseconds: limits, not the clock, under test."""
    auth = Auth(
        make_config(AUTH_LOGIN_MAX_FAILURES=str(max_failures)), store, passwords=CountingPasswords()
    )
    auth.throttle = LoginThrottle(max_failures, 300, base_delay=0.001, max_delay=0.002)
    return auth


async def outcome(attempt: Any) -> str:
    """ "200", "401" or "429": how a sign-in attempt ended."""
    try:
        await attempt
    except AuthenticationError:
        return "401"
    except TooManyRequestsError:
        return "429"
    return "200"


async def test_parallel_guesses_from_one_address_get_no_more_checks_than_the_failure_limit(
    make_config: Callable[..., Config], store: Store
) -> None:
    auth = quick_auth(make_config, store)
    outcomes: list[str] = []

    async def guess(n: int) -> None:
        outcomes.append(await outcome(auth.login(f"u{n}", f"guess number {n}", "10.0.0.1")))

    with trio.fail_after(TIMEOUT):
        await auth.create_user("alice", None, PASSWORD, Role.VIEWER)
        async with trio.open_nursery() as nursery:
            for n in range(50):
                nursery.start_soon(guess, n)
    assert isinstance(auth.passwords, CountingPasswords) and auth.passwords.checks == 5
    assert sorted(outcomes) == ["401"] * 5 + ["429"] * 45


async def test_guesses_at_one_user_from_many_addresses_are_slowed_one_at_a_time_not_refused(
    make_config: Callable[..., Config], store: Store
) -> None:
    auth = quick_auth(make_config, store)
    outcomes: list[str] = []

    async def guess(n: int) -> None:
        outcomes.append(await outcome(auth.login("alice", f"guess number {n}", f"10.0.{n}.1")))

    with trio.fail_after(TIMEOUT):
        await auth.create_user("alice", None, PASSWORD, Role.VIEWER)
        async with trio.open_nursery() as nursery:
            for n in range(50):
                nursery.start_soon(guess, n)
        # The owner, from an address of its own, is slowed like any unknown client, not refused.
        assert await outcome(auth.login("alice", PASSWORD, "192.0.2.1")) == "200"
    passwords = auth.passwords
    assert isinstance(passwords, CountingPasswords)
    assert sorted(outcomes) == ["401"] * 50
    assert passwords.checks == 51 and passwords.most_inside == 1  # one at a time
    assert auth.throttle.check(["user:alice"]) == auth.throttle.max_delay


async def test_strangers_cannot_lock_the_owner_out(
    make_config: Callable[..., Config], store: Store
) -> None:
    # Five wrong passwords from anywhere used to lock the account from every address.
    auth = quick_auth(make_config, store, max_failures=3)
    with trio.fail_after(TIMEOUT):
        await auth.create_user("alice", None, PASSWORD, Role.ADMIN)
        for attacker in ("203.0.113.1", "203.0.113.2", "2001:db8:66::1"):
            for _ in range(3):
                assert await outcome(auth.login("alice", "guess", attacker)) == "401"
            # Each stranger locks itself out, right password or not...
            assert await outcome(auth.login("alice", PASSWORD, attacker)) == "429"
        # ...and nobody else.
        pair = await auth.login("alice", PASSWORD, "198.51.100.7")
        assert (await auth.authenticate(pair.access_token)).username == "alice"


async def test_a_known_client_signs_in_from_an_address_strangers_locked(
    make_config: Callable[..., Config], store: Store, log_records: Any
) -> None:
    auth = quick_auth(make_config, store, max_failures=3)
    nat = "198.51.100.1"  # the owner and a guesser behind one address
    with trio.fail_after(TIMEOUT):
        await auth.create_user("alice", None, PASSWORD, Role.ADMIN)
        first = await auth.login("alice", PASSWORD, nat)
        assert first.client_token is not None
        assert "client_token" not in first.model_dump() and first.client_token not in repr(first)
        for n in range(3):
            assert await outcome(auth.login(f"guess{n}", "guess", nat)) == "401"
        for n in range(20):  # and the account guessed from everywhere: slowed, never locked
            assert await outcome(auth.login("alice", "guess", f"203.0.113.{n}")) == "401"
        # An unknown client behind that address is refused; the owner's browser is not.
        assert await outcome(auth.login("alice", PASSWORD, nat)) == "429"
        again = await auth.login("alice", PASSWORD, nat, known_client=first.client_token)
        assert (await auth.authenticate(again.access_token)).username == "alice"
        assert again.client_token is not None and again.client_token != first.client_token
    logged = "\n".join(record.getMessage() for record in log_records)
    assert first.client_token not in logged and PASSWORD not in logged


async def test_a_known_client_token_counts_only_for_its_account_and_sign_in(
    make_config: Callable[..., Config], store: Store
) -> None:
    auth = quick_auth(make_config, store, max_failures=2)
    locked = "198.51.100.2"
    with trio.fail_after(TIMEOUT):
        alice = await auth.create_user("alice", None, PASSWORD, Role.VIEWER)
        await auth.create_user("bob", None, PASSWORD, Role.VIEWER)
        alices = (await auth.login("alice", PASSWORD, "10.1.0.1")).client_token
        bobs = (await auth.login("bob", PASSWORD, "10.1.0.2")).client_token
        for _ in range(2):
            await outcome(auth.login("nobody", "guess", locked))
        # Bob's token says nothing about alice; garbage and an access token are no tokens.
        access = (await auth.login("alice", PASSWORD, "10.1.0.1")).access_token
        for token in (bobs, "garbage", access):
            assert await outcome(auth.login("alice", PASSWORD, locked, known_client=token)) == "429"
        assert await outcome(auth.login("alice", PASSWORD, locked, known_client=alices)) == "200"
        # A new password ends the sign-ins the token came from: it is an unknown client again.
        await auth.set_password(alice.id, "another long passphrase")
        attempt = auth.login("alice", "another long passphrase", locked, known_client=alices)
        assert await outcome(attempt) == "429"


async def test_a_known_client_that_guesses_is_locked_then_counted_as_unknown(
    make_config: Callable[..., Config], store: Store
) -> None:
    auth = quick_auth(make_config, store, max_failures=3)
    with trio.fail_after(TIMEOUT):
        await auth.create_user("alice", None, PASSWORD, Role.VIEWER)
        token = (await auth.login("alice", PASSWORD, "10.2.0.1")).client_token
        assert token is not None
        client_key = known_client_keys(jwt.decode(token, options={"verify_signature": False})["jti"])[0]
        address = sign_in_keys("alice", "10.2.0.2")[0]
        for _ in range(3):
            assert await outcome(auth.login("alice", "guess", "10.2.0.2", known_client=token)) == "401"
        # Counted on the client alone, which is now locked; the address holds nothing.
        assert auth.throttle.locked(client_key)
        assert auth.throttle.check([address]) == 0
        # Its next attempt is an unknown client's, counted on the address.
        assert await outcome(auth.login("alice", "guess", "10.2.0.2", known_client=token)) == "401"
        assert auth.throttle.check([address]) > 0


async def test_registrations_per_address_are_limited(
    make_config: Callable[..., Config], store: Store
) -> None:
    config = make_config(AUTH_REGISTRATION_MAX="2", AUTH_REGISTRATION_WINDOW="600")
    auth = Auth(config, store, passwords=Passwords(time_cost=1, memory_cost=1024))
    with trio.fail_after(TIMEOUT):
        # Refused registrations that cost no hash do not count.
        for _ in range(3):
            with pytest.raises(InvalidRequestError):
                await auth.register("x", "bad", PASSWORD, client="10.0.0.1")
        await auth.register("ann", "ann@example.com", PASSWORD, client="10.0.0.1")
        with pytest.raises(ConflictError):  # a taken name cost a hash: it counts
            await auth.register("ann", "ann2@example.com", PASSWORD, client="10.0.0.1")
        with pytest.raises(TooManyRequestsError, match=r"^too many accounts registered from this address; try again in \d+ s$") as info:
            await auth.register("bea", "bea@example.com", PASSWORD, client="10.0.0.1")
        assert 0 < info.value.retry_after <= 600
        assert info.value.status == 429
        # Another address, and the admin's own tools (no address), are not held up.
        await auth.register("bea", "bea@example.com", PASSWORD, client="10.0.0.2")
        await auth.register("cid", "cid@example.com", PASSWORD, client=None)
        # IPv6 clients are counted by their /64: one host has millions of addresses.
        await auth.register("dot", "dot@example.com", PASSWORD, client="2001:db8:1:2::1")
        await auth.register("eve", "eve@example.com", PASSWORD, client="2001:db8:1:2::ffff")
        with pytest.raises(TooManyRequestsError):
            await auth.register("fay", "fay@example.com", PASSWORD, client="2001:db8:1:2:abcd::1")
        await auth.register("fay", "fay@example.com", PASSWORD, client="2001:db8:1:3::1")


async def test_parallel_registrations_cannot_pass_the_limit(
    make_config: Callable[..., Config], store: Store
) -> None:
    config = make_config(AUTH_REGISTRATION_MAX="3")
    auth = Auth(config, store, passwords=Passwords(time_cost=1, memory_cost=1024))
    outcomes: list[str] = []

    async def register(n: int) -> None:
        try:
            await auth.register(f"user{n}", f"user{n}@example.com", PASSWORD, client="10.0.0.9")
            outcomes.append("201")
        except TooManyRequestsError:
            outcomes.append("429")

    with trio.fail_after(TIMEOUT):
        async with trio.open_nursery() as nursery:
            for n in range(20):
                nursery.start_soon(register, n)
    assert sorted(outcomes) == ["201"] * 3 + ["429"] * 17


async def test_a_full_mail_queue_refuses_with_a_log_line_not_an_error(log_records: Any) -> None:
    config = load_config(None, environ={"VAREON_EMAIL_SMTP_HOST": "127.0.0.1"})
    mailer = Mailer(config.email, queue_size=1)

    def mail(name: str) -> Mail:
        return Mail(
            to=f"{name}@example.com", subject="s", body="secret token", what=f"the token of {name}",
            remedy=f"confirm it with `vareon user verify {name}`",
        )

    mailer.submit(mail("ann"))
    mailer.submit(mail("bob"))  # nobody sends: the queue is full
    [error] = log_records.messages(logging.ERROR)
    assert error == (
        "the token of bob to bob@example.com was not mailed: 1 mails already wait for"
        " 127.0.0.1:587; confirm it with `vareon user verify bob`"
    )
    assert "secret token" not in repr(mail("ann"))
