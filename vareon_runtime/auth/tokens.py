"""JSON Web Tokens (HS256): access, refresh, known-client and email verification tokens, and
their key.

The key is ``[auth] jwt_secret`` when set, else a random key generated once into
``<data_dir>/secrets/jwt.key`` (mode 0600, directory 0700) and reused by every later start.
Neither the key nor a token is ever logged.

Checking an access token is on the path of every request, so verified tokens are kept in a
bounded LRU cache keyed by the token string: a hit costs a dict lookup and a clock read. A
cached token still expires at its ``exp``.

Access and refresh tokens carry the account's token epoch (``ep``) they were issued under: the
auth service refuses a token whose epoch is not the account's current one, so raising the epoch
ends every sign-in at once. A known-client token (``client``) is what a browser keeps after a
successful sign-in; it admits nothing by itself, it only tells the login throttle that this
client signed in as that user before (decision 0025).
"""

from __future__ import annotations

import logging
import os
import secrets
import time
from collections import OrderedDict
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Literal

from vareon_runtime.auth.roles import Role
from vareon_runtime.auth.schemas import Principal
from vareon_runtime.checks import check_counts
from vareon_runtime.config import JWT_SECRET_MIN_LENGTH, Config
from vareon_runtime.errors import AuthenticationError, ConfigError

__all__ = [
    "ALGORITHM",
    "CLIENT_TTL",
    "KEY_FILE",
    "VERIFY_TTL",
    "IssuedRefresh",
    "TokenKind",
    "Tokens",
    "load_signing_key",
]

logger = logging.getLogger("vareon.auth")

ALGORITHM = "HS256"
KEY_FILE = Path("secrets") / "jwt.key"
VERIFY_TTL = 48 * 3600
CLIENT_TTL = 90 * 24 * 3600
"""Seconds a known-client token lives; each successful sign-in from the client renews it."""
TokenKind = Literal["access", "refresh", "verify", "client"]

_REQUIRED = ["exp", "iat", "sub", "jti", "type"]


def load_signing_key(config: Config) -> bytes:
    """Return the JWT signing key: ``[auth] jwt_secret``, or the data directory's key file.

    The file is created on first use with a fresh ``secrets.token_hex(32)``, mode 0600, in a
    directory of mode 0700; later calls read it back.

    Raises:
        ConfigError: the key file cannot be read or written, or holds too short a key.
    """
    secret = config.auth.jwt_secret
    if secret is not None:
        return secret.get_secret_value().encode()
    path = config.data_dir_path / KEY_FILE
    try:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.chmod(path.parent, 0o700)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            return _read_key(path)
        with os.fdopen(fd, "w", encoding="ascii") as file:
            file.write(secrets.token_hex(32) + "\n")
            file.flush()
            os.fsync(file.fileno())
    except OSError as exc:
        raise ConfigError(
            f"{path}: cannot create the JWT key file: {exc.strerror or exc}; make the data"
            " directory writable or set VAREON_AUTH_JWT_SECRET"
        ) from exc
    logger.info("generated a new JWT signing key in %s", path)
    return _read_key(path)


def _read_key(path: Path) -> bytes:
    try:
        mode = path.stat().st_mode & 0o777
        if mode & 0o077:
            logger.warning("%s was readable by others (mode %o); setting it to 0600", path, mode)
            os.chmod(path, 0o600)
        key = path.read_text(encoding="ascii").strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read the JWT key file: {exc}") from exc
    if len(key) < JWT_SECRET_MIN_LENGTH:
        raise ConfigError(
            f"{path}: the JWT key must be at least {JWT_SECRET_MIN_LENGTH} characters, not"
            f" {len(key)}; delete the file to have a new one generated (this signs everyone out)"
        )
    return key.encode()


@dataclass(frozen=True, slots=True)
class IssuedRefresh:
    """A refresh token and what the store keeps about it."""

    token: str
    jti: str
    family: str
    expires_at: datetime


