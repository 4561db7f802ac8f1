"""User administration over a live Hypercorn: the admin routes, one's own password, and every
token and open WebSocket of a demoted or deactivated user stopping at once (decision 0025)."""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
import trio
from trio_websocket import ConnectionClosed, WebSocketConnection, wrap_client_stream
from web_support import PASSWORD, Account, Front, error_of

from vareon_runtime.auth import Role
from web.websocket import CLOSE_AUTH_FAILED

TIMEOUT = 10
NEW_PASSWORD = "a brand new passphrase"
ENDED = "this sign-in has ended (a new password, a lower role or a deactivation since); sign in again"
USER_FIELDS = {"id", "username", "email", "role", "email_verified", "is_active", "created_at"}


# --- helpers -------------------------------------------------------------------------------------


async def user_id(front: Front, account: Account) -> str:
    return (await front.ctx.auth.get_user_by_username(account.username)).id


async def sign_in(client: httpx.AsyncClient, username: str, password: str = PASSWORD) -> dict[str, Any]:
    response = await client.post("/api/token", json={"username": username, "password": password})
    assert response.status_code == 200, response.text
    pair: dict[str, Any] = response.json()
    return pair


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def refused_as_ended(response: httpx.Response) -> None:
    assert response.status_code == 401, response.text
    assert error_of(response.json())["message"] == ENDED


@asynccontextmanager
async def websocket_of(front: Front, token: str) -> AsyncIterator[WebSocketConnection]:
    """A connection to `/api/websocket` past `auth_ok`, with one subscription open."""
    parts = urlsplit(front.base_url)
    assert parts.hostname is not None and parts.port is not None
    with trio.fail_after(TIMEOUT):
        stream = await trio.open_tcp_stream(parts.hostname, parts.port)
    async with stream, trio.open_nursery() as nursery:
        ws = await wrap_client_stream(nursery, stream, parts.hostname, f"/api/websocket?token={token}")
        try:
            assert (await receive(ws))["type"] == "auth_required"
            assert (await receive(ws))["type"] == "auth_ok"
            await ws.send_message(json.dumps({"id": 1, "type": "subscribe", "topic": "*"}))
            assert (await receive(ws))["success"] is True
            yield ws
        finally:
            with trio.fail_after(TIMEOUT):
                await ws.aclose()
            await stream.aclose()


async def receive(ws: WebSocketConnection) -> dict[str, Any]:
    with trio.fail_after(TIMEOUT):
        message = json.loads(await ws.get_message())
    assert isinstance(message, dict)
    return message


async def closed_with(ws: WebSocketConnection) -> tuple[int, str | None]:
    with trio.fail_after(TIMEOUT), pytest.raises(ConnectionClosed) as info:
        while True:  # events of the subscription may come first
            await ws.get_message()
    return info.value.reason.code, info.value.reason.reason


async def signed_out(ws: WebSocketConnection, why: str) -> None:
    """The server says why and closes with 4001 (events already queued may come first)."""
    with trio.fail_after(TIMEOUT):
        while (message := await receive(ws))["type"] == "event":
            pass
    assert message == {"type": "auth_invalid", "message": f"{why}; sign in again"}
    assert await closed_with(ws) == (CLOSE_AUTH_FAILED, why)


async def wait_until(predicate: Callable[[], bool]) -> None:
    # A server-side cleanup after a close signals nothing a client could await: poll, bounded.
    with trio.fail_after(TIMEOUT):
        while not predicate():
            await trio.sleep(0.005)


# --- the admin routes --------------------------------------------------------------------------


async def test_admins_list_the_users_in_pages_with_the_total(
    client: httpx.AsyncClient, accounts: dict[Role, Account]
) -> None:
    admin = accounts[Role.ADMIN].headers
    page = await client.get("/api/users", params={"limit": 2}, headers=admin)
    assert page.status_code == 200, page.text
    assert page.headers["X-Total-Count"] == "3"
    users = page.json()
    assert [user["username"] for user in users] == ["admin-user", "operator-user"]
    assert all(set(user) == USER_FIELDS for user in users)
    assert "hash" not in page.text and "argon2" not in page.text

    rest = await client.get("/api/users", params={"limit": 2, "offset": 2}, headers=admin)
    assert [user["username"] for user in rest.json()] == ["viewer-user"]
    viewers = await client.get("/api/users", params={"role": "viewer"}, headers=admin)
    assert viewers.headers["X-Total-Count"] == "1" and viewers.json()[0]["role"] == "viewer"
    inactive = await client.get("/api/users", params={"is_active": "false"}, headers=admin)
    assert (inactive.json(), inactive.headers["X-Total-Count"]) == ([], "0")
    bad = await client.get("/api/users", params={"role": "root"}, headers=admin)
    assert bad.status_code == 422

    for role in (Role.OPERATOR, Role.VIEWER):
        assert (await client.get("/api/users", headers=accounts[role].headers)).status_code == 403
    assert (await client.get("/api/users")).status_code == 401


