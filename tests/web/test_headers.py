"""Every answer tells a browser it is data: no sniffing, no framing; a JSON answer is not cached
and runs nothing. The direct path sends the same headers as the full one."""

from __future__ import annotations

import httpx
import pytest
from web_support import Account

from vareon_runtime.auth import Role

JSON_HEADERS = {
    "x-content-type-options": "nosniff",
    "x-frame-options": "DENY",
    "referrer-policy": "no-referrer",
    "content-security-policy": "default-src 'none'; frame-ancestors 'none'",
    "cache-control": "no-store",
}


@pytest.mark.parametrize(
    ("method", "path", "token"),
    [
        ("GET", "/health", False),  # answered directly
        ("GET", "/api/users/me", True),  # answered directly
        ("GET", "/api/system/status", True),
        ("GET", "/api/no/such/thing", False),  # an error
        ("POST", "/api/token", False),  # a 422 from validation
        ("GET", "/openapi.json", False),
    ],
)
async def test_json_answers_carry_the_security_headers(
    client: httpx.AsyncClient, accounts: dict[Role, Account], method: str, path: str, token: bool
) -> None:
    headers = accounts[Role.VIEWER].headers if token else {}
    response = await client.request(method, path, headers=headers)
    assert response.headers["content-type"].startswith("application/json")
    for name, value in JSON_HEADERS.items():
        assert response.headers.get(name) == value, (path, name, response.headers)


async def test_the_docs_page_is_not_framed_or_sniffed_but_may_run_its_scripts(client: httpx.AsyncClient) -> None:
    response = await client.get("/docs")
    assert response.status_code == 200
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["x-frame-options"] == "DENY"
    assert "content-security-policy" not in response.headers
