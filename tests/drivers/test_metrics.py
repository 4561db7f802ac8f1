"""Host metrics: psutil through the probe, and the fallback (Termux) with the same shape."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import pytest

from drivers import DiskUsage, HostSample, MemoryUsage, PsutilProbe, SystemProbe, read_system
from drivers.metrics import MOCK_ENV, fallback_process, mock_requested, read_process


class DeniedProbe:
    """psutil as Android apps meet it: /proc/stat and friends refuse access."""

    def __init__(self, error: Exception | None = None) -> None:
        self.error = error or PermissionError(13, "Permission denied", "/proc/stat")

    def cpu_percent(self) -> float:
        raise self.error

    def cpu_count(self) -> int | None:
        raise self.error

    def memory(self) -> MemoryUsage:
        raise self.error

    def disk(self, path: Path) -> DiskUsage:
        raise self.error

    def load_average(self) -> tuple[float, float, float] | None:
        raise self.error


def _shape(sample: HostSample) -> dict[str, object]:
    """Field names, nested, with the type of each value (``reason`` is the one that differs)."""
    return {
        name: _shape(value) if dataclasses.is_dataclass(value) else "str | None" if name == "reason" else type(value).__name__
        for name, value in vars(sample).items()
    }


def test_psutil_gives_real_values(tmp_path: Path) -> None:
    probe: SystemProbe = PsutilProbe()
    sample = read_system(probe, tmp_path, environ={})
    assert not sample.mocked and sample.reason is None
    assert sample.cpu_percent is not None and 0.0 <= sample.cpu_percent <= 100.0
    assert sample.cpu_count == os.cpu_count()
    assert sample.memory.total and sample.memory.available and 0 < sample.memory.total
    assert sample.disk.path == str(tmp_path) and sample.disk.total and sample.disk.free is not None
    assert sample.load_average is not None and len(sample.load_average) == 3
    again = read_system(probe, tmp_path, environ={})  # since the previous call, no 0.1 s wait
    assert again.cpu_percent is not None and again.time >= sample.time


def test_permission_error_at_the_psutil_boundary_falls_back_with_the_same_shape(tmp_path: Path) -> None:
    real = read_system(PsutilProbe(), tmp_path, environ={})
    sample = read_system(DeniedProbe(), tmp_path, environ={})
    assert sample.mocked
    assert sample.reason is not None and "denied access" in sample.reason and "/proc/stat" in sample.reason
    assert _shape(sample) == _shape(real)
    # Filled from other sources on this Linux host.
    assert sample.cpu_count == os.cpu_count()
    assert sample.load_average == pytest.approx(os.getloadavg(), abs=1.0)
    assert sample.memory.total == real.memory.total
    assert sample.disk.total == real.disk.total
    assert sample.cpu_percent is not None and 0.0 <= sample.cpu_percent <= 100.0


def test_any_probe_failure_falls_back(tmp_path: Path) -> None:
    sample = read_system(DeniedProbe(RuntimeError("psutil is broken")), tmp_path, environ={})
    assert sample.mocked and sample.reason is not None
    assert "RuntimeError: psutil is broken" in sample.reason


def test_the_environment_asks_for_the_fallback(tmp_path: Path) -> None:
    for value in ("true", "TRUE", "1", "yes"):
        assert mock_requested({MOCK_ENV: value})
    assert not mock_requested({MOCK_ENV: "false"}) and not mock_requested({})
    sample = read_system(PsutilProbe(), tmp_path, environ={MOCK_ENV: "true"})
    assert sample.mocked and sample.reason == f"{MOCK_ENV}=true asks for metrics without psutil"
    assert _shape(sample) == _shape(read_system(PsutilProbe(), tmp_path, environ={}))


def test_a_missing_directory_leaves_disk_values_empty(tmp_path: Path) -> None:
    sample = read_system(DeniedProbe(), tmp_path / "gone", environ={})
    assert sample.disk == DiskUsage(str(tmp_path / "gone"), None, None, None, None)
    assert sample.mocked and sample.memory.total is not None


def test_a_garbled_meminfo_gives_no_memory_figures_rather_than_an_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import drivers.metrics as metrics

    garbled = tmp_path / "meminfo"
    garbled.write_bytes(b"MemTotal: \xff\xfe 100 kB\n")
    monkeypatch.setattr(metrics, "_MEMINFO", garbled)
    sample = metrics.fallback_sample(tmp_path, "testing")
    assert sample.mocked and sample.reason == "testing"
    assert sample.memory == MemoryUsage(None, None, None, None)


def test_the_runtime_process_is_read_through_psutil() -> None:
    sample = read_process(environ={})
    assert sample.pid == os.getpid() and sample.mocked is False and sample.reason is None
    assert sample.rss is not None and sample.rss > 0 and sample.threads is not None and sample.threads >= 1
    assert sample.peak_rss is not None and sample.peak_rss > 0 and sample.cpu_seconds > 0


def test_the_runtime_process_mocked_still_says_what_other_sources_tell() -> None:
    sample = read_process(environ={MOCK_ENV: "yes"})
    assert sample.mocked is True and sample.reason == f"{MOCK_ENV}=yes asks for metrics without psutil"
    # /proc/self/status (where readable), getrusage and os.times: no psutil.
    assert sample.rss is not None and sample.rss > 0 and sample.cpu_seconds > 0
    assert fallback_process("because").reason == "because"
