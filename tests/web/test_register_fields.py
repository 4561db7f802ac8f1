"""A registration with several bad fields is refused once, naming every field (issue 23)."""

from __future__ import annotations

import httpx
import pytest
import trio
from web_support import START_TIMEOUT, Front, error_of

from vareon_runtime.errors import InvalidRequestError

EMAIL_PROBLEM = "email must be an address like name@example.com, not 'not-an-address'"
PASSWORD_PROBLEM = "password must be at least 8 characters, not 5"


async def test_a_bad_email_and_a_short_password_are_reported_together(client: httpx.AsyncClient) -> None:
    with trio.fail_after(START_TIMEOUT):
        response = await client.post(
            "/api/register", json={"username": "alice", "email": "not-an-address", "password": "short"}
        )
    assert response.status_code == 422, response.text
    error = error_of(response.json())
    assert error["message"] == f"{EMAIL_PROBLEM}; {PASSWORD_PROBLEM}"
    assert error["details"] == {
        "field": "email",
        "problems": [
            {"field": "email", "message": EMAIL_PROBLEM},
            {"field": "password", "message": PASSWORD_PROBLEM},
        ],
    }
    assert "short" not in response.text.replace(PASSWORD_PROBLEM, "")  # the password is never echoed


async def test_every_field_of_a_bad_registration_and_one_alone(client: httpx.AsyncClient) -> None:
    with trio.fail_after(START_TIMEOUT):
        everything = await client.post("/api/register", json={"username": "a b", "email": "", "password": ""})
        alone = await client.post(
            "/api/register", json={"username": "bob", "email": "bob@example.com", "password": "short"}
        )
    assert everything.status_code == 422, everything.text
    fields = [p["field"] for p in error_of(everything.json())["details"]["problems"]]  # type: ignore[index]
    assert fields == ["username", "email", "password"]
    # One problem answers as before: its own message, the field named.
    assert alone.status_code == 422, alone.text
    assert error_of(alone.json())["message"] == PASSWORD_PROBLEM
    assert error_of(alone.json())["details"] == {"field": "password"}


async def test_the_service_reports_every_field_to_any_caller(front: Front) -> None:
    with trio.fail_after(START_TIMEOUT), pytest.raises(InvalidRequestError) as info:
        await front.ctx.auth.register("x", "bad", "short")
    assert info.value.status == 422
    assert [p["field"] for p in info.value.details["problems"]] == ["username", "email", "password"]
    assert info.value.message.startswith("username must be 3 to 64 characters")
