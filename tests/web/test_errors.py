"""Every error is the uniform JSON body: unknown routes, methods, big bodies, bad JSON, bugs."""

from __future__ import annotations

import json
import logging
import re
import sqlite3
import uuid

import httpx
import pytest
import trio
from quart_trio import QuartTrio
from quart_schema.validation import QUART_SCHEMA_REQUEST_ATTRIBUTE
from web_support import DOMAINS, Account, Front, error_of

from vareon_runtime.auth import Role
from vareon_runtime.component import Component
from web import create_app, public
from web.permissions import route_access
from web.validation import FORM_OR_JSON_ATTRIBUTE


@pytest.fixture
def front_components() -> tuple[Component, ...]:
    """The domains run, so their POST routes get past "module not running" to the body."""
    return DOMAINS

LIMIT = 4096


@pytest.fixture
def front_environ() -> dict[str, str]:
    # A short busy timeout: the locked-database test waits it out once.
    return {"VAREON_SERVER_MAX_BODY_SIZE": str(LIMIT), "VAREON_DATABASE_BUSY_TIMEOUT": "0.1"}


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


# --- hostile bodies on every POST route --------------------------------------------------------

DEEP_JSON = b"[" * 2000 + b"]" * 2000  # past the JSON parser's nesting limit, within LIMIT
SURROGATES = (
    b'{"username": "\\ud800", "email": "\\ud800@example.com", "password": "\\udfff\\ud800pass!",'
    b' "refresh_token": "\\ud800", "token": "\\ud800", "grant_type": "\\ud800"}'
)
HUGE_NUMBERS = (
    b'{"username": 1e999, "email": -1e999, "password": 1' + b"0" * 600 + b","
    b' "refresh_token": 123456789012345678901234567890, "token": 1e-999}'
)
UNICODE = (
    '{"username": "\u00fcn\u00efc\u00f8d\u00e9", "email": "\u00e9@\u4f8b\u3048.\u30c6\u30b9\u30c8",'
    ' "password": "\u043f\u0430\u0440\u043e\u043b\u044c-\U0001f600", "refresh_token": "\u00e9.\u00e9.\u00e9",'
    ' "token": "\u00e9.\u00e9.\u00e9"}'
).encode()
JSON = "application/json"
FORM = "application/x-www-form-urlencoded"

# name -> (body, Content-Type or None, (status, code) on a JSON-only route, on a form-or-JSON one);
# an expectation of None means "any 4xx" (the route's own 401/422).
HOSTILE: dict[str, tuple[bytes, str | None, tuple[int, str] | None, tuple[int, str] | None]] = {
    "deeply-nested-json": (DEEP_JSON, JSON, (400, "malformed_json"), (400, "malformed_json")),
    "deep-object": (b'{"a":' * 600 + b"1" + b"}" * 600, JSON, (400, "malformed_json"), (400, "malformed_json")),
    "latin-1-json": (b'{"username": "\xe9t\xe9"}', JSON, (400, "malformed_json"), (400, "malformed_json")),
    "binary-json": (b"\xff\xfe\x00{", JSON, (400, "malformed_json"), (400, "malformed_json")),
    "lone-surrogates": (SURROGATES, JSON, (400, "malformed_json"), (400, "malformed_json")),
    "nan": (b'{"username": NaN, "password": Infinity}', JSON, (400, "malformed_json"), (400, "malformed_json")),
    "empty-json": (b"", JSON, (400, "malformed_json"), (400, "malformed_json")),
    "huge-numbers": (HUGE_NUMBERS, JSON, None, None),
    "unicode": (UNICODE, JSON, None, None),
    "json-as-text-plain": (b'{"username": "ann"}', "text/plain", (415, "unsupported_media_type"), (415, "unsupported_media_type")),
    "xml": (b"<user/>", "application/xml", (415, "unsupported_media_type"), (415, "unsupported_media_type")),
    "no-content-type": (b'{"username": "ann"}', None, (415, "unsupported_media_type"), (415, "unsupported_media_type")),
    "empty-without-type": (b"", None, (415, "unsupported_media_type"), (415, "unsupported_media_type")),
    "latin-1-form": (b"username=\xe9t\xe9&password=\xff\xfe&refresh_token=\xe9", FORM, (415, "unsupported_media_type"), (400, "malformed_form")),
    "surrogate-escapes-in-form": (b"username=%ED%A0%80&password=%ED%A0%80%ED%A0%80&refresh_token=%ED%A0%80&token=%ED%A0%80", FORM, (415, "unsupported_media_type"), None),
    "multipart": (
        b'--b\r\nContent-Disposition: form-data; name="username"\r\n\r\n\xe9\r\n--b--\r\n',
        "multipart/form-data; boundary=b",
        (415, "unsupported_media_type"),
        None,
    ),
    "multipart-without-boundary": (b"--b--\r\n", "multipart/form-data", (415, "unsupported_media_type"), None),
}


def _post_routes(front: Front) -> list[tuple[str, bool, bool]]:
    """Every POST route of the app (path parameters filled with a random UUID), whether it
    takes a form as well as JSON, and whether it reads a body at all."""
    routes = []
    for route in route_access(front.app):
        if route.method == "POST":
            rule = next(r for r in front.app.url_map.iter_rules() if r.rule == route.rule)
            view = front.app.view_functions[rule.endpoint]
            takes_forms = bool(getattr(view, FORM_OR_JSON_ATTRIBUTE, False))
            reads_body = takes_forms or hasattr(view, QUART_SCHEMA_REQUEST_ATTRIBUTE)
            path = re.sub(r"<[^<>]+>", lambda _: str(uuid.uuid4()), route.rule)
            routes.append((path, takes_forms, reads_body))
    assert {path for path, _, _ in routes} >= {"/api/register", "/api/token", "/api/token/refresh"}
    return routes


