"""GET /api/myntrix/system-metrics: psutil's values, or the fallback's with the same shape."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest
import trio
from web_support import AGENTS, Account, Front, PASSWORD, start_front

from actors.myntrix.metrics import METRICS_NAME, HostMetrics, metrics_module
from drivers import DiskUsage, MemoryUsage
from vareon_runtime.auth import Role
from vareon_runtime.component import Component, RuntimeContext
from vareon_runtime.supervisor import ChildSpec

PATH = "/api/myntrix/system-metrics"


class DeniedProbe:
    """psutil as Android apps meet it: every statistic refuses access."""

    def _deny(self) -> Any:
        raise PermissionError(13, "Permission denied", "/proc/stat")

    def cpu_percent(self) -> float:
        return self._deny()  # type: ignore[no-any-return]

    def cpu_count(self) -> int | None:
        return self._deny()  # type: ignore[no-any-return]

    def memory(self) -> MemoryUsage:
        return self._deny()  # type: ignore[no-any-return]

    def disk(self, path: Path) -> DiskUsage:
        return self._deny()  # type: ignore[no-any-return]

    def load_average(self) -> tuple[float, float, float] | None:
        return self._deny()  # type: ignore[no-any-return]


def _denied_metrics(ctx: RuntimeContext) -> ChildSpec:
    metrics = HostMetrics(ctx.config.data_dir_path, probe=DeniedProbe())
    return ChildSpec(METRICS_NAME, lambda: metrics_module(metrics, ctx.registry))


DENIED = Component(name=METRICS_NAME, build=_denied_metrics, order=9)


@pytest.fixture
def front_components() -> tuple[Component, ...]:
    return AGENTS


def _shape(value: object) -> object:
    """Keys, nested, and which values are numbers (for comparing bodies)."""
    if isinstance(value, dict):
        return {k: "str | None" if k == "reason" else _shape(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_shape(v) for v in value[:1]]
    return type(value).__name__


async def _metrics(front: Front) -> dict[str, Any]:
    name = "metrics-viewer"
    await front.ctx.auth.create_user(name, f"{name}@example.com", PASSWORD, Role.VIEWER)
    token = (await front.ctx.auth.login(name, PASSWORD, None)).access_token
    async with httpx.AsyncClient(base_url=front.base_url) as client:
        response = await client.get(PATH, headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def test_psutil_values_with_history(
    client: httpx.AsyncClient, accounts: dict[Role, Account], front: Front
) -> None:
    assert (await client.get(PATH)).status_code == 401
    response = await client.get(PATH, headers=accounts[Role.VIEWER].headers)
    assert response.status_code == 200, response.text
    body = response.json()
    assert set(body) == {"current", "history", "mocked", "reason"}
    assert body["mocked"] is False and body["reason"] is None
    current = body["current"]
    assert set(current) == {"time", "cpuPercent", "cpuCount", "memory", "disk", "loadAverage", "mocked", "reason"}
    assert 0 <= current["cpuPercent"] <= 100 and current["cpuCount"] >= 1
    assert current["memory"]["total"] > 0 and 0 <= current["memory"]["percent"] <= 100
    assert current["disk"]["path"] == str(front.ctx.config.data_dir_path) and current["disk"]["free"] > 0
    assert len(current["loadAverage"]) == 3 and current["time"].endswith("Z")
    assert body["history"][-1] == current


async def test_permission_error_from_psutil_gives_the_same_shape_mocked(
    nursery: trio.Nursery, tmp_path: Path, front: Front
) -> None:
    normal = await _metrics(front)
    denied = await start_front(nursery, tmp_path / "denied", components=(DENIED,))
    try:
        body = await _metrics(denied)
    finally:
        await denied.stop()
    assert body["mocked"] is True and body["current"]["mocked"] is True
    assert "denied access" in body["reason"] and "/proc/stat" in body["reason"]
    assert _shape(body) == _shape(normal)
    assert body["current"]["memory"]["total"] == normal["current"]["memory"]["total"]


async def test_the_environment_variable_mocks_the_metrics(
    nursery: trio.Nursery, tmp_path: Path, front: Front, monkeypatch: pytest.MonkeyPatch
) -> None:
    normal = await _metrics(front)
    monkeypatch.setenv("VAREON_MOCK_SYSTEM_METRICS", "true")
    mocked = await start_front(nursery, tmp_path / "mocked", components=AGENTS)
    try:
        body = await _metrics(mocked)
    finally:
        await mocked.stop()
    assert body["mocked"] is True
    assert body["reason"] == "VAREON_MOCK_SYSTEM_METRICS=true asks for metrics without psutil"
    assert _shape(body) == _shape(normal)
