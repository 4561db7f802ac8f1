"""Accounts and tokens (seed 002): register, OAuth2 password login, refresh, verify, me, and
one's own change of password.

Every handler validates, calls the kernel's auth service (``ctx.auth``) and shapes its answer;
the service raises the 401/403/409/422/429 errors itself.

A successful sign-in also sets the ``vareon_client`` cookie: the known-client token (HttpOnly,
SameSite=Strict, path ``/api/token``, 90 days; Secure when served over HTTPS). A browser sends
it back with its next sign-ins, which are then counted apart from strangers' failures: nobody
without the password can lock its owner out (decision 0025). The token admits nothing by itself.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field
from quart import Blueprint, request
from quart_schema import validate_querystring, validate_request, validate_response
from werkzeug.http import dump_cookie

from vareon_runtime.auth import PASSWORD_MAX, PASSWORD_MIN, Principal, Role, TokenPair, User
from vareon_runtime.component import RuntimeContext

from .direct import direct
from .client import current_client
from .context import current_context
from .errors import answers
from .permissions import current_principal, public, requires
from .schemas import (
    RefreshRequest,
    RegisterRequest,
    TokenRequest,
    TokenResponse,
    VerifyEmailQuery,
    VerifyEmailRequest,
)
from .validation import validate_body

__all__ = ["CLIENT_COOKIE", "PasswordChange", "blueprint", "token_reply"]

CLIENT_COOKIE = "vareon_client"
"""The cookie that carries a browser's known-client token (sent back to ``/api/token`` only)."""
_CLIENT_COOKIE_PATH = "/api/token"

blueprint = Blueprint("auth", __name__)


class PasswordChange(BaseModel):
    """One's own change of password: the current one proves it is the owner asking."""

    current_password: str = Field(min_length=1, max_length=PASSWORD_MAX)
    new_password: str = Field(min_length=PASSWORD_MIN, max_length=PASSWORD_MAX)


def token_reply(pair: TokenPair) -> tuple[TokenResponse, int, dict[str, Any]]:
    """A token pair as a 200 answer, its known-client token in the ``vareon_client`` cookie."""
    headers: dict[str, Any] = {}
    if pair.client_token is not None:
        headers["Set-Cookie"] = dump_cookie(
            CLIENT_COOKIE,
            pair.client_token,
            max_age=current_context().auth.tokens.client_ttl,
            path=_CLIENT_COOKIE_PATH,
            secure=request.scheme == "https",
            httponly=True,
            samesite="Strict",
        )
    return TokenResponse.of(pair), 200, headers


@blueprint.post("/api/register")
@public
@answers(409, "the username or email is taken")
@validate_request(RegisterRequest)
@validate_response(User, 201)
async def register(data: RegisterRequest) -> tuple[User, int]:
    """Create an account (role viewer); its email stays unverified until confirmed.

    Each client address may register a few accounts per window (429, Retry-After).
    """
    user = await current_context().auth.register(
        data.username, data.email, data.password, client=current_client()
    )
    return user, 201


@blueprint.post("/api/token")
@public
@answers(401, "wrong username or password, or the account is disabled")
@validate_body(TokenRequest)
@validate_response(TokenResponse)
async def token(data: TokenRequest) -> tuple[TokenResponse, int, dict[str, Any]]:
    """Log in (OAuth2 password grant, form or JSON): an access and a refresh token.

    Repeated failures from one address, or for one user from one address, are refused for a
    while (429, Retry-After); failures for a user from anywhere only slow its next sign-ins.
    The answer sets the `vareon_client` cookie: sent back with a later sign-in of the same
    user, it counts that sign-in apart from everyone else's failures.
    """
    pair = await current_context().auth.login(
        data.username,
        data.password,
        current_client(),
        known_client=request.cookies.get(CLIENT_COOKIE),
    )
    return token_reply(pair)


@blueprint.post("/api/token/refresh")
@public
@answers(401, "the refresh token is not valid (expired, used, revoked)")
@validate_body(RefreshRequest)
@validate_response(TokenResponse)
async def refresh(data: RefreshRequest) -> TokenResponse:
    """Trade a refresh token (the credential; used up) for a new token pair."""
    pair = await current_context().auth.refresh(data.refresh_token)
    return TokenResponse.of(pair)


@blueprint.get("/api/verify-email")
@public
@validate_querystring(VerifyEmailQuery)
@validate_response(User)
async def verify_email_link(query_args: VerifyEmailQuery) -> User:
    """Confirm an email address with the token from the verification mail (the link form)."""
    user = await current_context().auth.verify_email(query_args.token)
    return user


@blueprint.post("/api/verify-email")
@public
@validate_request(VerifyEmailRequest)
@validate_response(User)
async def verify_email(data: VerifyEmailRequest) -> User:
    """Confirm an email address with its verification token."""
    user = await current_context().auth.verify_email(data.token)
    return user


def _me(ctx: RuntimeContext, principal: Principal | None) -> User | None:
    assert principal is not None, "a @requires route has a caller"
    return ctx.auth.account_now(principal.user_id)  # None: the view reads it


@blueprint.get("/api/users/me")
@requires(Role.VIEWER)
@direct(_me)
@validate_response(User)
async def me() -> User:
    """The caller's account."""
    # From the users view, which admitted the caller a moment ago (read if not in memory).
    return await current_context().auth.account(current_principal().user_id)


@blueprint.post("/api/users/me/password")
@requires(Role.VIEWER)
@answers(429, "too many wrong current passwords from this address; wait for Retry-After")
@validate_request(PasswordChange)
@validate_response(TokenResponse)
async def change_password(data: PasswordChange) -> tuple[TokenResponse, int, dict[str, Any]]:
    """Change one's own password (the current one is required): every other sign-in ends.

    The answer is a fresh token pair for the caller (its old tokens end with the others). A
    wrong current password is 422 and counts as a failed sign-in from this address (429 after
    too many).
    """
    pair = await current_context().auth.change_password(
        current_principal().user_id, data.current_password, data.new_password, current_client()
    )
    return token_reply(pair)
