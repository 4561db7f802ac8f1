"""/health and /api/system/status: the runtime's state as an operator sees it."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio
from web_support import AGENTS, Account, error_of, start_front

from vareon_runtime import __version__
from vareon_runtime.auth import Role
from vareon_runtime.component import Component
from vareon_runtime.supervisor import ChildSpec
from web.system import human_duration


async def test_health_needs_no_token(client: httpx.AsyncClient) -> None:
    response = await client.get("/health")
    assert response.status_code == 200
    assert response.json() == {"status": "ok", "version": __version__}


async def test_status_needs_a_token(client: httpx.AsyncClient) -> None:
    response = await client.get("/api/system/status")
    assert response.status_code == 401
    assert error_of(response.json())["code"] == "unauthorized"


async def test_status_shows_version_uptime_modules_actors_and_store(
    client: httpx.AsyncClient, accounts: dict[Role, Account]
) -> None:
    response = await client.get("/api/system/status", headers=accounts[Role.VIEWER].headers)
    assert response.status_code == 200, response.text
    status = response.json()
    assert status["name"] == "vareon"
    assert status["version"] == __version__
    assert status["started_at"].endswith("Z")
    assert status["uptime"]["seconds"] >= 0
    assert status["uptime"]["text"].startswith("0:00:")
    modules = {m["name"]: m for m in status["modules"]}
    assert list(modules) == ["journal", "web"]  # start order
    web = modules["web"]
    assert web["kind"] == "WebServer" and web["status"] == "running"
    assert web["restarts"] == 0 and web["last_error"] is None
    assert web["started_at"].endswith("Z")
    assert web["uptime"]["seconds"] >= 0 and web["uptime"]["text"].startswith("0:00:")
    assert status["actors"] == {}
    assert status["store"] == {"queue_depth": 0}
    assert status["failures"] == []


class _Unplugged:
    """A module that starts, then crashes every time."""

    async def run(self, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        # Not at once: a crash in the same tick as started() is reported as running (a kernel
        # supervisor race, reported separately).
        await trio.sleep(0.05)
        raise RuntimeError("sensor bus unplugged")


FLAKY = Component(name="sensors", build=lambda ctx: ChildSpec("sensors", _Unplugged, max_restarts=1, period=60), order=10)


async def test_a_child_that_gave_up_shows_with_its_reason(
    nursery: trio.Nursery, tmp_path: Path
) -> None:
    front = await start_front(nursery, tmp_path / "data", components=(FLAKY,))
    await front.ctx.auth.create_user("watcher", None, "a long enough passphrase", Role.VIEWER)
    token = (await front.ctx.auth.login("watcher", "a long enough passphrase", None)).access_token
    async with httpx.AsyncClient(base_url=front.base_url, timeout=10) as client:
        with trio.fail_after(10):
            while True:
                status = (
                    await client.get(
                        "/api/system/status", headers={"Authorization": f"Bearer {token}"}
                    )
                ).json()
                sensors = next(m for m in status["modules"] if m["name"] == "sensors")
                failed = [f for f in status["failures"] if f["kind"] == "failed"]
                if sensors["status"] == "failed" and failed:
                    break
                await trio.sleep(0.02)
    assert sensors["kind"] == "_Unplugged"
    assert sensors["uptime"] is None
    assert "sensor bus unplugged" in sensors["last_error"]
    assert "gave up" in sensors["last_error"]
    (gave_up,) = failed
    assert gave_up["source"] == "sensors"
    assert "sensor bus unplugged" in gave_up["message"]
    assert gave_up["time"].endswith("Z")
    # The journal also kept the first crash (the restart), newest first.
    assert [f["kind"] for f in status["failures"]][0] == "failed"
    assert len(status["failures"]) >= 2
    await front.stop()


def test_human_duration() -> None:
    assert human_duration(0) == "0:00:00"
    assert human_duration(59.9) == "0:00:59"
    assert human_duration(2 * 86400 + 3 * 3600 + 4 * 60 + 5) == "2 days, 3:04:05"
    assert human_duration(-1) == "0:00:00"


async def test_status_shows_the_runtime_process_not_mocked(
    client: httpx.AsyncClient, accounts: dict[Role, Account]
) -> None:
    response = await client.get("/api/system/status", headers=accounts[Role.VIEWER].headers)
    status = response.json()
    assert status["mocked"] is False and status["reason"] is None
    process = status["process"]
    assert process["pid"] == os.getpid()  # the runtime runs in the test's process here
    assert process["rss"] > 0 and process["peak_rss"] >= process["rss"] // 2
    assert process["threads"] >= 1 and process["cpu_seconds"] > 0
    assert process["mocked"] is False and process["reason"] is None
    assert status["host"] is None  # no metrics module in this runtime


async def test_status_says_mocked_with_the_reason_when_the_metrics_are_mocked(
    nursery: trio.Nursery, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("VAREON_MOCK_SYSTEM_METRICS", "1")
    front = await start_front(nursery, tmp_path / "data", components=AGENTS)
    try:
        await front.ctx.auth.create_user("watcher", None, "a long enough passphrase", Role.VIEWER)
        token = (await front.ctx.auth.login("watcher", "a long enough passphrase", None)).access_token
        async with httpx.AsyncClient(base_url=front.base_url, timeout=10) as client:
            response = await client.get("/api/system/status", headers={"Authorization": f"Bearer {token}"})
    finally:
        await front.stop()
    assert response.status_code == 200, response.text
    status = response.json()
    reason = "VAREON_MOCK_SYSTEM_METRICS=1 asks for metrics without psutil"
    assert status["mocked"] is True and status["reason"] == reason
    assert status["process"]["mocked"] is True and status["process"]["reason"] == reason
    assert status["process"]["cpu_seconds"] > 0  # os.times needs no /proc
    assert status["host"]["mocked"] is True and status["host"]["reason"] == reason
    assert set(status["host"]) == {"time", "cpuPercent", "cpuCount", "memory", "disk", "loadAverage", "mocked", "reason"}
