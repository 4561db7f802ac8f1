"""Every error is the uniform JSON body: unknown routes, methods, big bodies, bad JSON, bugs."""

from __future__ import annotations

import json
import logging
import re

import httpx
import pytest
import trio
from quart_trio import QuartTrio
from web_support import Front, error_of

from web import create_app, public

LIMIT = 4096


@pytest.fixture
def front_environ() -> dict[str, str]:
    return {"VAREON_SERVER_MAX_BODY_SIZE": str(LIMIT)}


async def test_unknown_route_is_404_json(client: httpx.AsyncClient) -> None:
    response = await client.get("/api/no/such/thing")
    assert response.status_code == 404
    assert response.headers["content-type"] == "application/json"
    error = error_of(response.json())
    assert error["code"] == "not_found"
    assert error["message"] == "no route GET /api/no/such/thing; the API is listed at /docs"


async def test_wrong_method_is_405_with_the_allowed_methods(client: httpx.AsyncClient) -> None:
    response = await client.delete("/api/register")
    assert response.status_code == 405
    error = error_of(response.json())
    assert error["code"] == "method_not_allowed"
    assert error["details"] == {"allowed": ["POST"]}
    assert response.headers["allow"] == "POST"
    assert "DELETE is not allowed on /api/register" in str(error["message"])


async def _raw_exchange(front: Front, head: bytes, body_parts: list[bytes]) -> bytes:
    """Send a request head and some body bytes on a raw socket (never the end), read the reply."""
    assert front.server.port is not None
    with trio.fail_after(10):
        stream = await trio.open_tcp_stream("127.0.0.1", front.server.port)
        async with stream:
            await stream.send_all(head)
            for part in body_parts:
                await stream.send_all(part)
            reply = b""
            while b"\r\n\r\n" not in reply or not _complete(reply):
                chunk = await stream.receive_some(65536)
                if not chunk:
                    break
                reply += chunk
    return reply


def _complete(reply: bytes) -> bool:
    head, _, body = reply.partition(b"\r\n\r\n")
    found = re.search(rb"(?i)content-length: (\d+)", head)
    return found is not None and len(body) >= int(found.group(1))


def _parse(reply: bytes) -> tuple[int, dict[str, str], object]:
    head, _, body = reply.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return status, headers, json.loads(body)


async def test_413_on_a_large_content_length_before_the_body_is_sent(front: Front) -> None:
    # 100 MB announced, 10 bytes sent: the answer must come without the rest of the body.
    head = (
        b"POST /api/register HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\n"
        b"Content-Length: 100000000\r\n\r\n"
    )
    status, headers, body = _parse(await _raw_exchange(front, head, [b'{"username']))
    assert status == 413
    assert headers["content-type"] == "application/json"
    error = error_of(body)
    assert error["code"] == "too_large"
    assert error["details"] == {"limit": LIMIT}
    assert f"limit of {LIMIT} bytes" in str(error["message"])


