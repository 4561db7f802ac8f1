"""Route x role: every route of the app, called as nobody, viewer, operator and admin.

The table comes from the app itself (:func:`web.permissions.route_access`), so a route added
without a permission marker fails here, and so does a marker that the check does not enforce.
"""

from __future__ import annotations

import logging
import random
import re
import uuid

import pytest
import trio
from quart import Quart, websocket
from web_support import DOMAINS, Account, Front, error_of

from vareon_runtime.auth import Role
from vareon_runtime.component import Component
from web import create_app, public, requires, websocket_auth
from web.permissions import PUBLIC, WEBSOCKET_AUTH, RouteAccess, access_of, route_access

_PARAM = re.compile(r"<(?:(?P<converter>[^:<>]+):)?(?P<name>[^<>]+)>")
IDENTITIES: tuple[Role | None, ...] = (None, Role.VIEWER, Role.OPERATOR, Role.ADMIN)


@pytest.fixture
def front_components() -> tuple[Component, ...]:
    """The domains run, so their routes answer as they would in production (not 503)."""
    return DOMAINS


def _fill(rule: str) -> str:
    """The rule with each path parameter filled: a random UUID (a number for int/float)."""

    def value(match: re.Match[str]) -> str:
        if match.group("converter") in ("int", "float"):
            return str(random.randint(1, 10**6))
        return str(uuid.uuid4())

    return _PARAM.sub(value, rule)


def _expected(access: object, identity: Role | None) -> str:
    if access in (PUBLIC, WEBSOCKET_AUTH):
        return "allowed"
    assert isinstance(access, Role)
    if identity is None:
        return "401"
    return "allowed" if identity.allows(access) else "403"


async def _handshake(app: Quart, path: str, headers: dict[str, str]) -> int:
    """101 if the WebSocket was accepted, else the status of the HTTP refusal."""
    async with app.test_client().websocket(path, headers=headers) as ws:
        with trio.fail_after(5):
            while not ws.accepted and ws.status_code is None:  # type: ignore[attr-defined]
                await trio.sleep(0.005)
        return 101 if ws.accepted else int(ws.status_code)  # type: ignore[attr-defined]


async def _status(app: Quart, route: RouteAccess, account: Account | None) -> int:
    client = app.test_client()
    path = _fill(route.rule)
    headers = account.headers if account else {}
    if route.method == "WEBSOCKET":
        return await _handshake(app, path, headers)
    body = {"json": {}} if route.method in ("POST", "PUT", "PATCH") else {}
    response = await client.open(path, method=route.method, headers=headers, **body)
    if response.status_code >= 400:
        assert response.content_type == "application/json", (route, response.status_code)
        error_of(await response.get_json())
    return response.status_code


async def check_routes(app: Quart, accounts: dict[Role, Account]) -> list[str]:
    """Call every route as each identity; return one line per answer that breaks the table."""
    problems: list[str] = []
    for route in route_access(app):
        if route.access is None:
            problems.append(f"{route.method} {route.rule}: no access marker")
            continue
        for identity in IDENTITIES:
            account = accounts[identity] if identity is not None else None
            status = await _status(app, route, account)
            expected = _expected(route.access, identity)
            who = identity.value if identity else "no token"
            if status >= 500:
                problems.append(f"{route.method} {route.rule} as {who}: {status}")
            elif expected == "allowed" and status in (401, 403):
                problems.append(f"{route.method} {route.rule} as {who}: {status}, expected access")
            elif expected != "allowed" and str(status) != expected:
                problems.append(f"{route.method} {route.rule} as {who}: {status}, expected {expected}")
    return problems


async def test_every_route_answers_as_its_declared_access(
    front: Front, accounts: dict[Role, Account]
) -> None:
    routes = route_access(front.app)
    assert {(r.rule, r.method) for r in routes} >= {
        ("/api/register", "POST"),
        ("/api/users/me", "GET"),
        ("/api/system/status", "GET"),
        ("/health", "GET"),
        ("/api/myntrix/agents", "POST"),
        ("/api/myntrix/agents/<agent_id>/start", "POST"),
        ("/api/myntrix/tasks", "POST"),
        ("/api/myntrix/tasks/history", "GET"),
        ("/api/myntrix/tasks/<task_id>/run", "POST"),
        ("/api/myntrix/tasks/<task_id>", "DELETE"),
        ("/api/myntrix/devices/<device_id>/command", "POST"),
        ("/api/myntrix/devices/<device_id>/upload", "DELETE"),
        ("/api/myntrix/hardware/<device_id>/status", "GET"),
    }
    problems = await check_routes(front.app, accounts)
    assert not problems, "route x role table broken:\n" + "\n".join(problems)


async def test_public_paths_are_exactly_the_contracts(front: Front) -> None:
    public_http = {r.rule for r in route_access(front.app) if r.access == PUBLIC}
    assert public_http == {
        "/health",
        "/api/register",
        "/api/token",
        "/api/token/refresh",
        "/api/verify-email",
        "/openapi.json",
        "/asyncapi.json",
        "/docs",
        "/docs/",
        "/docs/static/<path:filename>",
        "/metrics",  # public to the auth layer; it checks loopback or its own token itself
    }


async def test_an_unmarked_route_fails_the_table_and_is_refused(
    front: Front, accounts: dict[Role, Account], log_records: list[logging.LogRecord]
) -> None:
    app = create_app(front.ctx)

    @app.get("/api/forgotten/<item_id>")
    async def forgotten(item_id: str) -> dict[str, str]:
        return {"leak": item_id}

    assert RouteAccess("/api/forgotten/<item_id>", "GET", None) in route_access(app)
    assert await check_routes(app, accounts) == ["GET /api/forgotten/<item_id>: no access marker"]

    response = await app.test_client().get("/api/forgotten/x", headers=accounts[Role.ADMIN].headers)
    assert response.status_code == 403
    error = error_of(await response.get_json())
    assert error["code"] == "forbidden"
    assert "declares no access rule" in str(error["message"])
    bugs = [r.getMessage() for r in log_records if r.getMessage().startswith("BUG: ")]
    assert bugs == [
        "BUG: GET /api/forgotten/<item_id> (endpoint forgotten) declares no access"
        " (@public, @requires or @websocket_auth); refused with 403"
    ]


async def test_a_role_marked_websocket_checks_the_handshake(
    front: Front, accounts: dict[Role, Account]
) -> None:
    app = create_app(front.ctx)

    @app.websocket("/ws/test/operators")
    @requires(Role.OPERATOR)
    async def operators() -> None:
        await websocket.send("hello operator")

    @app.websocket("/ws/test/in-protocol")
    @websocket_auth
    async def in_protocol() -> None:
        await websocket.send("auth_required")

    assert await check_routes(app, accounts) == []
    # Browsers cannot set headers: the token may come as a query parameter instead.
    viewer, admin = accounts[Role.VIEWER].token, accounts[Role.ADMIN].token
    assert await _handshake(app, f"/ws/test/operators?token={viewer}", {}) == 403
    assert await _handshake(app, "/ws/test/operators?token=forged", {}) == 401
    with trio.fail_after(5):
        async with app.test_client().websocket(f"/ws/test/operators?token={admin}") as ws:
            assert await ws.receive() == "hello operator"


async def test_markers_refuse_contradictions() -> None:
    async def view() -> None:
        return None

    public(view)
    with pytest.raises(ValueError, match="already declares access 'public'"):
        requires(Role.ADMIN)(view)
    assert access_of(view) == PUBLIC
    with pytest.raises(TypeError, match=r"requires\(\) takes a Role"):
        requires(view)  # type: ignore[arg-type]
