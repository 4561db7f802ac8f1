"""Who may call what: every view declares its access, and undeclared means refused.

Mark each view function right under its route decorator::

    @bp.get("/api/users/me")
    @requires(Role.VIEWER)
    async def me(): ...

- ``@public``: no token needed (``/health``, ``/api/token``, ...);
- ``@requires(role)``: a valid ``Authorization: Bearer <access token>`` of an active account
  whose current role allows ``role`` (admin ⊇ operator ⊇ viewer); the caller's
  :class:`Principal` is then ``g.principal``;
- ``@websocket_auth``: a WebSocket endpoint that authenticates inside its own protocol (the first
  message carries the token), so the handshake is let through.

The checks run before the view (``before_request`` / ``before_websocket``): no token or a bad one,
or one of an account disabled or removed since, is 401 with ``WWW-Authenticate: Bearer``, a role
too low is 403, and a view with no marker is 403 and logged as a bug (fail closed). The caller's
account and role come from the auth service's users view, as they are now.
:func:`caller_now` applies the same rules from memory alone, for the routes the connection
answers without Quart (``web.direct.direct``): it admits, or leaves the request to the full check.
:func:`route_access` lists every route with its access; the route x role test and the OpenAPI
security requirements are built from it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, Literal, NamedTuple, TypeVar

from quart import Quart, current_app, g, request, websocket

from vareon_runtime.auth import Auth, Principal, Role
from vareon_runtime.errors import AuthenticationError, PermissionDeniedError

from .context import current_context

__all__ = [
    "PUBLIC",
    "WEBSOCKET_AUTH",
    "Access",
    "RouteAccess",
    "access_of",
    "bearer_token",
    "caller_now",
    "current_principal",
    "install_permissions",
    "public",
    "requires",
    "route_access",
    "websocket_auth",
]

log = logging.getLogger("vareon.web")

PUBLIC: Literal["public"] = "public"
WEBSOCKET_AUTH: Literal["websocket"] = "websocket"
Access = Role | Literal["public", "websocket"]

_ATTRIBUTE = "_vareon_access"
_SKIPPED_METHODS = frozenset({"HEAD", "OPTIONS"})  # HEAD answers as GET; OPTIONS is not served

F = TypeVar("F", bound=Callable[..., Any])


class RouteAccess(NamedTuple):
    """One route and method with the access its view declares (None: undeclared, a bug)."""

    rule: str
    method: str  # "WEBSOCKET" for a WebSocket route
    access: Access | None


def _mark(view: F, access: Access) -> F:
    current = getattr(view, _ATTRIBUTE, None)
    if current is not None and current != access:
        raise ValueError(
            f"{view.__qualname__} already declares access {current!r}; it cannot also declare"
            f" {access!r}: keep one marker"
        )
    setattr(view, _ATTRIBUTE, access)
    return view


def public(view: F) -> F:
    """Mark a view as callable without a token."""
    return _mark(view, PUBLIC)


def requires(role: Role) -> Callable[[F], F]:
    """Mark a view as needing a valid access token whose role allows ``role``.

    Raises:
        TypeError: ``role`` is not a :class:`Role` (for example ``@requires`` without brackets).
    """
    if not isinstance(role, Role):
        raise TypeError(f"requires() takes a Role such as Role.VIEWER, not {role!r}")

    def decorator(view: F) -> F:
        return _mark(view, role)

    return decorator


def websocket_auth(view: F) -> F:
    """Mark a WebSocket view that authenticates inside its protocol (token in a message)."""
    return _mark(view, WEBSOCKET_AUTH)


def access_of(view: Callable[..., Any] | None) -> Access | None:
    """The access a view declares, or None when it declares none."""
    return getattr(view, _ATTRIBUTE, None)


def route_access(app: Quart) -> list[RouteAccess]:
    """Every route of ``app`` and method it serves, with the access its view declares.

    HEAD (served by the GET view) and automatic OPTIONS are left out; WebSocket routes appear
    with the method ``"WEBSOCKET"``.
    """
    routes: list[RouteAccess] = []
    for rule in app.url_map.iter_rules():
        access = access_of(app.view_functions.get(rule.endpoint))
        if rule.websocket:
            routes.append(RouteAccess(rule.rule, "WEBSOCKET", access))
            continue
        for method in sorted(rule.methods or ()):
            if method in _SKIPPED_METHODS:
                continue
            routes.append(RouteAccess(rule.rule, method, access))
    return sorted(routes)


def current_principal() -> Principal:
    """The authenticated caller of the current request.

    Raises:
        AuthenticationError: the view is public, so nobody was authenticated.
    """
    principal: Principal | None = g.get("principal")
    if principal is None:
        raise AuthenticationError("this endpoint did not authenticate its caller")
    return principal


def install_permissions(app: Quart) -> None:
    """Check every request and WebSocket handshake against its view's declared access."""
    app.before_request(_check_request)
    app.before_websocket(_check_websocket)


