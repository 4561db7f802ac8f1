"""The ``api`` task action against a real HTTP server on a local port (a small HTTP/1.1 server
on raw trio sockets): expected and unexpected statuses, bodies, secrets kept out of the log,
connection refused, no answer."""

from __future__ import annotations

import json
import socket
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from functools import partial

import pytest
import trio

from actors.myntrix.scheduler.actions import (
    ACTIONS,
    BODY_LOG_LIMIT,
    MASK,
    ActionContext,
    ActionOutcome,
    ApiParameters,
)
from actors.kit.runs import RunLog
from vareon_runtime.bus import EventBus
from vareon_runtime.errors import InvalidRequestError
from vareon_runtime.registry import Registry

TIMEOUT = 30.0


@dataclass
class Received:
    method: str
    target: str
    headers: dict[str, str]
    body: bytes


@dataclass
class Server:
    """Answers every request with ``status`` and ``body`` (or never, when ``silent``)."""

    port: int = 0
    status: int = 200
    body: bytes = b'{"ok": true}'
    silent: bool = False
    requests: list[Received] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def handle(self, stream: trio.SocketStream) -> None:
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = await stream.receive_some(65536)
            if not chunk:
                return
            data += chunk
        head, _, rest = data.partition(b"\r\n\r\n")
        request_line, *lines = head.decode("latin-1").split("\r\n")
        headers = {name.lower(): value.strip() for name, _, value in (line.partition(":") for line in lines)}
        length = int(headers.get("content-length", "0"))
        while len(rest) < length:
            rest += await stream.receive_some(65536)
        method, target, _ = request_line.split(" ", 2)
        self.requests.append(Received(method, target, headers, rest))
        if self.silent:
            await trio.sleep_forever()
        reason = {200: "OK", 201: "Created", 404: "Not Found", 500: "Internal Server Error"}.get(self.status, "X")
        await stream.send_all(
            f"HTTP/1.1 {self.status} {reason}\r\nContent-Type: text/plain\r\n"
            f"Content-Length: {len(self.body)}\r\nConnection: close\r\n\r\n".encode()
            + self.body
        )
        await stream.aclose()


@pytest.fixture
async def server(nursery: trio.Nursery) -> AsyncIterator[Server]:
    server = Server()
    listeners = await nursery.start(partial(trio.serve_tcp, server.handle, 0, host="127.0.0.1"))
    server.port = listeners[0].socket.getsockname()[1]
    yield server


async def an_admins_task() -> bool:
    return True  # the local server is loopback: only an admin's task reaches it (decision 0024)


def context(lines: list[str]) -> ActionContext:
    return ActionContext(
        task_id=str(uuid.uuid4()), run_id=str(uuid.uuid4()), registry=Registry(), bus=EventBus(), log=lines.append,
        reaches_internal=an_admins_task,
    )  # fmt: skip


async def call(parameters: dict[str, object]) -> tuple[ActionOutcome, list[str]]:
    lines: list[str] = []
    params = ACTIONS.validate("api", parameters)
    with trio.fail_after(TIMEOUT):
        outcome = await ACTIONS.action("api").run(params, context(lines))
    return outcome, lines


async def test_a_json_post_with_headers_succeeds_and_logs_status_and_body(server: Server) -> None:
    outcome, lines = await call(
        {
            "method": "post",
            "url": server.url + "/hook?x=1",
            "headers": {"Authorization": "Bearer very-secret-token", "X-Trace": "t1"},
            "body": {"event": "nightly", "count": 3},
        }
    )
    assert outcome == ActionOutcome(ok=True, http_status=200)
    [request] = server.requests
    assert (request.method, request.target) == ("POST", "/hook?x=1")
    assert request.headers["authorization"] == "Bearer very-secret-token"
    assert request.headers["x-trace"] == "t1"
    assert request.headers["content-type"] == "application/json"
    assert json.loads(request.body) == {"event": "nightly", "count": 3}
    assert lines[0] == f"POST {server.url}/hook?x=1"
    assert lines[1].startswith("answered 200 OK in ")
    assert lines[2:] == ['{"ok": true}']
    assert not any("very-secret-token" in line for line in lines)


async def test_a_text_body_is_sent_as_text(server: Server) -> None:
    outcome, _ = await call({"method": "PUT", "url": server.url, "body": "plain words"})
    assert outcome.ok
    assert server.requests[0].body == b"plain words"
    assert server.requests[0].headers["content-type"] == "text/plain; charset=utf-8"


async def test_an_unexpected_status_fails_with_the_status(server: Server) -> None:
    server.status, server.body = 500, b"database down"
    outcome, lines = await call({"url": server.url + "/status"})
    assert outcome == ActionOutcome(
        ok=False, http_status=500, error=f"GET {server.url}/status answered 500, expected 2xx"
    )
    assert "database down" in lines


@pytest.mark.parametrize(
    ("expected", "ok"), [(404, True), ([404, 410], True), (200, False), (None, False)]
)
async def test_the_expected_status_decides(server: Server, expected: object, ok: bool) -> None:
    server.status = 404
    parameters: dict[str, object] = {"url": server.url}
    if expected is not None:
        parameters["expectedStatus"] = expected
    outcome, _ = await call(parameters)
    assert (outcome.ok, outcome.http_status) == (ok, 404)


async def test_a_long_body_is_cut_in_the_log(server: Server) -> None:
    server.body = b"x" * (BODY_LOG_LIMIT * 3)
    outcome, lines = await call({"url": server.url})
    assert outcome.ok
    assert lines[2] == "x" * BODY_LOG_LIMIT
    assert lines[3] == f"... (body cut at {BODY_LOG_LIMIT} of {BODY_LOG_LIMIT * 3} bytes)"


