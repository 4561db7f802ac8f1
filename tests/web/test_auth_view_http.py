"""The users view over a live Hypercorn: a change made through the service is seen by the very
next request, and the routes answered from memory answer as the full path does."""

from __future__ import annotations

import functools
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import pytest
import trio
from quart import Blueprint
from quart_schema import validate_response
from web_support import PASSWORD, START_TIMEOUT, Front, error_of

from vareon_runtime.auth import Auth, Passwords, Role
from web.app import create_app
from web.direct import direct
from web.permissions import PUBLIC, caller_now, public
from web.schemas import HealthResponse

GONE = "account disabled or removed; sign in again"
ENDED = "this sign-in has ended (a new password, a lower role or a deactivation since); sign in again"


async def sign_up(front: Front, name: str, role: Role = Role.VIEWER) -> tuple[str, dict[str, str]]:
    """A verified account made through the runtime's service: its id and bearer headers."""
    user = await front.ctx.auth.create_user(name, f"{name}@example.com", PASSWORD, role)
    pair = await front.ctx.auth.login(name, PASSWORD, None)
    return user.id, {"Authorization": f"Bearer {pair.access_token}"}


def refused(response: httpx.Response, message: str) -> None:
    assert response.status_code == 401, response.text
    assert response.headers["WWW-Authenticate"] == "Bearer"
    assert response.headers["X-Request-ID"]
    error = error_of(response.json())
    assert (error["code"], error["message"]) == ("unauthorized", message)


# -- a change is seen by the next request --------------------------------------------------------


async def test_me_shows_each_change_made_through_the_service(
    front: Front, client: httpx.AsyncClient
) -> None:
    with trio.fail_after(START_TIMEOUT):
        registered = await client.post(
            "/api/register",
            json={"username": "ada", "email": "ada@example.com", "password": PASSWORD},
        )
        assert registered.status_code == 201, registered.text
        user_id = registered.json()["id"]
        token = await client.post("/api/token", json={"username": "ada", "password": PASSWORD})
        headers = {"Authorization": f"Bearer {token.json()['access_token']}"}

        me = (await client.get("/api/users/me", headers=headers)).json()
        assert (me["role"], me["email_verified"]) == ("viewer", False)

        await front.ctx.auth.mark_verified("ada")
        assert (await client.get("/api/users/me", headers=headers)).json()["email_verified"]

        await front.ctx.auth.update_user(user_id, role=Role.OPERATOR)
        me = (await client.get("/api/users/me", headers=headers)).json()
        assert me == {**registered.json(), "role": "operator", "email_verified": True}


async def test_a_disabled_account_gets_401_at_once_and_signs_in_again_once_enabled(
    front: Front, client: httpx.AsyncClient
) -> None:
    with trio.fail_after(START_TIMEOUT):
        user_id, headers = await sign_up(front, "bob")
        assert (await client.get("/api/users/me", headers=headers)).status_code == 200

        await front.ctx.auth.update_user(user_id, is_active=False)
        refused(await client.get("/api/users/me", headers=headers), GONE)
        refused(await client.get("/api/system/status", headers=headers), GONE)

        await front.ctx.auth.update_user(user_id, is_active=True)
        refused(await client.get("/api/users/me", headers=headers), ENDED)  # decision 0025
        pair = await front.ctx.auth.login("bob", PASSWORD, None)
        again = {"Authorization": f"Bearer {pair.access_token}"}
        assert (await client.get("/api/users/me", headers=again)).status_code == 200


async def test_a_removed_account_gets_401_at_once(
    front: Front, client: httpx.AsyncClient
) -> None:
    with trio.fail_after(START_TIMEOUT):
        user_id, headers = await sign_up(front, "carol")
        assert (await client.get("/api/users/me", headers=headers)).status_code == 200
        await front.ctx.auth.delete_user(user_id)
        refused(await client.get("/api/users/me", headers=headers), GONE)
        refused(await client.get("/api/system/status", headers=headers), GONE)


async def test_a_demoted_caller_is_signed_out_and_signs_in_with_its_new_role(
    front: Front, client: httpx.AsyncClient
) -> None:
    with trio.fail_after(START_TIMEOUT):
        await sign_up(front, "root", Role.ADMIN)  # the last admin cannot be demoted
        user_id, headers = await sign_up(front, "dora", Role.ADMIN)
        auth = front.ctx.auth
        authorization = headers["Authorization"]
        admitted = caller_now(Role.ADMIN, authorization, auth)
        assert admitted is not None and admitted != PUBLIC
        await auth.update_user(user_id, role=Role.VIEWER)
        # Decision 0025: a lower role ends every sign-in of the account at once.
        assert caller_now(Role.ADMIN, authorization, auth) is None
        assert caller_now(Role.VIEWER, authorization, auth) is None
        refused(await client.get("/api/users/me", headers=headers), ENDED)
        again = f"Bearer {(await auth.login('dora', PASSWORD, None)).access_token}"
        assert caller_now(Role.ADMIN, again, auth) is None  # the full check says 403
        viewer = caller_now(Role.VIEWER, again, auth)
        assert viewer is not None and viewer != PUBLIC and viewer.role is Role.VIEWER