async def test_one_user_by_id_and_unknown_ids_are_404(
    front: Front, client: httpx.AsyncClient, accounts: dict[Role, Account]
) -> None:
    admin = accounts[Role.ADMIN].headers
    viewer_id = await user_id(front, accounts[Role.VIEWER])
    one = await client.get(f"/api/users/{viewer_id}", headers=admin)
    assert one.status_code == 200, one.text
    listed = (await client.get("/api/users", params={"role": "viewer"}, headers=admin)).json()
    assert one.json() == listed[0]

    unknown = await client.get("/api/users/00000000-0000-0000-0000-000000000000", headers=admin)
    assert unknown.status_code == 404
    assert error_of(unknown.json())["message"] == "no user with id '00000000-0000-0000-0000-000000000000'"
    not_an_id = await client.get("/api/users/not-an-id", headers=admin)
    assert not_an_id.status_code == 404
    assert error_of(not_an_id.json())["message"] == "no user has the id 'not-an-id' (user ids are UUIDs)"
    assert (await client.get(f"/api/users/{viewer_id}", headers=accounts[Role.OPERATOR].headers)).status_code == 403


async def test_put_changes_the_role_and_the_active_flag_and_refuses_what_is_wrong(
    front: Front, client: httpx.AsyncClient, accounts: dict[Role, Account]
) -> None:
    admin = accounts[Role.ADMIN].headers
    viewer_id = await user_id(front, accounts[Role.VIEWER])
    promoted = await client.put(f"/api/users/{viewer_id}", json={"role": "operator"}, headers=admin)
    assert promoted.status_code == 200, promoted.text
    assert set(promoted.json()) == USER_FIELDS
    assert (promoted.json()["role"], promoted.json()["is_active"]) == ("operator", True)
    both = await client.put(
        f"/api/users/{viewer_id}", json={"role": "viewer", "is_active": False}, headers=admin
    )
    assert (both.json()["role"], both.json()["is_active"]) == ("viewer", False)

    refusals = {
        "nothing to change: send role, is_active or both": {},
        "role": {"role": "root"},
        "is_active": {"is_active": "no"},
        "isActive": {"isActive": False},  # the auth routes are snake_case
    }
    for what, body in refusals.items():
        response = await client.put(f"/api/users/{viewer_id}", json=body, headers=admin)
        assert response.status_code == 422, (what, response.text)
        assert what in response.text, response.text
    unknown = await client.put(
        "/api/users/00000000-0000-0000-0000-000000000000", json={"is_active": True}, headers=admin
    )
    assert unknown.status_code == 404
    operator = accounts[Role.OPERATOR].headers
    forbidden = await client.put(f"/api/users/{viewer_id}", json={"is_active": True}, headers=operator)
    assert forbidden.status_code == 403


async def test_the_last_admin_cannot_be_demoted_or_deactivated(
    front: Front, client: httpx.AsyncClient, accounts: dict[Role, Account]
) -> None:
    admin = accounts[Role.ADMIN]
    admin_id = await user_id(front, admin)
    for body in ({"role": "operator"}, {"is_active": False}):
        response = await client.put(f"/api/users/{admin_id}", json=body, headers=admin.headers)
        assert response.status_code == 409, response.text
        error = error_of(response.json())
        assert error["code"] == "conflict"
        assert str(error["message"]).startswith("'admin-user' is the last active admin and cannot be")
        assert str(error["message"]).endswith("; make another user an admin first")
    # Still an admin, still signed in.
    assert (await client.get("/api/users/me", headers=admin.headers)).json()["role"] == "admin"


# --- revocation at once: tokens and open WebSockets --------------------------------------------