async def test_413_on_a_chunked_body_once_it_passes_the_limit(front: Front) -> None:
    # A chunked body has no length up front: it is refused once it grows past the limit, while
    # the client is still sending (the terminating chunk never comes).
    head = (
        b"POST /api/register HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n"
    )
    chunk = b"a" * 1024
    parts = [b"%x\r\n%s\r\n" % (len(chunk), chunk) for _ in range(LIMIT // len(chunk) + 2)]
    status, _, body = _parse(await _raw_exchange(front, head, parts))
    assert status == 413
    assert error_of(body)["code"] == "too_large"


async def test_a_body_within_the_limit_is_read(client: httpx.AsyncClient) -> None:
    # Just under the limit, chunked by httpx (a generator body has no length): validated, not 413.
    padding = "x" * (LIMIT - 200)

    async def body():  # type: ignore[no-untyped-def]
        yield json.dumps({"username": "a", "email": "b", "password": "c", "pad": padding}).encode()

    response = await client.post(
        "/api/register", content=body(), headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 422, response.text


async def test_malformed_json_is_400(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/api/register", content=b'{"username": ', headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 400
    error = error_of(response.json())
    assert error["code"] == "malformed_json"
    assert str(error["message"]).startswith("request body is not valid JSON: ")


async def test_schema_failure_is_422_with_each_field_path(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/api/register", json={"username": "ann", "email": 42, "password": "Zq9-pw"}
    )
    assert response.status_code == 422
    error = error_of(response.json())
    assert error["code"] == "invalid"
    details = error["details"]
    assert isinstance(details, list)
    by_loc = {tuple(item["loc"]): item for item in details}
    assert set(by_loc) == {("body", "email"), ("body", "password")}
    assert "at least 8 characters" in by_loc[("body", "password")]["msg"]
    assert "Zq9-pw" not in response.text  # the input (a password) is never echoed
    missing = await client.post("/api/register", json={"username": "ann", "email": "a@b.co"})
    assert error_of(missing.json())["details"][0]["loc"] == ["body", "password"]  # type: ignore[index]


async def test_query_schema_failure_names_the_query(client: httpx.AsyncClient) -> None:
    response = await client.get("/api/verify-email")
    assert response.status_code == 422
    assert error_of(response.json())["details"][0]["loc"] == ["query", "token"]  # type: ignore[index]


def _app_with_bug(front: Front) -> QuartTrio:
    app = create_app(front.ctx)

    @app.get("/api/boom")
    @public
    async def boom() -> str:
        raise RuntimeError("secret internals: password=hunter2")

    return app


async def test_500_carries_only_a_request_id_that_the_log_has(
    front: Front, log_records: list[logging.LogRecord]
) -> None:
    client = _app_with_bug(front).test_client()
    response = await client.get("/api/boom")
    assert response.status_code == 500
    assert response.content_type == "application/json"
    body = await response.get_json()
    error = error_of(body)
    rid = response.headers["X-Request-ID"]
    assert error == {"code": "internal", "message": "internal error", "details": {"request_id": rid}}
    text = (await response.get_data()).decode()
    assert "Traceback" not in text and "hunter2" not in text

    logged = [r for r in log_records if rid in r.getMessage()]
    assert len(logged) == 1, [r.getMessage() for r in log_records]
    record = logged[0]
    assert record.levelno == logging.ERROR
    assert record.getMessage() == f"request {rid} failed: GET /api/boom"
    assert record.exc_info is not None and "hunter2" in str(record.exc_info[1])


async def test_every_request_gets_its_own_id(client: httpx.AsyncClient) -> None:
    ids = {(await client.get("/health")).headers["x-request-id"] for _ in range(3)}
    ids.add((await client.get("/nope")).headers["x-request-id"])
    assert len(ids) == 4 and all(re.fullmatch(r"[0-9a-f]{32}", i) for i in ids)


async def test_no_error_is_ever_html(client: httpx.AsyncClient) -> None:
    attempts = [
        client.get("/nope", headers={"Accept": "text/html"}),
        client.put("/health", headers={"Accept": "text/html"}),
        client.post("/api/token", content=b"<xml/>", headers={"Content-Type": "application/xml"}),
        client.get("/api/users/me", headers={"Authorization": "Basic Zm9vOmJhcg=="}),
        client.get("/api/users/me", headers={"Authorization": "Bearer not-a-jwt"}),
        client.get("/api/system/status"),
        client.get("/docs/static/../../etc/passwd"),
        client.get("/docs/static/no-such-asset.js"),
        client.request("OPTIONS", "/api/token"),
        client.post("/api/register", json=[1, 2, 3]),
        client.post("/api/token/refresh", data={"refresh_token": "x"}),
    ]
    for attempt in attempts:
        response = await attempt
        assert 400 <= response.status_code < 500, (response.request.url, response.status_code)
        assert response.headers["content-type"] == "application/json", response.request.url
        error_of(response.json())
