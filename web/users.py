"""User administration (admins): list the accounts, read one, change its role or active flag.

Paths and fields as `API.md` names them (snake_case, the auth routes' case): `GET /api/users`
(a page: `?limit=`, `?offset=`, `?role=`, `?is_active=`; the total in `X-Total-Count`),
`GET /api/users/{id}`, `PUT /api/users/{id}` with `role`, `is_active` or both. A lower role or a
deactivation ends every sign-in of the user at once (its tokens are refused, its WebSockets
closed); the last active admin cannot lose its role nor be deactivated (409). The changes are the
auth service's (`Auth.update_user`), which also writes them to the log.
"""

from __future__ import annotations

from pydantic import Field, StrictBool
from quart import Blueprint
from quart_schema import validate_querystring, validate_request, validate_response

from actors.kit.parsing import parse_id
from actors.kit.wire import Page, SnakeModel
from vareon_runtime.auth import Role, User
from vareon_runtime.errors import InvalidRequestError

from .context import current_context
from .kit import PageQuery, page_reply
from .permissions import current_principal, requires

__all__ = ["UserChange", "UserQuery", "blueprint"]

blueprint = Blueprint("users", __name__)


class UserQuery(PageQuery):
    """A page of the accounts, oldest first."""

    role: Role | None = Field(None, description="Only the accounts with this role.")
    is_active: bool | None = Field(None, description="Only the active (true) or the deactivated (false) accounts.")


class UserChange(SnakeModel):
    """What an admin changes about an account: its role, its active flag, or both."""

    role: Role | None = Field(None, description="`admin`, `operator` or `viewer`.")
    is_active: StrictBool | None = Field(None, description="false: deactivate (every sign-in ends); true: let it sign in again.")


@blueprint.get("/api/users")
@requires(Role.ADMIN)
@validate_querystring(UserQuery)
@validate_response(list[User])
async def list_users(query_args: UserQuery) -> tuple[list[User], int, dict[str, str]]:
    """The accounts, oldest first (`?role=`, `?is_active=`); the total in `X-Total-Count`."""
    users, total = await current_context().auth.list_users(**query_args.model_dump())
    return page_reply(Page(users, total))


@blueprint.get("/api/users/<user_id>")
@requires(Role.ADMIN)
@validate_response(User)
async def get_user(user_id: str) -> User:
    """One account, as the database has it."""
    return await current_context().auth.get_user(parse_id(user_id, "user"))


@blueprint.put("/api/users/<user_id>")
@requires(Role.ADMIN)
@validate_request(UserChange)
@validate_response(User)
async def update_user(user_id: str, data: UserChange) -> User:
    """Change an account's role or active flag.

    A lower role or a deactivation ends every sign-in of the account at once: its access and
    refresh tokens are refused and its WebSockets closed. The last active admin cannot be made
    operator or viewer, nor deactivated (409).
    """
    if data.role is None and data.is_active is None:
        raise InvalidRequestError(
            "nothing to change: send role, is_active or both", details={"field": "role"}
        )
    return await current_context().auth.update_user(
        parse_id(user_id, "user"),
        role=data.role,
        is_active=data.is_active,
        by=current_principal().username,
    )