@pytest.mark.parametrize(
    ("change", "why"),
    [
        ({"role": "viewer"}, "signed out (a new password or a lower role)"),
        ({"is_active": False}, "account disabled"),
    ],
)
async def test_a_demoted_or_deactivated_users_tokens_and_websockets_stop_at_once(
    front: Front,
    client: httpx.AsyncClient,
    accounts: dict[Role, Account],
    change: dict[str, Any],
    why: str,
) -> None:
    operator = accounts[Role.OPERATOR]
    operator_id = await user_id(front, operator)
    pair = await sign_in(client, operator.username)
    watching = front.ctx.auth.users.watching
    # Bystanders are not touched: the viewer's socket stays open.
    async with (
        websocket_of(front, pair["access_token"]) as ws,
        websocket_of(front, operator.token) as other,
        websocket_of(front, accounts[Role.VIEWER].token) as bystander,
    ):
        assert watching(operator_id) == 2
        response = await client.put(
            f"/api/users/{operator_id}", json=change, headers=accounts[Role.ADMIN].headers
        )
        assert response.status_code == 200, response.text
        await signed_out(ws, why)
        await signed_out(other, why)
        await bystander.send_message(json.dumps({"id": 2, "type": "ping"}))
        with trio.fail_after(TIMEOUT):
            while (message := await receive(bystander))["type"] == "event":
                pass
        assert message == {"id": 2, "type": "pong"}
    assert watching(operator_id) == 0

    for token in (pair["access_token"], operator.token):
        refused = await client.get("/api/users/me", headers=bearer(token))
        assert refused.status_code == 401
    renewed = await client.post("/api/token/refresh", json={"refresh_token": pair["refresh_token"]})
    assert renewed.status_code == 401
    if "role" in change:
        refused_as_ended(await client.get("/api/users/me", headers=bearer(operator.token)))
        refused_as_ended(renewed)
        # A new sign-in works, with the new role.
        fresh = await sign_in(client, operator.username)
        me = await client.get("/api/users/me", headers=bearer(fresh["access_token"]))
        assert me.json()["role"] == "viewer"


async def test_a_closed_websocket_drops_its_watch(
    front: Front, accounts: dict[Role, Account]
) -> None:
    viewer_id = await user_id(front, accounts[Role.VIEWER])
    async with websocket_of(front, accounts[Role.VIEWER].token):
        assert front.ctx.auth.users.watching(viewer_id) == 1
    await wait_until(lambda: front.ctx.auth.users.watching(viewer_id) == 0)


# --- one's own password ------------------------------------------------------------------------


async def test_changing_ones_password_ends_the_other_sign_ins_and_gives_the_caller_new_tokens(
    front: Front, client: httpx.AsyncClient, accounts: dict[Role, Account]
) -> None:
    viewer = accounts[Role.VIEWER]
    mine = await sign_in(client, viewer.username)
    async with websocket_of(front, viewer.token) as elsewhere:
        response = await client.post(
            "/api/users/me/password",
            json={"current_password": PASSWORD, "new_password": NEW_PASSWORD},
            headers=bearer(mine["access_token"]),
        )
        assert response.status_code == 200, response.text
        await signed_out(elsewhere, "signed out (a new password or a lower role)")
    fresh = response.json()
    assert set(fresh) == {"access_token", "refresh_token", "token_type", "expires_in"}
    assert "vareon_client=" in response.headers["set-cookie"]
    assert (await client.get("/api/users/me", headers=bearer(fresh["access_token"]))).status_code == 200
    for token in (mine["access_token"], viewer.token):
        refused_as_ended(await client.get("/api/users/me", headers=bearer(token)))
    refused_as_ended(await client.post("/api/token/refresh", json={"refresh_token": mine["refresh_token"]}))
    renewed = await client.post("/api/token/refresh", json={"refresh_token": fresh["refresh_token"]})
    assert renewed.status_code == 200
    await sign_in(client, viewer.username, NEW_PASSWORD)


async def test_a_password_change_says_what_is_wrong(
    client: httpx.AsyncClient, accounts: dict[Role, Account]
) -> None:
    headers = accounts[Role.OPERATOR].headers
    cases = [
        ({"current_password": "wrong guess", "new_password": NEW_PASSWORD}, "current_password"),
        ({"current_password": PASSWORD, "new_password": PASSWORD}, "new_password"),
        ({"current_password": PASSWORD, "new_password": "short"}, "new_password"),
        ({"current_password": PASSWORD}, "new_password"),
    ]
    for body, field in cases:
        response = await client.post("/api/users/me/password", json=body, headers=headers)
        assert response.status_code == 422, response.text
        assert field in response.text
    assert (await client.post("/api/users/me/password", json=cases[0][0])).status_code == 401
    # Nothing changed.
    assert (await client.get("/api/users/me", headers=headers)).status_code == 200


# --- the log -------------------------------------------------------------------------------------


async def test_admin_actions_are_logged_without_secrets(
    front: Front,
    client: httpx.AsyncClient,
    accounts: dict[Role, Account],
    log_records: list[logging.LogRecord],
) -> None:
    viewer_id = await user_id(front, accounts[Role.VIEWER])
    admin = accounts[Role.ADMIN]
    await client.put(f"/api/users/{viewer_id}", json={"is_active": False}, headers=admin.headers)
    messages = [record.getMessage() for record in log_records]
    assert (
        f"the admin 'admin-user' changed the user 'viewer-user' (id {viewer_id}): role viewer ->"
        " viewer, active True -> False; its sign-ins are ended"
    ) in messages
    assert "closed a WebSocket" not in "\n".join(messages)  # the viewer had none open
    logged = "\n".join(messages)
    for account in accounts.values():
        assert account.token not in logged
    assert PASSWORD not in logged
