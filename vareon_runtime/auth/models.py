"""The auth tables: ``users`` and the ``refresh_tokens`` that rotate on every refresh.

Both live on the kernel's :class:`~vareon_runtime.store.Base`; their migration is the kernel
revision ``0002_auth`` (``token_epoch``: ``0004_users_token_epoch``).
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Boolean, ForeignKey, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from vareon_runtime.clock import utcnow
from vareon_runtime.store.models import Base, UTCDateTime

__all__ = ["RefreshTokenRecord", "UserRecord"]

USERNAME_MAX = 64
EMAIL_MAX = 254  # RFC 5321's limit on a forward path


class UserRecord(Base):
    """One account. ``role`` holds a :class:`~vareon_runtime.auth.roles.Role` value."""

    __tablename__ = "users"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    username: Mapped[str] = mapped_column(String(USERNAME_MAX), unique=True)
    # Lowercased; NULL for accounts created by an admin without one (NULLs never collide).
    email: Mapped[str | None] = mapped_column(String(EMAIL_MAX), unique=True, nullable=True)
    # The argon2 PHC string ($argon2id$v=19$m=...,t=...,p=...$salt$hash).
    password_hash: Mapped[str] = mapped_column(String(255))
    role: Mapped[str] = mapped_column(String(16))
    email_verified: Mapped[bool] = mapped_column(Boolean, default=False)
    is_active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, onupdate=utcnow)
    last_login_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    # Every token of the account carries the epoch it was issued under; raising it ends every
    # sign-in at once (a new password, a lower role, a deactivation: decision 0025).
    token_epoch: Mapped[int] = mapped_column(Integer, default=0, server_default="0")

    def __repr__(self) -> str:
        return f"UserRecord(id={self.id!r}, username={self.username!r}, role={self.role!r})"


class RefreshTokenRecord(Base):
    """One issued refresh token, by its ``jti``.

    A refresh uses its token up (``used_at``) and issues the next one in the same ``family``
    (the chain that started at one login). Presenting a used token again means it leaked: the
    whole family is revoked, so both the thief and the user have to sign in again.
    """

    __tablename__ = "refresh_tokens"

    jti: Mapped[str] = mapped_column(String(64), primary_key=True)
    family: Mapped[str] = mapped_column(String(64), index=True)
    user_id: Mapped[str] = mapped_column(
        String(36), ForeignKey("users.id", ondelete="CASCADE"), index=True
    )
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime())
    used_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    revoked: Mapped[bool] = mapped_column(Boolean, default=False)

    def __repr__(self) -> str:
        return f"RefreshTokenRecord(jti={self.jti!r}, user_id={self.user_id!r})"