async def test_an_account_made_by_another_process_is_admitted(
    front: Front, client: httpx.AsyncClient
) -> None:
    # Another process (say `vareon user create`) writes the same database with its own view.
    other = Auth(front.ctx.config, front.ctx.store, environ={})
    other.passwords = Passwords(time_cost=1, memory_cost=1024)
    with trio.fail_after(START_TIMEOUT):
        user = await other.create_user("erin", None, PASSWORD, Role.VIEWER)
        pair = await other.login("erin", PASSWORD, None)
        headers = {"Authorization": f"Bearer {pair.access_token}"}
        me = await client.get("/api/users/me", headers=headers)
        assert me.status_code == 200 and me.json()["id"] == user.id

        removed = await other.create_user("fred", None, PASSWORD, Role.VIEWER)
        stale = (await other.login("fred", PASSWORD, None)).access_token
        await other.delete_user(removed.id)
        refused(await client.get("/api/users/me", headers={"Authorization": f"Bearer {stale}"}), GONE)


# -- answered from memory, the same answer -------------------------------------------------------


async def fetch_both(
    front: Front, request: Callable[[], Awaitable[httpx.Response]]
) -> tuple[httpx.Response, httpx.Response]:
    """The same request answered with direct answers on, then through Quart only."""
    assert front.app.direct_answers
    fast = await request()
    front.app.direct_answers = False
    try:
        full = await request()
    finally:
        front.app.direct_answers = True
    return fast, full


def same_answer(fast: httpx.Response, full: httpx.Response) -> None:
    assert fast.status_code == full.status_code
    assert fast.content == full.content
    ignored = {"date", "x-request-id"}
    assert [(k, v) for k, v in fast.headers.items() if k not in ignored] == [
        (k, v) for k, v in full.headers.items() if k not in ignored
    ]
    assert fast.headers["x-request-id"] != full.headers["x-request-id"]


async def test_health_and_me_are_answered_from_memory_as_the_full_path_answers(
    front: Front, client: httpx.AsyncClient
) -> None:
    views = front.app.view_functions
    calls: list[str] = []

    def counted(endpoint: str) -> None:
        view = views[endpoint]

        @functools.wraps(view)  # keeps its markers (access, schema)
        async def wrapper(**kwargs: Any) -> Any:
            calls.append(endpoint)
            return await view(**kwargs)

        views[endpoint] = wrapper

    with trio.fail_after(START_TIMEOUT):
        _, headers = await sign_up(front, "gina")
        assert front.app.direct_routes is not None
        assert set(front.app.direct_routes) >= {"/health", "/api/users/me"}
        counted("system.health")
        counted("auth.me")
        for path, sent in (("/health", {}), ("/api/users/me", headers)):
            fast, full = await fetch_both(front, lambda path=path, sent=sent: client.get(path, headers=sent))
            assert fast.status_code == 200
            same_answer(fast, full)
        # Only the full path ran the views.
        assert calls == ["system.health", "auth.me"]


async def test_what_memory_cannot_answer_takes_the_full_path(
    front: Front, client: httpx.AsyncClient
) -> None:
    with trio.fail_after(START_TIMEOUT):
        user_id, headers = await sign_up(front, "hugo")
        await front.ctx.auth.update_user(user_id, is_active=False)
        cases: list[tuple[str, dict[str, str], int]] = [
            ("GET", {}, 401),  # no token
            ("GET", {"Authorization": "Bearer not.a.token"}, 401),
            ("GET", {"Authorization": "Basic aHVnbzpodWdv"}, 401),
            ("GET", headers, 401),  # a disabled account
            ("HEAD", {}, 200),
        ]
        for method, sent, status in cases:
            path = "/health" if method == "HEAD" else "/api/users/me"
            fast, full = await fetch_both(
                front, lambda method=method, path=path, sent=sent: client.request(method, path, headers=sent)
            )
            assert fast.status_code == status, (method, sent, fast.text)
            same_answer(fast, full)
        # A body is the full path's to read and limit.
        body = await client.request("GET", "/health", content=b"{}", headers={"Content-Type": "application/json"})
        assert body.status_code == 200 and body.json()["status"] == "ok"


async def test_a_hook_added_after_the_apps_own_turns_direct_answers_off(
    front: Front, log_records: Any
) -> None:
    app = create_app(front.ctx)

    @app.after_request
    async def stamp(response: Any) -> Any:
        response.headers["X-Stamp"] = "1"
        return response

    app.find_direct_routes()
    assert app.direct_routes == {}
    warnings = [r.getMessage() for r in log_records if r.levelno == logging.WARNING]
    assert any(
        "direct answers are off: they would skip the request hooks" in m and "stamp" in m
        for m in warnings
    ), warnings
    # Every request then takes the full path, hook included.
    response = await app.test_client().get("/health")
    assert response.status_code == 200 and response.headers["X-Stamp"] == "1"


async def test_direct_on_a_route_it_cannot_serve_is_refused(front: Front) -> None:
    app = create_app(front.ctx)
    extra = Blueprint("extra", __name__)

    @extra.post("/api/extra")
    @public
    @direct(lambda ctx, principal: HealthResponse(version=ctx.version))
    @validate_response(HealthResponse)
    async def extra_view() -> HealthResponse:
        return HealthResponse(version=front.ctx.version)

    app.register_blueprint(extra)
    with pytest.raises(TypeError, match=r"extra.extra_view \(/api/extra\) declares @direct, which needs a GET route"):
        app.find_direct_routes()


def test_caller_now_follows_the_full_checks_rules() -> None:
    class NoAuth:
        def authenticate_now(self, token: str) -> None:
            raise AssertionError("no token should reach the service")

    auth: Any = NoAuth()
    assert caller_now(PUBLIC, None, auth) == PUBLIC
    assert caller_now(Role.VIEWER, None, auth) is None
    assert caller_now(Role.VIEWER, "Basic abc", auth) is None
    assert caller_now(Role.VIEWER, "Bearer   ", auth) is None
    assert caller_now(None, "Bearer x", auth) is None  # undeclared: the full path refuses it
