"""The auth service: accounts, sign-in, token rotation and email verification.

:class:`Auth` is what the web front and the ``vareon user`` commands call. Accounts and refresh
tokens live in the store, so a restart signs nobody out. In memory it keeps the login throttle,
the registration limit, the cache of verified access tokens and :class:`UserView`, every
account as it is now: every write to ``users`` goes through the view, so checking a caller
(:meth:`Auth.authenticate`) costs no query and sees a disabled or removed account, or a new
role, at the very next request (decision 0018). Every token carries the account's token epoch;
a new password, a lower role or a deactivation raises it, which ends every sign-in of the
account at once, open WebSockets included (:meth:`Auth.watch`, decision 0025).
Verification mails go through the :class:`~vareon_runtime.auth.mail.Mailer`, which the runtime
runs as a child of its own: a registration never waits for a mail server.
"""

from __future__ import annotations

import logging
import os
import re
import uuid
from collections.abc import Callable, Mapping
from typing import Any, Literal

from pydantic import BaseModel
from sqlalchemy import delete, func, select, update
from sqlalchemy.orm import Session

from vareon_runtime.auth.mail import Mail, Mailer
from vareon_runtime.auth.models import (
    EMAIL_MAX,
    USERNAME_MAX,
    RefreshTokenRecord,
    UserRecord,
)
from vareon_runtime.auth.passwords import Passwords
from vareon_runtime.auth.ratelimit import RateLimit
from vareon_runtime.auth.roles import Role
from vareon_runtime.auth.schemas import Principal, TokenPair, User
from vareon_runtime.auth.shown import shown
from vareon_runtime.auth.throttle import (
    LoginThrottle,
    address_key,
    known_client_keys,
    sign_in_keys,
)
from vareon_runtime.auth.tokens import IssuedRefresh, Tokens, load_signing_key
from vareon_runtime.auth.view import SignInWatch, UserNotes, UserView, sign_in_ended
from vareon_runtime.clock import utcnow
from vareon_runtime.config import Config
from vareon_runtime.errors import (
    AuthenticationError,
    ConfigError,
    ConflictError,
    InvalidRequestError,
    NotFoundError,
    PermissionDeniedError,
)
from vareon_runtime.store import Store

__all__ = [
    "PASSWORD_MAX",
    "PASSWORD_MIN",
    "Auth",
    "Principal",
    "TokenPair",
    "User",
    "check_email",
    "check_password",
    "check_username",
]

logger = logging.getLogger("vareon.auth")

PASSWORD_MIN = 8
PASSWORD_MAX = 1024
USERNAME_MIN = 3
_USERNAME_RE = re.compile(rf"[A-Za-z0-9_.-]{{{USERNAME_MIN},{USERNAME_MAX}}}")
# Deliberately loose: one @, no spaces, a dot in the domain. Only a mail proves an address.
_EMAIL_RE = re.compile(r"[^@\s]+@[^@\s.]+(?:\.[^@\s.]+)+")
BAD_CREDENTIALS = "incorrect username or password"
DISABLED_OR_REMOVED = "account disabled or removed; sign in again"
SIGNED_OUT = (
    "this sign-in has ended (a new password, a lower role or a deactivation since); sign in again"
)
WRONG_CURRENT_PASSWORD = "current_password is not this account's password"
_Rotation = Literal["ok", "unknown", "revoked", "reused", "inactive", "ended"]


def check_username(username: str) -> str:
    """Return ``username`` if it is 3 to 64 characters of ``[A-Za-z0-9_.-]``.

    Raises:
        InvalidRequestError: it is not.
    """
    if not isinstance(username, str) or not _USERNAME_RE.fullmatch(username):
        raise InvalidRequestError(
            f"username must be {USERNAME_MIN} to {USERNAME_MAX} characters of letters, digits,"
            f" '_', '.' and '-', not {shown(username)}",
            details={"field": "username"},
        )
    return username


def check_email(email: str) -> str:
    """Return ``email`` trimmed and lowercased if it looks like an address.

    Raises:
        InvalidRequestError: it does not.
    """
    normal = email.strip().lower() if isinstance(email, str) else ""
    if len(normal) > EMAIL_MAX or not _EMAIL_RE.fullmatch(normal):
        raise InvalidRequestError(
            f"email must be an address like name@example.com, not {shown(email)}",
            details={"field": "email"},
        )
    return normal