async def test_connection_refused_is_a_failed_run_with_the_reason() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # nothing listens there once it is closed
    outcome, lines = await call({"url": f"http://127.0.0.1:{port}/x"})
    assert outcome.ok is False and outcome.http_status is None
    assert outcome.error is not None
    assert outcome.error.startswith(f"GET http://127.0.0.1:{port}/x failed: ConnectError")
    assert lines[-1] == outcome.error


async def test_no_answer_within_the_timeout_is_a_failed_run(server: Server) -> None:
    server.silent = True
    outcome, _ = await call({"url": server.url, "timeout": 0.3})
    assert outcome == ActionOutcome(ok=False, error=f"GET {server.url}: no answer within 0.3s")
    assert len(server.requests) == 1


async def test_secrets_in_the_url_are_masked_in_the_log(server: Server) -> None:
    url = f"http://bot:hunter2@127.0.0.1:{server.port}/x?api_key=k123&page=2"
    outcome, lines = await call({"url": url})
    assert outcome.ok
    assert server.requests[0].target == "/x?api_key=k123&page=2"
    assert lines[0] == f"GET http://bot:{MASK}@127.0.0.1:{server.port}/x?api_key={MASK}&page=2"
    assert not any("hunter2" in line or "k123" in line for line in lines)


def test_masked_parameters_hide_secrets_and_a_sent_back_mask_keeps_them() -> None:
    stored = ACTIONS.validate(
        "api",
        {
            "url": "https://u:pw@example.com/a?token=abc&q=1",
            "headers": {"Authorization": "Bearer t0k", "X-Api-Key": "k", "Accept": "application/json"},
            "expectedStatus": [200, 204],
        },
    )
    shown = stored.masked()
    assert shown == {
        "method": "GET",
        "url": f"https://u:{MASK}@example.com/a?token={MASK}&q=1",
        "headers": {"Authorization": MASK, "X-Api-Key": MASK, "Accept": "application/json"},
        "body": None,
        "expectedStatus": [200, 204],
        "timeout": 30.0,
    }
    assert "t0k" not in repr(stored) and "pw@" not in repr(stored)
    # The dashboard sends the task back as shown, with one header changed: the secrets stay.
    again = ACTIONS.validate("api", {**shown, "headers": {**shown["headers"], "accept": "text/plain"}}, previous=stored)
    assert isinstance(again, ApiParameters)
    assert again.url == "https://u:pw@example.com/a?token=abc&q=1"
    assert again.headers["Authorization"] == "Bearer t0k" and again.headers["X-Api-Key"] == "k"
    # A new URL is taken as sent.
    moved = ACTIONS.validate("api", {**shown, "url": "https://example.com/b"}, previous=stored)
    assert isinstance(moved, ApiParameters) and moved.url == "https://example.com/b"


@pytest.mark.parametrize(
    ("parameters", "message"),
    [
        ({"url": "ftp://example.com/file"}, "must be an http:// or https:// URL"),
        ({"url": "file:///etc/passwd"}, "must be an http:// or https:// URL"),
        ({"url": "http:///nohost"}, "must name a host"),
        ({"url": "http://example.com:99999/"}, "is not a valid URL"),
        ({"url": "https://example.com", "method": "BREW"}, "parameters.method"),
        ({"url": "https://example.com", "headers": {"Bad Name": "x"}}, "'Bad Name' is not a valid header name"),
        ({"url": "https://example.com", "headers": {"X": "a\r\nInjected: 1"}}, "must not contain line breaks"),
        ({"url": "https://example.com", "expectedStatus": 700}, "700 is not an HTTP status"),
        ({"url": "https://example.com", "expectedStatus": []}, "at least one status"),
        ({"url": "https://example.com", "timeout": 0}, "parameters.timeout"),
        ({}, "parameters.url: Field required"),
    ],
)
def test_bad_parameters_are_422(parameters: dict[str, object], message: str) -> None:
    with pytest.raises(InvalidRequestError, match=message):
        ACTIONS.validate("api", parameters)


def test_a_refused_url_does_not_echo_its_password() -> None:
    with pytest.raises(InvalidRequestError) as caught:
        ACTIONS.validate("api", {"url": "ftp://me:topsecret@example.com/"})
    assert "topsecret" not in caught.value.message and "topsecret" not in repr(caught.value.details)


async def test_the_body_is_kept_in_the_run_but_not_published_on_the_log_topic(server: Server) -> None:
    bus = EventBus()
    topic = "task.t1.log"
    subscription = bus.subscribe(topic)
    log = RunLog(4096, bus, topic, "r1")
    ctx = ActionContext(
        task_id="t1", run_id="r1", registry=Registry(), bus=bus, log=log, keep=log.kept, reaches_internal=an_admins_task
    )
    with trio.fail_after(TIMEOUT):
        outcome = await ACTIONS.action("api").run(ACTIONS.validate("api", {"url": server.url}), ctx)
    assert outcome.ok
    assert log.text is not None and log.text.endswith('{"ok": true}')  # the run's record has it
    published = []
    while True:
        try:
            published.append(subscription.receive_nowait())
        except trio.WouldBlock:
            break
    lines = [event.data["line"] for event in published]  # type: ignore[union-attr]
    assert lines[0] == f"GET {server.url}" and lines[1].startswith("answered 200 OK")
    assert len(lines) == 2  # every role may follow the topic: no body on it
