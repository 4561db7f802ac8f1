"""A registration with several bad fields is refused once, naming every field (issue 23)."""

from __future__ import annotations

import httpx
import pytest
import trio
from web_support import START_TIMEOUT, Front, error_of

from vareon_runtime.errors import InvalidRequestError

EMAIL_PROBLEM = "email must be an address like name@example.com, not 'not-an-address'"


def _problems(body: object) -> dict[str, str]:
    details = error_of(body)["details"]
    assert isinstance(details, list), details
    return {".".join(map(str, item["loc"])): item["msg"] for item in details}


async def test_a_bad_email_and_a_short_password_are_reported_together(client: httpx.AsyncClient) -> None:
    with trio.fail_after(START_TIMEOUT):
        response = await client.post(
            "/api/register", json={"username": "alice", "email": "not-an-address", "password": "short"}
        )
    assert response.status_code == 422, response.text
    assert error_of(response.json())["message"] == f"body.email: {EMAIL_PROBLEM} (and 1 more)"
    problems = _problems(response.json())
    assert problems.keys() == {"body.email", "body.password"}
    assert problems["body.email"] == EMAIL_PROBLEM
    assert "at least 8 characters" in problems["body.password"]
    assert '"short"' not in response.text  # the password is never echoed


async def test_every_field_of_a_bad_registration_rules_and_types_together(client: httpx.AsyncClient) -> None:
    with trio.fail_after(START_TIMEOUT):
        rules = await client.post("/api/register", json={"username": "a b", "email": "", "password": ""})
        mixed = await client.post("/api/register", json={"username": "x", "email": 42, "password": "short"})
    assert rules.status_code == 422 and mixed.status_code == 422
    assert _problems(rules.json()).keys() == {"body.username", "body.email", "body.password"}
    assert _problems(mixed.json()).keys() == {"body.username", "body.email", "body.password"}
    assert _problems(rules.json())["body.username"].startswith("username must be 3 to 64 characters")


async def test_the_service_reports_every_field_to_any_caller(front: Front) -> None:
    with trio.fail_after(START_TIMEOUT), pytest.raises(InvalidRequestError) as info:
        await front.ctx.auth.register("x", "bad", "short")
    assert info.value.status == 422
    assert [p["field"] for p in info.value.details["problems"]] == ["username", "email", "password"]
    assert info.value.message.startswith("username must be 3 to 64 characters")