def check_password(password: str) -> str:
    """Return ``password`` if it has 8 to 1024 characters.

    Raises:
        InvalidRequestError: it has not (the message gives the length, never the password).
    """
    if not isinstance(password, str):
        raise InvalidRequestError("password must be a string", details={"field": "password"})
    if len(password) < PASSWORD_MIN:
        raise InvalidRequestError(
            f"password must be at least {PASSWORD_MIN} characters, not {len(password)}",
            details={"field": "password"},
        )
    if len(password) > PASSWORD_MAX:
        raise InvalidRequestError(
            f"password must be at most {PASSWORD_MAX} characters, not {len(password)}",
            details={"field": "password"},
        )
    return password


def _check_fields(*checks: tuple[Callable[[Any], object], Any]) -> None:
    """Run every ``(check, value)`` and report every field's problem in one refusal.

    One problem is raised as its check raised it; several are joined, in field order, into one
    message, with ``details`` naming the first field and listing each (``problems``), so a form
    can mark every field at once instead of one per attempt.

    Raises:
        InvalidRequestError: at least one check refused its value.
    """
    refused: list[InvalidRequestError] = []
    for check, value in checks:
        try:
            check(value)
        except InvalidRequestError as exc:
            refused.append(exc)
    if len(refused) == 1:
        raise refused[0]
    if refused:
        problems = [{"field": (exc.details or {}).get("field"), "message": exc.message} for exc in refused]
        raise InvalidRequestError(
            "; ".join(exc.message for exc in refused),
            details={"field": problems[0]["field"], "problems": problems},
        )


class _Account(BaseModel):
    """What a login needs to know about a user (internal: it has the hash)."""

    id: str
    username: str
    password_hash: str
    is_active: bool
    token_epoch: int


def _to_user(record: UserRecord) -> User:
    return User.model_validate(record)


def _noted(notes: UserNotes, record: UserRecord) -> User:
    """Note the account as ``record`` has it now, token epoch included; return it as a User."""
    user = _to_user(record)
    notes.saw(user, record.token_epoch)
    return user


def _end_sign_ins(session: Session, record: UserRecord) -> None:
    """Raise the account's token epoch and revoke its refresh tokens: every sign-in ends."""
    record.token_epoch += 1
    session.execute(
        update(RefreshTokenRecord)
        .where(RefreshTokenRecord.user_id == record.id)
        .values(revoked=True)
    )


def _other_active_admins(session: Session, user_id: str) -> int:
    return session.scalar(
        select(func.count())
        .select_from(UserRecord)
        .where(
            UserRecord.role == Role.ADMIN.value,
            UserRecord.is_active.is_(True),
            UserRecord.id != user_id,
        )
    ) or 0


def _keep_an_admin(session: Session, record: UserRecord, doing: str, field: str) -> None:
    """Refuse ``doing`` to ``record`` when it is the last active admin.

    Raises:
        ConflictError: it is (409; the message says what to do first).
    """
    if (
        record.role == Role.ADMIN.value
        and record.is_active
        and _other_active_admins(session, record.id) == 0
    ):
        raise ConflictError(
            f"{shown(record.username)} is the last active admin and cannot be {doing};"
            " make another user an admin first",
            details={"field": field},
        )


def _by_username(session: Session, username: str) -> UserRecord | None:
    return session.scalars(select(UserRecord).where(UserRecord.username == username)).first()


