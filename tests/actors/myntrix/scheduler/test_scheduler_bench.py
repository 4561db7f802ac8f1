"""``vareon bench scheduler``: installed, and its lateness counted from the right minute."""

from __future__ import annotations

from importlib.metadata import entry_points

from actors.myntrix.scheduler import bench


def test_the_benchmark_is_installed_as_scheduler() -> None:
    (point,) = [p for p in entry_points(group="vareon.benchmarks") if p.name == "scheduler"]
    assert point.load() is bench.main


def test_lateness_is_counted_from_the_minute_each_run_belongs_to() -> None:
    first, second = 1_800_000_000.0, 1_800_000_060.0
    result = bench._summary([first + 0.25, first + 1.5, second + 0.1], (first, second), 0.5, 20.0, fires=3)
    assert [round(ms, 3) for ms in result["lateness_ms"]] == [250.0, 1500.0, 100.0]
    assert (result["idle_cpu_s"], result["idle_window_s"], result["fires"]) == (0.5, 20.0, 3)


def test_the_plan_leaves_an_idle_window_before_the_first_fire_minute() -> None:
    start, first, second = bench._plan(25.0)
    assert first % 60 == 0 and second == first + 60
    assert first - start >= 25.0 + bench._SETUP_MARGIN