class Tokens:
    """Issue and check the runtime's JWTs.

    Args:
        key: the HS256 key (:func:`load_signing_key`).
        access_ttl: seconds an access token lives.
        refresh_ttl: seconds a refresh token lives.
        verify_ttl: seconds an email verification token lives.
        client_ttl: seconds a known-client token lives.
        cache_size: verified access tokens remembered.
    """

    def __init__(
        self,
        key: bytes,
        *,
        access_ttl: int,
        refresh_ttl: int,
        verify_ttl: int = VERIFY_TTL,
        client_ttl: int = CLIENT_TTL,
        cache_size: int = 4096,
    ) -> None:
        check_counts({"cache_size": cache_size})
        self._key = key
        self.access_ttl = access_ttl
        self.refresh_ttl = refresh_ttl
        self.verify_ttl = verify_ttl
        self.client_ttl = client_ttl
        self._cache: OrderedDict[str, tuple[Principal, float]] = OrderedDict()
        self._cache_size = cache_size

    def __repr__(self) -> str:
        return f"Tokens(access_ttl={self.access_ttl}, refresh_ttl={self.refresh_ttl})"

    def issue_access(
        self,
        user_id: str,
        username: str,
        role: Role,
        *,
        epoch: int = 0,
        now: float | None = None,
    ) -> str:
        """Return a signed access token.

        Args:
            epoch: the account's token epoch (``ep``).
            now: issue time in seconds since the epoch (default: now), for tests and tools.
        """
        return self._encode(
            {"sub": user_id, "name": username, "role": role.value, "ep": epoch},
            "access",
            self.access_ttl,
            now,
        )

    def issue_refresh(
        self,
        user_id: str,
        *,
        epoch: int = 0,
        family: str | None = None,
        now: float | None = None,
    ) -> IssuedRefresh:
        """Return a refresh token under the account's token ``epoch``, new in ``family`` (a
        new family when None)."""
        family = family or secrets.token_hex(16)
        jti = secrets.token_hex(16)
        issued = time.time() if now is None else now
        token = self._encode(
            {"sub": user_id, "fam": family, "ep": epoch},
            "refresh",
            self.refresh_ttl,
            issued,
            jti=jti,
        )
        expires_at = datetime.fromtimestamp(int(issued) + self.refresh_ttl, tz=timezone.utc)
        return IssuedRefresh(token=token, jti=jti, family=family, expires_at=expires_at)

    def issue_verification(
        self, user_id: str, email: str, *, now: float | None = None
    ) -> str:
        """Return an email verification token for ``email`` of the user."""
        return self._encode({"sub": user_id, "email": email}, "verify", self.verify_ttl, now)

    def issue_client(
        self, user_id: str, username: str, *, epoch: int, now: float | None = None
    ) -> str:
        """Return a known-client token: this client signed in as the user under ``epoch``."""
        return self._encode(
            {"sub": user_id, "name": username, "ep": epoch}, "client", self.client_ttl, now
        )

    def decode(self, token: str, kind: TokenKind) -> dict[str, Any]:
        """Check ``token``'s signature, expiry and kind; return its claims.

        Raises:
            AuthenticationError: "token expired", or "invalid token" (malformed, not ASCII,
                signed with another key, or of another kind).
        """
        if not isinstance(token, str) or not token.isascii():
            # A JWT is base64url and dots. Anything else is no token, and PyJWT would fail to
            # encode a lone surrogate (UnicodeEncodeError) instead of refusing it.
            raise AuthenticationError("invalid token")
        import jwt  # PyJWT (and the http.client it brings) at the first token, not at boot

        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                self._key,
                algorithms=[ALGORITHM],
                options={"require": _REQUIRED},
            )
        except jwt.ExpiredSignatureError:
            raise AuthenticationError("token expired") from None
        except (jwt.InvalidTokenError, UnicodeError):
            # No chaining: PyJWT's message may quote parts of the token.
            raise AuthenticationError("invalid token") from None
        if claims.get("type") != kind:
            raise AuthenticationError(
                f"invalid token: it is of type {claims.get('type')!r}, expected {kind!r}"
            )
        return claims

    def verify_access(self, token: str) -> Principal:
        """Return the caller named by a valid access token (cached), with its ``epoch``.

        Raises:
            AuthenticationError: the token is expired, tampered with, or not an access token.
        """
        cached = self._cache.get(token)
        if cached is not None:
            principal, expires = cached
            if time.time() < expires:
                self._cache.move_to_end(token)
                return principal
            del self._cache[token]
            raise AuthenticationError("token expired")
        claims = self.decode(token, "access")
        try:
            epoch = claims.get("ep", 0)  # tokens issued before epochs existed: epoch 0
            if not isinstance(epoch, int) or isinstance(epoch, bool):
                raise TypeError("ep")
            principal = Principal(
                user_id=claims["sub"],
                username=claims["name"],
                role=Role(claims["role"]),
                epoch=epoch,
            )
        except (KeyError, ValueError, TypeError):
            raise AuthenticationError("invalid token") from None
        self._cache[token] = (principal, float(claims["exp"]))
        if len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)
        return principal

    def forget(self) -> None:
        """Drop every cached verification (say after a user's role changed)."""
        self._cache.clear()

    def _encode(
        self,
        claims: dict[str, Any],
        kind: TokenKind,
        ttl: int,
        now: float | None,
        *,
        jti: str | None = None,
    ) -> str:
        issued = int(time.time() if now is None else now)
        payload = {
            **claims,
            "type": kind,
            "iat": issued,
            "exp": issued + ttl,
            "jti": jti or secrets.token_hex(16),
        }
        import jwt

        return jwt.encode(payload, self._key, algorithm=ALGORITHM)
