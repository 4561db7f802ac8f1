"""``GET /metrics``: what a Prometheus on the box (or, with a token, elsewhere) scrapes."""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime, timedelta, timezone
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
import trio
from trio_websocket import WebSocketConnection, wrap_client_stream
from web_support import AGENTS, Account, Front, error_of

import web.telemetry as telemetry_module
import web.websocket as websocket_module
from actors.kit.wire import Page
from actors.myntrix.scheduler import RunStatus, RunTrigger, TaskRun
from vareon_runtime.auth import Role
from vareon_runtime.component import Component
from vareon_runtime.errors import ConfigError
from vareon_runtime.status_board import StatusBoard
from web.metrics_export import MetricsConfig, metrics_token
from web.metrics_export import component as prometheus_component
from web.prometheus import EXTENSION, Exporter, is_local_request
from web.traffic import TrafficMeter, dropped_count

TIMEOUT = 10
TOKEN = "metrics-token-0123456789abcdef"


@pytest.fixture
def front_components() -> tuple[Component, ...]:
    return (prometheus_component, *AGENTS)


def sample(text: str, metric: str, /, **labels: str) -> float | None:
    """The value of the series ``metric{labels}`` in a text exposition, or None when absent."""
    for line in text.splitlines():
        if line.startswith("#"):
            continue
        match = re.fullmatch(r"([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)", line)
        if match is None or match.group(1) != metric:
            continue
        found = dict(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', match.group(2) or ""))
        if found == labels:
            return float(match.group(3))
    return None


async def scrape(client: httpx.AsyncClient, **headers: str) -> str:
    response = await client.get("/metrics", headers=headers)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    return response.text


# --- what it shows --------------------------------------------------------------------------------


async def test_the_tree_the_store_and_the_requests_by_route_template(
    front: Front, client: httpx.AsyncClient, accounts: dict[Role, Account]
) -> None:
    viewer = accounts[Role.VIEWER].headers
    missing = uuid.uuid4()
    assert (await client.get(f"/api/myntrix/agents/{missing}", headers=viewer)).status_code == 404
    for _ in range(3):
        assert (await client.get("/api/users/me", headers=viewer)).status_code == 200
    assert (await client.get("/no/such/page")).status_code == 404

    text = await scrape(client)
    assert sample(text, "vareon_runtime_info", name="vareon", version=front.ctx.version) == 1
    # The tree, down to the domains' own supervisors, from the status board.
    assert sample(text, "vareon_supervised_children", supervisor="root", kind="StatusBoard", status="running") == 1
    assert sample(text, "vareon_supervised_children", supervisor="root", kind="AgentsModule", status="running") == 1
    assert sample(text, "vareon_supervised_children", supervisor="root", kind="AgentsModule", status="failed") == 0
    assert sample(text, "vareon_restarts_total", supervisor="root", kind="AgentsModule") == 0
    assert sample(text, "vareon_actors", kind="agents") == 1
    # The store: every account above was one committed write at least.
    assert sample(text, "vareon_store_queue_depth") == 0
    assert (sample(text, "vareon_store_writes_total", outcome="committed") or 0) >= len(Role)
    assert (sample(text, "vareon_store_commit_seconds_count") or 0) >= 1
    assert sample(text, "vareon_store_commit_seconds_bucket", le="+Inf") == sample(text, "vareon_store_commit_seconds_count")
    # Requests by template, never by raw path; the direct answers (/api/users/me) count too.
    assert front.app.direct_routes and "/api/users/me" in front.app.direct_routes, "direct answers must stay on"
    route = "/api/myntrix/agents/<agent_id>"
    assert sample(text, "vareon_http_request_duration_seconds_count", method="GET", route=route, status="404") == 1
    assert str(missing) not in text
    assert sample(text, "vareon_http_request_duration_seconds_count", method="GET", route="/api/users/me", status="200") == 3
    assert sample(text, "vareon_http_request_duration_seconds_count", method="GET", route="<unmatched>", status="404") == 1
    assert "/no/such/page" not in text
    assert sample(text, "vareon_telemetry_rows_total") == 0
    assert (sample(text, "process_resident_memory_bytes") or 0) > 0

    # The scrape itself is counted by the next one.
    again = await scrape(client)
    assert sample(again, "vareon_http_request_duration_seconds_count", method="GET", route="/metrics", status="200") == 1


async def test_a_crash_shows_as_a_restart_of_its_kind(front: Front, client: httpx.AsyncClient) -> None:
    board = front.ctx.registry.face(StatusBoard)
    # What a supervisor announces when a child of it crashes and comes back.
    for status, restarts in (("starting", 0), ("running", 0), ("backoff", 1), ("starting", 1), ("running", 1)):
        front.ctx.bus.publish(
            "status.actor",
            {"supervisor": "agents", "name": "agent/x", "kind": "AgentActor", "status": status, "restarts": restarts, "reason": None},
        )
    with trio.fail_after(TIMEOUT):
        while board.restarts().get(("agents", "AgentActor")) != 1:
            await trio.sleep(0.01)
    text = await scrape(client)
    assert sample(text, "vareon_restarts_total", supervisor="agents", kind="AgentActor") == 1
    # Not a registered actor, so it stays on the board as announced.
    assert sample(text, "vareon_supervised_children", supervisor="agents", kind="AgentActor", status="running") == 1


# --- WebSockets -------------------------------------------------------------------------------------


@asynccontextmanager
async def connect(url: str) -> AsyncIterator[WebSocketConnection]:
    parts = urlsplit(url)
    assert parts.hostname is not None and parts.port is not None
    with trio.fail_after(TIMEOUT):
        stream = await trio.open_tcp_stream(parts.hostname, parts.port)
    async with stream, trio.open_nursery() as nursery:
        ws = await wrap_client_stream(nursery, stream, parts.hostname, parts.path)
        try:
            yield ws
        finally:
            with trio.fail_after(TIMEOUT):
                await ws.aclose()
            await stream.aclose()


async def test_websocket_clients_connections_and_who_ended_them(front: Front, client: httpx.AsyncClient) -> None:
    url = front.base_url.replace("http://", "ws://", 1) + "/api/websocket"
    async with connect(url) as ws:
        with trio.fail_after(TIMEOUT):
            assert json.loads(await ws.get_message())["type"] == "auth_required"
        text = await scrape(client)
        assert sample(text, "vareon_websocket_clients", route="/api/websocket") == 1
        assert sample(text, "vareon_websocket_connections_total", route="/api/websocket") == 1
    with trio.fail_after(TIMEOUT):
        while True:
            text = await scrape(client)
            if sample(text, "vareon_websocket_clients", route="/api/websocket") == 0:
                break
            await trio.sleep(0.02)
    assert sample(text, "vareon_websocket_disconnects_total", route="/api/websocket", by="client") == 1
    assert sample(text, "vareon_websocket_dropped_events_total", route="/api/websocket") is None


def test_dropped_frames_are_read_from_both_endpoints_own_encoding() -> None:
    assert dropped_count(websocket_module._encode({"id": 123456789, "type": "dropped", "count": 40})) == 40
    assert dropped_count(telemetry_module._encode({"type": "dropped", "deviceId": str(uuid.uuid4()), "count": 3})) == 3
    event = {"id": 2, "type": "event", "event": {"topic": "a.b", "data": {"type": "dropped", "count": 9}}}
    assert dropped_count(websocket_module._encode(event)) == 0
    assert dropped_count('{"type":"dropped"') == 0  # not JSON: nothing counted, nothing raised


# --- who may scrape ---------------------------------------------------------------------------------


def test_this_machine_is_loopback_or_no_address_and_a_proxy_makes_it_remote() -> None:
    assert is_local_request("127.0.0.1", "127.0.0.1", False)
    assert is_local_request("::1", "::1", False)
    assert is_local_request("<local>", "<local>", False)  # in-process, or a Unix socket
    assert not is_local_request("192.168.1.20", "192.168.1.20", False)
    # nginx on the box, not listed in trusted_proxies: its X-Forwarded-For is not believed, so
    # the request counts as remote rather than as the proxy's loopback address.
    assert not is_local_request("127.0.0.1", "127.0.0.1", True)
    # a trusted proxy: the client it names decides.
    assert not is_local_request("127.0.0.1", "203.0.113.7", True)
    assert is_local_request("10.0.0.2", "127.0.0.1", True)


@pytest.mark.parametrize(
    ("front_environ", "headers"),
    [
        ({}, {"X-Forwarded-For": "203.0.113.7"}),
        ({"VAREON_SERVER_TRUSTED_PROXIES": "127.0.0.1"}, {"X-Forwarded-For": "203.0.113.7"}),
    ],
)
async def test_a_remote_scrape_is_refused_by_default(client: httpx.AsyncClient, headers: dict[str, str]) -> None:
    response = await client.get("/metrics", headers=headers)
    assert response.status_code == 403
    error = error_of(response.json())
    assert "served to this machine only" in str(error["message"])
    assert "allow_remote" in str(error["message"])


@pytest.fixture
def remote_environ(monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    monkeypatch.setenv("VAREON_METRICS_TOKEN", TOKEN)
    return {"VAREON_SERVER_TRUSTED_PROXIES": "127.0.0.1", "VAREON_METRICS_ALLOW_REMOTE": "true"}


@pytest.fixture
def front_environ(remote_environ: dict[str, str]) -> dict[str, str]:
    # Parametrized tests override this; the others scrape with remote scrapes allowed, which
    # changes nothing for a client on this machine.
    return remote_environ


async def test_a_remote_scrape_needs_the_token(client: httpx.AsyncClient) -> None:
    remote = {"X-Forwarded-For": "203.0.113.7"}
    refused = await client.get("/metrics", headers=remote)
    assert refused.status_code == 401
    assert refused.headers["www-authenticate"] == "Bearer"
    assert "VAREON_METRICS_TOKEN" in str(error_of(refused.json())["message"])
    wrong = await client.get("/metrics", headers={**remote, "Authorization": "Bearer " + "x" * len(TOKEN)})
    assert wrong.status_code == 401
    assert "not the metrics token" in str(error_of(wrong.json())["message"])
    text = await scrape(client, **remote, Authorization=f"Bearer {TOKEN}")
    assert sample(text, "vareon_runtime_info", name="vareon", version="0.1.0") is not None
    # This machine needs none.
    await scrape(client)


def test_remote_scrapes_without_a_token_stop_the_start(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("VAREON_METRICS_TOKEN", raising=False)
    with pytest.raises(ConfigError, match=r"allow_remote is true, but VAREON_METRICS_TOKEN is not set; .* at least 16"):
        metrics_token(MetricsConfig(allow_remote=True))
    monkeypatch.setenv("VAREON_METRICS_TOKEN", "short")
    with pytest.raises(ConfigError, match="VAREON_METRICS_TOKEN holds 5 characters"):
        metrics_token(MetricsConfig(allow_remote=True))
    assert metrics_token(MetricsConfig(allow_remote=False)) is None


@pytest.mark.parametrize("front_environ", [{"VAREON_METRICS_ENABLED": "false"}])
async def test_disabled_metrics_are_a_404_and_count_nothing(front: Front, client: httpx.AsyncClient) -> None:
    response = await client.get("/metrics")
    assert response.status_code == 404
    assert "[metrics] enabled = false" in str(error_of(response.json())["message"])
    assert EXTENSION not in front.app.extensions
    assert not isinstance(front.app.asgi_app, TrafficMeter)
    with pytest.raises(Exception, match="no StatusBoard is provided"):
        front.ctx.registry.face(StatusBoard)


# --- the scheduler's lateness -------------------------------------------------------------------------


class FakeTasks:
    """The history part of the ``Tasks`` face: runs in a window, newest first, paged."""

    def __init__(self, runs: list[TaskRun]) -> None:
        self.runs = runs
        self.calls: list[tuple[datetime | None, datetime | None, int, int]] = []

    async def history(
        self, *, since: datetime | None = None, until: datetime | None = None, limit: int = 50, offset: int = 0, **_: Any
    ) -> Page[TaskRun]:
        self.calls.append((since, until, limit, offset))
        found = [
            run for run in self.runs
            if (since is None or run.start_time >= since) and (until is None or run.start_time < until)
        ]
        found.sort(key=lambda run: run.start_time, reverse=True)
        return Page(found[offset : offset + limit], len(found))


def _run(start: datetime, late: float | None, *, status: RunStatus = RunStatus.SUCCESS) -> TaskRun:
    return TaskRun(
        id=str(uuid.uuid4()), task_id=str(uuid.uuid4()), start_time=start, end_time=start, status=status, logs=None,
        trigger=RunTrigger.CRON if late is not None else RunTrigger.MANUAL,
        scheduled_for=start - timedelta(seconds=late) if late is not None else None,
        exit_code=0, http_status=None, error=None, job_id=None,
    )


async def test_lateness_is_read_once_per_run_window_by_window(front: Front) -> None:
    exporter: Exporter = front.app.extensions[EXTENSION]
    now = datetime.now(timezone.utc)
    exporter._history_since = now - timedelta(minutes=1)
    before = now - timedelta(seconds=30)
    runs = [
        _run(before + timedelta(milliseconds=1), 0.004),
        _run(before + timedelta(milliseconds=2), 2.0),
        _run(before + timedelta(milliseconds=3), None),  # run by hand: no fire time
        _run(before + timedelta(milliseconds=4), 0.0, status=RunStatus.SKIPPED),
        _run(now + timedelta(hours=1), 0.5),  # after the window: a later scrape's
    ]
    fake = FakeTasks(runs)
    await exporter._read_runs(fake)  # type: ignore[arg-type]
    assert exporter.lateness.count == 2 and exporter.lateness.total == pytest.approx(2.004)
    assert exporter.skipped_runs == 1
    first_until = fake.calls[-1][1]
    assert first_until is not None and first_until <= now
    await exporter._read_runs(fake)  # type: ignore[arg-type]
    assert exporter.lateness.count == 2, "a run is read once"
    assert fake.calls[-1][0] == first_until, "the next window starts where the last ended"