@pytest.mark.parametrize("case", sorted(HOSTILE))
async def test_no_post_route_answers_500_to_a_hostile_body(
    front: Front, accounts: dict[Role, Account], case: str, log_records: list[logging.LogRecord]
) -> None:
    body, content_type, on_json_route, on_form_route = HOSTILE[case]
    # As an admin, so that routes behind a role read the body too (public ones ignore the token).
    headers = {**accounts[Role.ADMIN].headers, **({"Content-Type": content_type} if content_type else {})}
    client = front.app.test_client()
    for path, takes_forms, reads_body in _post_routes(front):
        response = await client.post(path, data=body, headers=headers)
        where = f"{case} on POST {path}"
        assert 400 <= response.status_code < 500, (where, response.status_code)
        assert response.content_type == "application/json", where
        error = error_of(await response.get_json())
        expected = on_form_route if takes_forms else on_json_route
        if expected is not None and reads_body:
            assert (response.status_code, error["code"]) == expected, (where, error)
    assert not [r for r in log_records if r.levelno >= logging.ERROR], case


async def test_malformed_bodies_say_what_is_wrong(client: httpx.AsyncClient) -> None:
    cases = {
        DEEP_JSON: "request body is not valid JSON: ",
        b'{"username": "\xe9t\xe9"}': "request body is not valid JSON: it is not UTF-8",
        SURROGATES: "request body is not valid JSON: ",
    }
    for body, start in cases.items():
        for path in ("/api/register", "/api/token"):
            response = await client.post(path, content=body, headers={"Content-Type": JSON})
            assert response.status_code == 400, (path, response.text)
            error = error_of(response.json())
            assert (error["code"], str(error["message"])[: len(start)]) == ("malformed_json", start)
    form = await client.post("/api/token", content=b"username=\xe9", headers={"Content-Type": FORM})
    assert form.status_code == 400
    assert error_of(form.json())["message"] == (
        "request body is not a valid form: it is not UTF-8 (unexpected end of data at byte 9)"
    )


async def test_a_json_only_route_says_which_content_type_it_takes(client: httpx.AsyncClient) -> None:
    body = b'{"username": "ann", "email": "ann@example.com", "password": "a long passphrase"}'
    response = await client.post("/api/register", content=body, headers={"Content-Type": "text/plain"})
    assert response.status_code == 415
    error = error_of(response.json())
    assert error["code"] == "unsupported_media_type"
    assert error["message"] == (
        "POST /api/register takes a JSON body: send it with Content-Type: application/json,"
        " not text/plain"
    )
    assert error["details"] == {"expected": ["application/json"], "received": "text/plain"}
    # The token routes take both encodings, and say so.
    token = await client.post("/api/token", content=b"<x/>", headers={"Content-Type": "application/xml"})
    assert token.status_code == 415
    assert error_of(token.json())["details"] == {
        "expected": ["application/json", "application/x-www-form-urlencoded", "multipart/form-data"],
        "received": "application/xml",
    }


async def test_a_form_with_too_many_parts_is_413_saying_so(front: Front) -> None:
    app = create_app(front.ctx)
    app.config["MAX_FORM_PARTS"] = 10
    parts = b"".join(
        b'--b\r\nContent-Disposition: form-data; name="f%d"\r\n\r\nx\r\n' % n for n in range(11)
    )
    response = await app.test_client().post(
        "/api/token", data=parts + b"--b--\r\n", headers={"Content-Type": "multipart/form-data; boundary=b"}
    )
    assert response.status_code == 413
    error = error_of(await response.get_json())
    assert error["code"] == "too_large"
    assert error["message"] == "the form has more than 10 parts; send at most 10 fields and files"
    assert error["details"] == {"max_parts": 10}
    # Ten parts are fine (and then validated).
    ten = b"".join(
        b'--b\r\nContent-Disposition: form-data; name="f%d"\r\n\r\nx\r\n' % n for n in range(10)
    )
    response = await app.test_client().post(
        "/api/token", data=ten + b"--b--\r\n", headers={"Content-Type": "multipart/form-data; boundary=b"}
    )
    assert response.status_code == 422


async def test_a_locked_database_is_503_not_500(
    front: Front, client: httpx.AsyncClient, log_records: list[logging.LogRecord]
) -> None:
    # Another process holds SQLite's write lock past the store's busy timeout.
    database = front.ctx.config.data_dir_path / "vareon.db"
    holder = sqlite3.connect(database, isolation_level=None)
    try:
        holder.execute("BEGIN IMMEDIATE")
        body = {"username": "lockedout", "email": "l@example.com", "password": "a long passphrase"}
        response = await client.post("/api/register", json=body)
        assert response.status_code == 503, response.text
        error = error_of(response.json())
        assert error["code"] == "unavailable"
        assert error["message"] == (
            "the database is unavailable (locked, full or unreachable); try again later"
        )
        assert error["details"] == {"request_id": response.headers["x-request-id"]}
        assert "$argon2" not in response.text
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert not [r for r in log_records if r.levelno >= logging.ERROR]
    [warning] = [r.getMessage() for r in log_records if "unavailable" in r.getMessage()]
    assert "database is locked" in warning and "$argon2" not in warning
    again = await client.post("/api/register", json=body)
    assert again.status_code == 201, again.text
