"""Wire shapes of the auth service: ``User``, ``TokenPair``, ``Principal``."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from vareon_runtime.auth.roles import Role
from vareon_runtime.errors import PermissionDeniedError

__all__ = ["Principal", "TokenPair", "User"]


class User(BaseModel):
    """A user as the API shows it; never carries the password hash."""

    model_config = ConfigDict(from_attributes=True)

    id: str
    username: str
    # None for an account an admin created without an address (`vareon user create`).
    email: str | None
    role: Role
    email_verified: bool
    is_active: bool
    created_at: datetime


class TokenPair(BaseModel):
    """What a login or a refresh returns (the OAuth2 token response)."""

    access_token: str
    refresh_token: str
    token_type: Literal["bearer"] = "bearer"
    expires_in: int
    """Seconds until the access token expires."""
    client_token: str | None = Field(default=None, exclude=True, repr=False)
    """A sign-in's known-client token, for the client to keep (the web front's cookie; never
    in a body): its next sign-ins are counted apart from strangers' (decision 0025)."""


class Principal(BaseModel):
    """Who is calling, as read from a verified access token."""

    model_config = ConfigDict(frozen=True)

    user_id: str
    username: str
    role: Role
    epoch: int = 0
    """The account's token epoch the caller was admitted under (decision 0025)."""

    def allows(self, required: Role) -> bool:
        """Return whether the caller's role covers ``required``."""
        return self.role.allows(required)

    def require(self, required: Role) -> None:
        """Refuse unless the caller's role covers ``required``.

        Raises:
            PermissionDeniedError: the role is too low; the message names both roles.
        """
        if not self.role.allows(required):
            raise PermissionDeniedError(
                f"this needs the {required.value} role; {self.username} is {self.role.value}",
                details={"required": required.value, "role": self.role.value},
            )