class Auth:
    """Accounts, passwords, tokens and the login throttle of one runtime.

    Args:
        config: the runtime's configuration (``[auth]``, ``[email]``, the data directory).
        store: the running store.
        passwords: the password hasher (default: argon2id with OWASP's minimum parameters).
        environ: where passwords named by the config are looked up (default ``os.environ``).

    Raises:
        ConfigError: the JWT key file cannot be created or read.
    """

    def __init__(
        self,
        config: Config,
        store: Store,
        *,
        passwords: Passwords | None = None,
        environ: Mapping[str, str] | None = None,
    ) -> None:
        self.config = config
        self.store = store
        self.passwords = passwords or Passwords()
        auth = config.auth
        self.tokens = Tokens(
            load_signing_key(config),
            access_ttl=auth.access_token_ttl,
            refresh_ttl=auth.refresh_token_ttl,
        )
        self.throttle = LoginThrottle(auth.login_max_failures, auth.login_lockout)
        self.registrations = RateLimit(
            auth.registration_max,
            auth.registration_window,
            refusal="too many accounts registered from this address",
        )
        self._environ = os.environ if environ is None else environ
        # Every account in memory; every write to `users` below goes through it (0018).
        self.users = UserView(store)
        # Sends the verification mails when [email] smtp_host is set; the runtime runs it as a
        # child of its root supervisor (0010). Without it, tokens are written to the log.
        self.mailer: Mailer | None = None
        if config.email.smtp_host is not None:
            self.mailer = Mailer(config.email, environ=self._environ)

    # -- accounts ---------------------------------------------------------------------------

    async def register(
        self, username: str, email: str, password: str, client: str | None = None
    ) -> User:
        """Create a viewer account whose email is yet to be verified; queue its token's mail.

        Args:
            client: the caller's address; each address may register ``[auth]
                registration_max`` accounts per ``registration_window`` (None: not limited).

        Raises:
            PermissionDeniedError: ``[auth] allow_registration`` is false.
            InvalidRequestError: bad username, email or password (the message says which).
            TooManyRequestsError: the address registered too many accounts lately.
            ConflictError: the username or the email is taken.
        """
        if not self.config.auth.allow_registration:
            raise PermissionDeniedError(
                "registration is closed on this runtime; ask an admin to create your account"
            )
        if email is None:
            raise InvalidRequestError(
                "email must be an address like name@example.com, not None",
                details={"field": "email"},
            )
        # Checked before counting: only a registration that will cost a hash uses the budget.
        _check_fields((check_username, username), (check_email, email), (check_password, password))
        if client:
            self.registrations.take(f"addr:{address_key(client)}")
        user = await self._create(username, email, password, Role.VIEWER, verified=False)
        logger.info("registered %s", user.username)
        self._deliver_verification(user)
        return user

    async def create_user(
        self,
        username: str,
        email: str | None,
        password: str,
        role: Role,
        *,
        verified: bool = True,
    ) -> User:
        """Create an account with any role (for admins and ``vareon user create``).

        Raises:
            InvalidRequestError: bad username, email, password or role.
            ConflictError: the username or the email is taken.
        """
        role = _role(role)
        user = await self._create(username, email, password, role, verified=verified)
        logger.info("created %s %s", user.role.value, user.username)
        if not verified:
            self._deliver_verification(user)
        return user

    async def get_user(self, user_id: str) -> User:
        """Return the user with id ``user_id``, read from the database (the view keeps it).

        Raises:
            NotFoundError: there is none.
        """
        return _existing((await self.users.read(user_id)).user, user_id)

    def account_now(self, user_id: str) -> User | None:
        """:meth:`account` from memory alone: None when there is none or it must be read."""
        entry = self.users.known(user_id)
        return None if entry is None else entry.user

    async def account(self, user_id: str) -> User:
        """Return the user with id ``user_id`` as the users view holds it: no query once loaded.

        Exact for every change made through this service; a change another process made to a
        known account shows after the account's next sign-in or refresh (decision 0018).

        Raises:
            NotFoundError: there is none.
        """
        return _existing((await self.users.entry(user_id)).user, user_id)

    async def get_user_by_username(self, username: str) -> User:
        """Return the user named ``username``.

        Raises:
            NotFoundError: there is none.
        """

        def fetch(session: Session) -> User:
            record = _by_username(session, username)
            if record is None:
                raise NotFoundError(f"no user named {username!r}")
            return _to_user(record)

        return await self.store.read(fetch)

    async def list_users(
        self,
        *,
        limit: int = 50,
        offset: int = 0,
        role: Role | None = None,
        is_active: bool | None = None,
    ) -> tuple[list[User], int]:
        """A page of the accounts, oldest first, read from the database; and how many match.

        Args:
            role, is_active: only the accounts with this role, or this active flag.
        """
        conditions = []
        if role is not None:
            conditions.append(UserRecord.role == _role(role).value)
        if is_active is not None:
            conditions.append(UserRecord.is_active.is_(is_active))

        def fetch(session: Session) -> tuple[list[User], int]:
            total = session.scalar(
                select(func.count()).select_from(UserRecord).where(*conditions)
            )
            records = session.scalars(
                select(UserRecord)
                .where(*conditions)
                .order_by(UserRecord.created_at, UserRecord.id)
                .limit(limit)
                .offset(offset)
            ).all()
            return [_to_user(record) for record in records], total or 0

        return await self.store.read(fetch)

    async def update_user(
        self,
        user_id: str,
        *,
        role: Role | None = None,
        is_active: bool | None = None,
        by: str | None = None,
    ) -> User:
        """Change a user's role or active flag; the next request of the user sees it.

        A lower role or a deactivation ends every sign-in of the user at once (its token epoch
        is raised: its access and refresh tokens are refused, its WebSockets closed); once
        enabled again, the user signs in again. A higher role applies to the tokens it holds.

        Args:
            by: who asks (an admin's name, for the log).

        Raises:
            InvalidRequestError: ``role`` is not a role.
            NotFoundError: there is no such user.
            ConflictError: the user is the last active admin and would no longer be one.
        """
        new_role = None if role is None else _role(role)

        def change(session: Session, notes: UserNotes) -> tuple[User, Role, bool, bool]:
            record = session.get(UserRecord, user_id)
            if record is None:
                raise NotFoundError(f"no user with id {user_id!r}")
            old_role, was_active = Role(record.role), record.is_active
            role_after = old_role if new_role is None else new_role
            active_after = was_active if is_active is None else is_active
            if role_after is not Role.ADMIN:
                _keep_an_admin(session, record, f"made {role_after.value}", "role")
            if not active_after:
                _keep_an_admin(session, record, "deactivated", "is_active")
            record.role = role_after.value
            record.is_active = active_after
            ended = (was_active and not active_after) or role_after.rank < old_role.rank
            if ended:
                _end_sign_ins(session, record)
            return _noted(notes, record), old_role, was_active, ended

        user, old_role, was_active, ended = await self.users.write(change)
        logger.info(
            "%s changed the user %r (id %s): role %s -> %s, active %s -> %s%s",
            _who(by),
            user.username,
            user.id,
            old_role.value,
            user.role.value,
            was_active,
            user.is_active,
            "; its sign-ins are ended" if ended else "",
        )
        return user

    async def set_password(self, user_id: str, password: str) -> User:
        """Replace a user's password and end every sign-in of the user at once.

        Raises:
            InvalidRequestError: the password breaks the rules.
            NotFoundError: there is no such user.
        """
        check_password(password)
        password_hash = await self.passwords.hash(password)

        def change(session: Session, notes: UserNotes) -> User:
            record = session.get(UserRecord, user_id)
            if record is None:
                raise NotFoundError(f"no user with id {user_id!r}")
            record.password_hash = password_hash
            _end_sign_ins(session, record)
            return _noted(notes, record)

        user = await self.users.write(change)
        logger.info("changed the password of %r; its sign-ins are ended", user.username)
        return user

    async def change_password(
        self,
        user_id: str,
        current_password: str,
        new_password: str,
        client: str | None,
    ) -> TokenPair:
        """The user's own change of password: every other sign-in ends, the caller's goes on.

        The current password is checked and throttled as a sign-in from ``client`` would be (a
        stolen access token must not be a way to guess the password).

        Returns:
            A fresh token pair (and known-client token) for the caller, under the new epoch.

        Raises:
            InvalidRequestError: the new password breaks the rules or is the current one, or
                the current password is wrong (``details.field`` says which).
            TooManyRequestsError: too many wrong passwords from this address lately.
            AuthenticationError: the account is disabled or removed.
        """
        check_password(new_password)
        if new_password == current_password:
            raise InvalidRequestError(
                "new_password is the current password; choose another",
                details={"field": "new_password"},
            )

        def fetch(session: Session) -> _Account | None:
            record = session.get(UserRecord, user_id)
            return None if record is None else _account(record)

        account = await self.store.read(fetch)
        if account is None or not account.is_active:
            raise AuthenticationError(DISABLED_OR_REMOVED)
        keys = sign_in_keys(account.username, client)
        async with self.throttle.attempt(keys):
            if not await self.passwords.verify(account.password_hash, current_password):
                self.throttle.failed(keys)
                logger.info(
                    "wrong current password for %r from %s", account.username, client
                )
                raise InvalidRequestError(
                    WRONG_CURRENT_PASSWORD, details={"field": "current_password"}
                )
            self.throttle.succeeded(keys)
        password_hash = await self.passwords.hash(new_password)

        def change(session: Session, notes: UserNotes) -> tuple[User, int, IssuedRefresh] | None:
            record = session.get(UserRecord, user_id)
            if record is None:
                notes.removed(user_id)
                return None
            if not record.is_active or record.token_epoch != account.token_epoch:
                _noted(notes, record)  # disabled, or signed out, since the check
                return None
            record.password_hash = password_hash
            _end_sign_ins(session, record)
            refresh = self.tokens.issue_refresh(user_id, epoch=record.token_epoch)
            session.add(_refresh_record(refresh, user_id))
            return _noted(notes, record), record.token_epoch, refresh

        changed = await self.users.write(change)
        if changed is None:
            raise AuthenticationError(SIGNED_OUT)
        user, epoch, refresh = changed
        logger.info("%r changed its password; its other sign-ins are ended", user.username)
        return self._pair(user, epoch, refresh)

    async def delete_user(self, user_id: str, *, by: str | None = None) -> None:
        """Remove a user and its refresh tokens; its tokens are refused from the next request.

        Raises:
            NotFoundError: there is no such user.
            ConflictError: it is the last active admin.
        """

        def remove(session: Session, notes: UserNotes) -> str:
            record = session.get(UserRecord, user_id)
            if record is None:
                raise NotFoundError(f"no user with id {user_id!r}")
            _keep_an_admin(session, record, "removed", "id")
            username = record.username
            session.execute(delete(RefreshTokenRecord).where(RefreshTokenRecord.user_id == user_id))
            session.delete(record)
            notes.removed(user_id)
            return username

        username = await self.users.write(remove)
        logger.info("%s removed the user %r (id %s)", _who(by), username, user_id)

    async def ensure_bootstrap_admin(self) -> User | None:
        """Create ``[auth] bootstrap_admin`` as an admin unless an account of that name exists.

        The password comes from the environment variable named by
        ``[auth] bootstrap_admin_password_env``, never from the config file.

        Returns:
            The admin just created, or None (nothing configured, or the account exists).

        Raises:
            ConfigError: the password variable is unset or empty, or its value or the username
                breaks the account rules.
        """
        # The runtime calls this once at boot, before its modules: the users view is loaded here.
        await self.users.load()
        auth = self.config.auth
        name = auth.bootstrap_admin
        if name is None:
            return None

        def fetch(session: Session) -> User | None:
            record = _by_username(session, name)
            return None if record is None else _to_user(record)

        existing = await self.store.read(fetch)
        if existing is not None:
            if existing.role is not Role.ADMIN:
                logger.warning(
                    "[auth] bootstrap_admin %r exists but is %s, not admin; left as it is",
                    name,
                    existing.role.value,
                )
            return None
        variable = auth.bootstrap_admin_password_env
        password = self._environ.get(variable)
        if not password:
            raise ConfigError(
                f"[auth] bootstrap_admin is {name!r} but the environment variable {variable}"
                " (named by [auth] bootstrap_admin_password_env) is not set; set it to the"
                f" admin's password for the first start, or create the admin with"
                f" `vareon user create {name} --role admin`"
            )
        try:
            user = await self.create_user(name, None, password, Role.ADMIN, verified=True)
        except ConflictError:
            return None  # created by another process meanwhile
        except InvalidRequestError as exc:
            raise ConfigError(
                f"[auth] bootstrap_admin {name!r} (password from {variable}): {exc.message}"
            ) from None
        logger.warning(
            "created the bootstrap admin %r; %s is no longer needed and can be unset",
            name,
            variable,
        )
        return user

    # -- sign-in ----------------------------------------------------------------------------

    async def login(
        self,
        username: str,
        password: str,
        client: str | None,
        *,
        known_client: str | None = None,
    ) -> TokenPair:
        """Check a username and password; return a fresh access and refresh token.

        Args:
            client: the caller's address (None: no IP address, counted as one source).
            known_client: the known-client token the caller kept from an earlier sign-in (its
                cookie). One issued for this account under its current token epoch counts the
                attempt under that client alone: strangers' failures neither refuse nor slow
                it. Anything else is ignored (an unknown client).

        Returns:
            The pair, with a new known-client token for the caller to keep
            (``TokenPair.client_token``, never in a body).

        Raises:
            TooManyRequestsError: too many recent failures from the address, or for this user
                from it (or from this known client).
            AuthenticationError: "incorrect username or password", whether the user is unknown,
                the password wrong or the account disabled.
        """
        client_id = self._known_client(known_client, username)
        keys = known_client_keys(client_id) if client_id else sign_in_keys(username, client)
        # One attempt in flight per key: its failure is counted before the next is checked.
        async with self.throttle.attempt(keys):
            account = await self._check_password(
                username, password, client, keys, known=client_id is not None
            )

        new_hash: str | None = None
        if self.passwords.needs_rehash(account.password_hash):
            new_hash = await self.passwords.hash(password)
        account_id = account.id

        def record_login(
            session: Session, notes: UserNotes
        ) -> tuple[User, int, IssuedRefresh] | None:
            user = session.get(UserRecord, account_id)
            if user is None:
                notes.removed(account_id)
                return None
            if not user.is_active or user.token_epoch != account.token_epoch:
                # Disabled, or a new password (or role) since the check.
                _noted(notes, user)
                return None
            now = utcnow()
            user.last_login_at = now
            if new_hash is not None:
                user.password_hash = new_hash
            session.execute(
                delete(RefreshTokenRecord).where(
                    RefreshTokenRecord.user_id == account_id,
                    RefreshTokenRecord.expires_at < now,
                )
            )
            refresh = self.tokens.issue_refresh(account_id, epoch=user.token_epoch)
            session.add(_refresh_record(refresh, account_id))
            return _noted(notes, user), user.token_epoch, refresh

        signed_in = await self.users.write(record_login)
        if signed_in is None:  # disabled, removed or signed out between the check and now
            raise AuthenticationError(BAD_CREDENTIALS)
        user, epoch, refresh = signed_in
        if new_hash is not None:
            logger.info("rehashed the password of %r with the current parameters", user.username)
        return self._pair(user, epoch, refresh)

    def _known_client(self, token: str | None, username: str) -> str | None:
        """The id of ``token`` if it names a known client of ``username`` that may sign in as
        one now; None for an unknown client (no token, another account's, an old epoch, or a
        client locked by its own failures)."""
        if not token:
            return None
        try:
            claims = self.tokens.decode(token, "client")
        except AuthenticationError:
            return None
        entry = self.users.known(str(claims["sub"]))
        if entry is None or entry.user is None or entry.user.username != username:
            return None
        epoch = claims.get("ep")
        if not isinstance(epoch, int) or sign_in_ended(entry, epoch) is not None:
            return None
        client_id = str(claims["jti"])
        if self.throttle.locked(known_client_keys(client_id)[0]):
            return None  # it guessed too: it signs in as an unknown client would
        return client_id

    async def _check_password(
        self, username: str, password: str, client: str | None, keys: list[str], *, known: bool
    ) -> _Account:
        """Check the password of ``username`` and count the outcome on the throttle's keys."""

        def fetch(session: Session) -> _Account | None:
            record = _by_username(session, username)
            return None if record is None else _account(record)

        account = await self.store.read(fetch)
        if account is None:
            # Spend the same time as for a real account: timing must not reveal who exists.
            await self.passwords.verify_dummy(password)
            ok = False
        else:
            ok = await self.passwords.verify(account.password_hash, password)
            ok = ok and account.is_active
        if not ok or account is None:
            self.throttle.failed(keys)
            logger.info(
                "failed sign-in for %r from %s%s",
                username[:USERNAME_MAX + 1],
                client,
                " (a known client)" if known else "",
            )
            raise AuthenticationError(BAD_CREDENTIALS)
        self.throttle.succeeded(keys)
        return account

    async def refresh(self, refresh_token: str) -> TokenPair:
        """Trade a refresh token for a new pair; the old refresh token is used up.

        Presenting a used refresh token again revokes every token descended from the same
        sign-in (it must have leaked).

        Raises:
            AuthenticationError: the token is expired, invalid, used or revoked, its sign-in
                ended (another token epoch), or its account is disabled or removed.
        """
        claims = self.tokens.decode(refresh_token, "refresh")
        jti: str = claims["jti"]
        user_id: str = claims["sub"]
        family = claims.get("fam")
        epoch = claims.get("ep", 0)  # tokens issued before epochs existed: epoch 0
        if not isinstance(family, str) or not isinstance(epoch, int):
            raise AuthenticationError("invalid token")
        issued = self.tokens.issue_refresh(user_id, epoch=epoch, family=family)

        def rotate(session: Session, notes: UserNotes) -> tuple[_Rotation, User | None]:
            row = session.get(RefreshTokenRecord, jti)
            if row is None or row.user_id != user_id:
                return "unknown", None
            record = session.get(UserRecord, user_id)
            if record is None:
                notes.removed(user_id)
                return "inactive", None
            user = _noted(notes, record)  # read in the writer: keeps the view current
            if not user.is_active:
                return "inactive", None
            if record.token_epoch != epoch:
                return "ended", None
            if row.revoked:
                return "revoked", None
            if row.used_at is not None:
                session.execute(
                    update(RefreshTokenRecord)
                    .where(RefreshTokenRecord.family == row.family)
                    .values(revoked=True)
                )
                return "reused", None
            row.used_at = utcnow()
            session.add(_refresh_record(issued, user_id))
            return "ok", user

        # The revocation must commit, so refusals are raised here rather than inside rotate.
        outcome, user = await self.users.write(rotate)
        if outcome == "ok" and user is not None:
            return self._pair(user, epoch, issued)
        if outcome == "reused":
            logger.warning(
                "a used refresh token of user %s was presented again; its sign-in is revoked",
                user_id,
            )
            raise AuthenticationError(
                "refresh token already used; this sign-in was revoked, sign in again"
            )
        if outcome == "revoked":
            raise AuthenticationError("refresh token revoked; sign in again")
        if outcome == "inactive":
            raise AuthenticationError(DISABLED_OR_REMOVED)
        if outcome == "ended":
            raise AuthenticationError(SIGNED_OUT)
        raise AuthenticationError("invalid token")

    async def authenticate(self, token: str) -> Principal:
        """Return the caller of an access token as its account is now.

        The token proves who it was issued to; the users view says whether that account still
        exists and is active, with which role, and whether the token's sign-in still holds
        (its token epoch is the account's), so a change made through this service applies to
        the very next request. No query once the account is in the view.

        Raises:
            AuthenticationError: the token is expired or invalid, its account is disabled or
                removed, or its sign-in has ended.
            StoreError: the account was not in the view and the store failed to read it.
        """
        claimed = self.tokens.verify_access(token)
        entry = await self.users.entry(claimed.user_id)
        principal = entry.principal
        if principal is None:
            raise AuthenticationError(DISABLED_OR_REMOVED)
        if entry.epoch != claimed.epoch:
            raise AuthenticationError(SIGNED_OUT)
        return principal

    def authenticate_now(self, token: str) -> Principal | None:
        """:meth:`authenticate` from memory alone, for a path that must not wait.

        Returns:
            The caller; None when the token or the account is refused, or when the account
            must be read first (:meth:`authenticate` then gives the answer or the error).
        """
        try:
            claimed = self.tokens.verify_access(token)
        except AuthenticationError:
            return None
        entry = self.users.known(claimed.user_id)
        if entry is None or entry.epoch != claimed.epoch:
            return None
        return entry.principal

    def watch(self, principal: Principal, on_end: Callable[[], None]) -> SignInWatch:
        """Hold the sign-in of an open connection (a WebSocket) until it ends.

        ``on_end`` is called once, synchronously, when the account is removed, disabled, or
        signed out (a new password, a lower role): in the same step that makes later requests
        refused, or at once if that happened already. Use the watch as a context manager.
        """
        return self.users.watch(principal, on_end)

    def verify_access_token(self, token: str) -> Principal:
        """Return the caller named by an access token, from the token alone (cached).

        It does not look at the account: a token of a disabled or removed account passes
        until it expires, and the role is the one at issue. Use :meth:`authenticate` to admit
        a caller.

        Raises:
            AuthenticationError: "token expired" or "invalid token".
        """
        return self.tokens.verify_access(token)

    def _pair(self, user: User, epoch: int, refresh: IssuedRefresh) -> TokenPair:
        access = self.tokens.issue_access(user.id, user.username, user.role, epoch=epoch)
        return TokenPair(
            access_token=access,
            refresh_token=refresh.token,
            expires_in=self.tokens.access_ttl,
            client_token=self.tokens.issue_client(user.id, user.username, epoch=epoch),
        )

    # -- email verification -----------------------------------------------------------------

    async def verify_email(self, token: str) -> User:
        """Mark the email a verification token was issued for as verified.

        Verifying twice is harmless. A token issued before the user's address changed is
        refused.

        Raises:
            InvalidRequestError: the token is expired, invalid, or its account or address is
                gone.
        """
        try:
            claims = self.tokens.decode(token, "verify")
        except AuthenticationError as exc:
            if exc.message == "token expired":
                raise InvalidRequestError(
                    "email verification token expired; ask an admin to run"
                    " `vareon user verify <username>`"
                ) from None
            raise InvalidRequestError("invalid email verification token") from None
        user_id: str = claims["sub"]
        email = claims.get("email")

        def mark(session: Session, notes: UserNotes) -> User | None:
            record = session.get(UserRecord, user_id)
            if record is None or record.email is None or record.email != email:
                return None
            record.email_verified = True
            return _noted(notes, record)

        user = await self.users.write(mark)
        if user is None:
            raise InvalidRequestError(
                "invalid email verification token: its account or address no longer exists"
            )
        logger.info("%s verified %s", user.username, user.email)
        return user

    async def mark_verified(self, username: str) -> User:
        """Mark a user's email as verified without a token (``vareon user verify``).

        Raises:
            NotFoundError: no user has that name.
        """

        def mark(session: Session, notes: UserNotes) -> User:
            record = _by_username(session, username)
            if record is None:
                raise NotFoundError(f"no user named {username!r}")
            record.email_verified = True
            return _noted(notes, record)

        return await self.users.write(mark)

    async def send_verification(self, user_id: str) -> None:
        """Issue a new verification token for the user and deliver it (mail or log).

        Does nothing for a user without an email or already verified.

        Raises:
            NotFoundError: no such user.
        """
        self._deliver_verification(await self.get_user(user_id))

    def _deliver_verification(self, user: User) -> None:
        # Queued, never sent here: the mailer sends it (and logs a failure) on its own time.
        if user.email is None or user.email_verified:
            return
        token = self.tokens.issue_verification(user.id, user.email)
        if self.mailer is None:
            logger.warning(
                "email verification token for %s: %s — confirm with `vareon user verify %s`"
                " or GET /api/verify-email?token=%s",
                user.username,
                token,
                user.username,
                token,
            )
            return
        body = (
            f"Hello {user.username},\n\n"
            f"confirm this address for your account on the Vareon runtime"
            f" {self.config.runtime.name!r} with the token below (valid for"
            f" {self.tokens.verify_ttl // 3600} hours):\n\n{token}\n\n"
            f"Open /api/verify-email?token={token} on the runtime, or ask its admin to run"
            f" `vareon user verify {user.username}`.\n"
        )
        self.mailer.submit(
            Mail(
                to=user.email,
                subject="Confirm your email address",
                body=body,
                what=f"the verification token of {user.username}",
                remedy=f"confirm it with `vareon user verify {user.username}`",
            )
        )

    # -- internals --------------------------------------------------------------------------

    async def _create(
        self, username: str, email: str | None, password: str, role: Role, *, verified: bool
    ) -> User:
        username = check_username(username)
        email = None if email is None else check_email(email)
        check_password(password)
        password_hash = await self.passwords.hash(password)
        user_id = str(uuid.uuid4())

        def insert(session: Session, notes: UserNotes) -> User:
            if _by_username(session, username) is not None:
                raise ConflictError(
                    f"username {username!r} is taken; choose another",
                    details={"field": "username"},
                )
            if email is not None and session.scalars(
                select(UserRecord.id).where(UserRecord.email == email)
            ).first() is not None:
                raise ConflictError(
                    f"email {email!r} is already registered; sign in instead",
                    details={"field": "email"},
                )
            now = utcnow()
            record = UserRecord(
                id=user_id,
                username=username,
                email=email,
                password_hash=password_hash,
                role=role.value,
                email_verified=verified,
                is_active=True,
                token_epoch=0,
                created_at=now,
                updated_at=now,
            )
            session.add(record)
            session.flush()
            return _noted(notes, record)

        return await self.users.write(insert)


def _role(role: Role | str) -> Role:
    try:
        return Role(role)
    except ValueError:
        raise InvalidRequestError(
            f"role must be one of {', '.join(r.value for r in Role)}, not {role!r}",
            details={"field": "role"},
        ) from None


def _refresh_record(issued: IssuedRefresh, user_id: str) -> RefreshTokenRecord:
    return RefreshTokenRecord(
        jti=issued.jti,
        family=issued.family,
        user_id=user_id,
        created_at=utcnow(),
        expires_at=issued.expires_at,
        revoked=False,
    )


def _account(record: UserRecord) -> _Account:
    return _Account(
        id=record.id,
        username=record.username,
        password_hash=record.password_hash,
        is_active=record.is_active,
        token_epoch=record.token_epoch,
    )


def _who(by: str | None) -> str:
    return "an admin" if by is None else f"the admin {by!r}"


def _existing(user: User | None, user_id: str) -> User:
    if user is None:
        raise NotFoundError(f"no user with id {user_id!r}")
    return user
