"""The host metrics sampler: a sample at start, one per interval, a bounded history."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest
import trio

from actors.myntrix import GetSystemMetrics, MetricsSampler, MyntrixSettings, SystemMetrics
from drivers import DiskUsage, MemoryUsage


class CountingProbe:
    """A probe whose CPU use counts up, so each sample is told apart."""

    def __init__(self) -> None:
        self.counter = itertools.count()

    def cpu_percent(self) -> float:
        return float(next(self.counter))

    def cpu_count(self) -> int | None:
        return 4

    def memory(self) -> MemoryUsage:
        return MemoryUsage(8 << 30, 6 << 30, 2 << 30, 25.0)

    def disk(self, path: Path) -> DiskUsage:
        return DiskUsage(str(path), 100 << 30, 40 << 30, 60 << 30, 40.0)

    def load_average(self) -> tuple[float, float, float] | None:
        return None  # an OS without one


async def test_samples_at_start_then_at_each_interval_keeping_the_last_few(
    nursery: trio.Nursery, tmp_path: Path
) -> None:
    settings = MyntrixSettings(metrics_interval=0.01, metrics_history=3)
    sampler = MetricsSampler(tmp_path, settings=settings, probe=CountingProbe(), environ={})
    with trio.fail_after(10):
        ref = await nursery.start(sampler.run)
        first: SystemMetrics = await ref.ask(GetSystemMetrics())
        assert first.current.cpu_percent is not None and first.current.cpu_percent <= 1.0
        assert first.history[-1] == first.current and not first.mocked and first.reason is None
        while (await ref.ask(GetSystemMetrics())).current.cpu_percent < 6:  # type: ignore[operator]
            await trio.sleep(0.01)
        metrics: SystemMetrics = await ref.ask(GetSystemMetrics())
    cpu = [s.cpu_percent for s in metrics.history]
    assert len(cpu) == 3 and cpu == sorted(cpu) and cpu[-1] == metrics.current.cpu_percent
    assert metrics.current.load_average is None and metrics.current.disk.path == str(tmp_path)
    assert metrics.model_dump(by_alias=True, mode="json")["current"]["cpuCount"] == 4
    sampler.stop()


async def test_a_mocked_host_is_sampled_too(nursery: trio.Nursery, tmp_path: Path) -> None:
    settings = MyntrixSettings(metrics_interval=0.01, metrics_history=5)
    sampler = MetricsSampler(
        tmp_path, settings=settings, probe=CountingProbe(), environ={"VAREON_MOCK_SYSTEM_METRICS": "true"}
    )
    with trio.fail_after(10):
        ref = await nursery.start(sampler.run)
        metrics: SystemMetrics = await ref.ask(GetSystemMetrics())
    assert metrics.mocked and metrics.current.mocked
    assert metrics.reason == "VAREON_MOCK_SYSTEM_METRICS=true asks for metrics without psutil"
    sampler.stop()


async def test_a_sample_that_raises_gives_the_fallback_with_the_reason(
    nursery: trio.Nursery, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import actors.myntrix.sampler as sampler_module

    def garbled(*args: object, **kwargs: object) -> object:
        raise UnicodeDecodeError("utf-8", b"\xff", 0, 1, "invalid start byte")

    monkeypatch.setattr(sampler_module, "read_system", garbled)
    settings = MyntrixSettings(metrics_interval=0.01, metrics_history=3)
    sampler = MetricsSampler(tmp_path, settings=settings, probe=CountingProbe(), environ={})
    with trio.fail_after(10):
        ref = await nursery.start(sampler.run)
        metrics: SystemMetrics = await ref.ask(GetSystemMetrics())
        while len((await ref.ask(GetSystemMetrics())).history) < 3:  # it keeps sampling
            await trio.sleep(0.01)
    assert metrics.mocked and metrics.reason is not None and "UnicodeDecodeError" in metrics.reason
    sampler.stop()
