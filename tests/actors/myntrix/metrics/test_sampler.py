"""The host metrics module: a sample at start, one per interval, a bounded history, read from
its face without asking an actor."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest
import trio

from actors.kit.module import ServiceModule
from actors.myntrix.metrics import HostMetrics, SystemMetrics, metrics_module
from drivers import DiskUsage, MemoryUsage
from vareon_runtime.registry import Registry


async def start(nursery: trio.Nursery, metrics: HostMetrics) -> tuple[ServiceModule, HostMetrics]:
    """The module running; answers it and the face it provides."""
    registry = Registry()
    module = metrics_module(metrics, registry)
    await nursery.start(module.run)
    return module, registry.face(HostMetrics)


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
    with trio.fail_after(10):
        module, face = await start(nursery, HostMetrics(tmp_path, interval=0.01, history=3, probe=CountingProbe(), environ={}))
        first: SystemMetrics = face.metrics()
        assert first.current.cpu_percent is not None and first.current.cpu_percent <= 1.0
        assert first.history[-1] == first.current and not first.mocked and first.reason is None
        while face.metrics().current.cpu_percent < 6:  # type: ignore[operator]
            await trio.sleep(0.01)
        metrics = face.metrics()
    cpu = [s.cpu_percent for s in metrics.history]
    assert len(cpu) == 3 and cpu == sorted(cpu) and cpu[-1] == metrics.current.cpu_percent
    assert metrics.current.load_average is None and metrics.current.disk.path == str(tmp_path)
    assert metrics.model_dump(by_alias=True, mode="json")["current"]["cpuCount"] == 4
    module.stop()


async def test_a_mocked_host_is_sampled_too(nursery: trio.Nursery, tmp_path: Path) -> None:
    mocked = HostMetrics(tmp_path, interval=0.01, history=5, probe=CountingProbe(), environ={"VAREON_MOCK_SYSTEM_METRICS": "true"})
    with trio.fail_after(10):
        module, face = await start(nursery, mocked)
        metrics = face.metrics()
    assert metrics.mocked and metrics.current.mocked
    assert metrics.reason == "VAREON_MOCK_SYSTEM_METRICS=true asks for metrics without psutil"
    module.stop()


async def test_a_sample_that_raises_gives_the_fallback_with_the_reason(
    nursery: trio.Nursery, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import actors.myntrix.metrics.sampler as sampler_module

    def garbled(*args: object, **kwargs: object) -> object:
        raise UnicodeDecodeError("utf-8", b"\xff", 0, 1, "invalid start byte")

    monkeypatch.setattr(sampler_module, "read_system", garbled)
    with trio.fail_after(10):
        module, face = await start(nursery, HostMetrics(tmp_path, interval=0.01, history=3, probe=CountingProbe(), environ={}))
        metrics = face.metrics()
        while len(face.metrics().history) < 3:  # it keeps sampling
            await trio.sleep(0.01)
    assert metrics.mocked and metrics.reason is not None and "UnicodeDecodeError" in metrics.reason
    module.stop()


async def test_the_face_is_withdrawn_when_the_module_stops(nursery: trio.Nursery, tmp_path: Path) -> None:
    registry = Registry()
    module = metrics_module(HostMetrics(tmp_path, probe=CountingProbe(), environ={}), registry)
    with trio.fail_after(10):
        await nursery.start(module.run)
        assert registry.face(HostMetrics).metrics().history
        module.stop()
        while True:
            try:
                registry.face(HostMetrics)
            except LookupError:
                break
            await trio.sleep(0.01)
