"""Wire shapes of the auth and system routes (seed 002: snake_case on the wire).

Requests check shape (types, presence, sane lengths); the rules (password strength, a taken
username) are the auth service's, which answers 409 or 422 itself. A registration also checks
the service's field rules in its schema, so that every field's problem is in one answer. Times
go out as ISO 8601 in UTC with a ``Z``.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, Field, PlainSerializer, WithJsonSchema
from pydantic_core import PydanticCustomError

from vareon_runtime.auth import (
    PASSWORD_MAX,
    PASSWORD_MIN,
    TokenPair,
    check_email,
    check_username,
)
from vareon_runtime.clock import isoformat
from vareon_runtime.errors import InvalidRequestError

__all__ = [
    "ErrorBody",
    "ErrorResponse",
    "HealthResponse",
    "JournalEvent",
    "ModuleStatus",
    "RefreshRequest",
    "RegisterRequest",
    "StoreStatus",
    "SystemStatus",
    "Timestamp",
    "TokenRequest",
    "TokenResponse",
    "Uptime",
    "VerifyEmailQuery",
    "VerifyEmailRequest",
]

Timestamp = Annotated[
    datetime,
    PlainSerializer(isoformat, return_type=str),
    WithJsonSchema({"type": "string", "format": "date-time"}),
]
"""A datetime sent as ISO 8601 UTC with a ``Z`` suffix."""

# Bounds that only keep absurd input out (a megabyte "password" would still cost a KDF run).
_NAME = Field(min_length=1, max_length=64)
_SECRET = Field(min_length=1, max_length=PASSWORD_MAX)
_TOKEN = Field(min_length=1, max_length=4096)


class ErrorBody(BaseModel):
    code: str = Field(examples=["not_found"])
    message: str
    details: Any = None


class ErrorResponse(BaseModel):
    """Every 4xx and 5xx answer."""

    error: ErrorBody


# --------------------------------------------------------------------------- auth


def _rule(check: Callable[[str], str]) -> AfterValidator:
    """An auth service rule as a field's validator, its message as is (no "Value error, "): a
    request whose fields break rules and shapes together is refused once, naming each field."""

    def validate(value: str) -> str:
        try:
            return check(value)
        except InvalidRequestError as exc:
            raise PydanticCustomError("value_error", exc.message) from None

    return AfterValidator(validate)


class RegisterRequest(BaseModel):
    username: Annotated[str, _rule(check_username)] = Field(
        max_length=64, description="3 to 64 letters, digits, `_`, `.`, `-`."
    )
    email: Annotated[str, _rule(check_email)] = Field(
        max_length=254, description="An address like name@example.com."
    )
    password: str = Field(min_length=PASSWORD_MIN, max_length=PASSWORD_MAX)


class TokenRequest(BaseModel):
    """OAuth2 password grant, as a form (``application/x-www-form-urlencoded``) or JSON."""

    grant_type: Literal["password"] = "password"
    username: str = _NAME
    password: str = _SECRET


class RefreshRequest(BaseModel):
    grant_type: Literal["refresh_token"] = "refresh_token"
    refresh_token: str = _TOKEN


class VerifyEmailRequest(BaseModel):
    token: str = _TOKEN


class VerifyEmailQuery(BaseModel):
    token: str = _TOKEN


class TokenResponse(BaseModel):
    """An access token (Bearer) and the refresh token that renews it."""

    access_token: str
    refresh_token: str
    token_type: Literal["bearer"] = "bearer"
    expires_in: int = Field(description="Seconds until the access token expires.")

    @classmethod
    def of(cls, pair: TokenPair) -> TokenResponse:
        return cls(
            access_token=pair.access_token,
            refresh_token=pair.refresh_token,
            token_type=pair.token_type,
            expires_in=pair.expires_in,
        )


# --------------------------------------------------------------------------- system


class HealthResponse(BaseModel):
    """The process answers; no authentication needed."""

    status: Literal["ok"] = "ok"
    version: str


class Uptime(BaseModel):
    seconds: float
    text: str = Field(examples=["2 days, 3:04:05"])


class ModuleStatus(BaseModel):
    """One child of the root supervisor (a domain supervisor, the journal, the web front)."""

    name: str
    kind: str
    status: str = Field(examples=["running", "failed"])
    restarts: int
    last_error: str | None
    started_at: Timestamp | None
    uptime: Uptime | None = Field(description="Since the last (re)start; null unless running.")


class StoreStatus(BaseModel):
    queue_depth: int = Field(description="Writes waiting for the next group commit.")


class JournalEvent(BaseModel):
    """A crash, restart or give-up recorded by the journal."""

    id: int
    time: Timestamp
    source: str
    kind: str
    message: str
    details: Any = None


class SystemStatus(BaseModel):
    """The runtime as a whole: version, uptime, modules, live actors, store, recent failures."""

    name: str
    version: str
    started_at: Timestamp
    uptime: Uptime
    modules: list[ModuleStatus]
    actors: dict[str, int] = Field(description="Live actors by kind (agent, device, ...).")
    store: StoreStatus
    failures: list[JournalEvent] = Field(description="The journal's last 20 records, newest first.")
