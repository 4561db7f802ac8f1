"""Accounts and tokens (seed 002): register, OAuth2 password login, refresh, verify, me.

Every handler validates, calls the kernel's auth service (``ctx.auth``) and shapes its answer;
the service raises the 401/403/409/422/429 errors itself.
"""

from __future__ import annotations

from quart import Blueprint
from quart_schema import validate_querystring, validate_request, validate_response

from vareon_runtime.auth import Principal, Role, User
from vareon_runtime.component import RuntimeContext

from .direct import direct
from .client import current_client
from .context import current_context
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

__all__ = ["blueprint"]

blueprint = Blueprint("auth", __name__)


@blueprint.post("/api/register")
@public
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
@validate_body(TokenRequest)
@validate_response(TokenResponse)
async def token(data: TokenRequest) -> TokenResponse:
    """Log in (OAuth2 password grant, form or JSON): an access and a refresh token.

    Repeated failures for one user or one address are refused for a while (429, Retry-After).
    """
    pair = await current_context().auth.login(data.username, data.password, current_client())
    return TokenResponse.of(pair)


@blueprint.post("/api/token/refresh")
@public
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