def caller_now(
    access: Access | None, authorization: str | None, auth: Auth
) -> Principal | Literal["public"] | None:
    """The caller of a route declaring ``access``, judged from memory alone (no I/O).

    The same rules as the check before every view, for a path that answers without Quart
    (``web.direct.direct``).

    Args:
        authorization: the request's ``Authorization`` header, if any.

    Returns:
        :data:`PUBLIC` for a public route; the principal of an admitted caller; None when the
        caller is refused or only the full check can tell (it then answers, with its error).
    """
    if access == PUBLIC:
        return PUBLIC
    if not isinstance(access, Role):
        return None
    try:
        token = bearer_token(authorization)
    except AuthenticationError:
        return None
    principal = None if token is None else auth.authenticate_now(token)
    if principal is None or not principal.allows(access):
        return None
    return principal


def bearer_token(value: str | None) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header value (None: no header).

    Raises:
        AuthenticationError: the header is there but not a bearer token.
    """
    if value is None:
        return None
    scheme, _, token = value.strip().partition(" ")
    if scheme.lower() != "bearer":
        raise AuthenticationError(
            f"the Authorization header must be 'Bearer <access token>', not the {scheme!r} scheme"
        )
    if not token.strip():
        raise AuthenticationError("the Authorization header has no token after 'Bearer'")
    return token.strip()


async def _authenticate(token: str | None, required: Role) -> Principal:
    if token is None:
        raise AuthenticationError(
            "this endpoint needs an access token: send 'Authorization: Bearer <token>'"
            " (get one from POST /api/token)"
        )
    # The account as it is now (the users view): disabled, removed or demoted at once.
    principal = await current_context().auth.authenticate(token)
    principal.require(required)
    return principal


def _refuse_unmarked(where: str, endpoint: str) -> PermissionDeniedError:
    log.error(
        "BUG: %s (endpoint %s) declares no access (@public, @requires or @websocket_auth);"
        " refused with 403",
        where, endpoint,
    )
    return PermissionDeniedError(
        "this endpoint declares no access rule, so it is refused (a bug, reported in the log)"
    )


async def _check_request() -> None:
    req = request._get_current_object()  # one context lookup, not one per attribute
    rule = req.url_rule
    if req.routing_exception is not None or rule is None:
        return  # 404 or 405 follows in dispatch
    endpoint = rule.endpoint
    access = access_of(current_app.view_functions.get(endpoint))
    if access == PUBLIC:
        return
    if not isinstance(access, Role):  # undeclared, or a WebSocket marker on an HTTP view
        raise _refuse_unmarked(f"{req.method} {rule.rule}", endpoint)
    g.principal = await _authenticate(bearer_token(req.headers.get("Authorization")), access)


async def _check_websocket() -> None:
    if websocket.routing_exception is not None or websocket.url_rule is None:
        return
    endpoint = websocket.url_rule.endpoint
    access = access_of(current_app.view_functions.get(endpoint))
    if access in (PUBLIC, WEBSOCKET_AUTH):
        return  # authentication, if any, happens inside the protocol
    if not isinstance(access, Role):
        raise _refuse_unmarked(f"WEBSOCKET {websocket.url_rule.rule}", endpoint)
    # Browsers cannot set headers on a WebSocket: a `token` query parameter is accepted too.
    token = bearer_token(websocket.headers.get("Authorization")) or websocket.args.get("token") or None
    g.principal = await _authenticate(token, access)
