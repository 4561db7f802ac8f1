"""``vareon bench scheduler``: fire-time lateness and idle CPU with 10,000 tasks, beside APScheduler 3.

The same 10,000 cron jobs run twice in one benchmark run, each scheduler in its own process so
their CPU is separable (one after the other, so they do not compete for the cores):

- **vareon**: the scheduler module (scheduler actor, ``task-runs`` supervisor) on a fresh SQLite
  store, the tasks created through the :class:`~actors.myntrix.scheduler.service.Tasks` face's
  bulk create (``create_many``, what ``POST /api/myntrix/tasks/bulk`` calls: one transaction and
  one message to the scheduler per 10,000 tasks). Their
  action is a bench-only kind, ``bench``, in a private
  :class:`~actors.myntrix.scheduler.actions.ActionRegistry` handed to the module (the plug-in
  point; the runtime's ``ACTIONS`` is untouched). It notes the wall time and returns. The full
  run path is measured: each run is a supervised child (a worker of the ``task-runs`` dynamic
  supervisor) that starts its action at once while its ``task_runs`` row and its ``jobs`` entry
  are written in the background (committed in batches with the other runs'), and notes its
  final status once the action has ended. The process is tuned as the runtime tunes its own
  once booted (:func:`~vareon_runtime.runtime.settle_collector`), before the tasks are created.
- **apscheduler**: a ``BackgroundScheduler`` (memory job store, its default thread pool of 10)
  with the same jobs (``CronTrigger``), ``misfire_grace_time=None`` so that no late run is
  dropped; the job notes the wall time. It persists nothing.

Every job fires on two chosen minutes (``a,b * * * *``), so that before the first one there is a
quiet window with all 10,000 jobs scheduled and nothing due: the process's CPU seconds (user +
system, all threads) over that window are the idle cost. Lateness is from the scheduled minute
to the moment the action (the job function) starts. Printed: p50, p99 and max of each, the idle
CPU of each, the time each took to create the tasks, each one's RSS once every run has ended (for
vareon after it released what the burst freed, decision 0029), and the ratios; written to
``scheduler.json``.
"""

from __future__ import annotations

import array
import json
import math
import os
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from vareon_runtime.bench import Report, percentile
from vareon_runtime.errors import VareonError

__all__ = ["main"]

_SETUP_MARGIN = 5.0  # seconds between the end of the idle window and the first fire minute


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _plan(idle: float) -> tuple[float, float, float]:
    """(idle window start, first fire minute, second fire minute) as Unix times, from now."""
    start = time.time()
    first = math.ceil((start + idle + _SETUP_MARGIN) / 60.0) * 60.0
    return start, first, first + 60.0


def _summary(times: Sequence[float], minutes: tuple[float, float], cpu: float, window: float, **extra: Any) -> dict[str, Any]:
    late = [(t - (minutes[0] if t < minutes[1] else minutes[1])) * 1000.0 for t in times]
    return {"lateness_ms": late, "idle_cpu_s": cpu, "idle_window_s": window, **extra}


# --------------------------------------------------------------------------- vareon side


def _vareon(count: int, idle: float, data: Path) -> dict[str, Any]:
    import trio
    from pydantic import BaseModel

    from vareon_runtime.bus import EventBus
    from vareon_runtime.registry import Registry
    from vareon_runtime.runtime import settle_collector
    from vareon_runtime.store import Store
    from vareon_runtime.supervisor import ChildSpec, Supervisor

    from .actions import ActionContext, ActionOutcome, ActionParameters, ActionRegistry
    from .component import SchedulerModule
    from .schemas import BULK_MAX
    from .service import Tasks
    from .settings import SchedulerSettings

    fired = array.array("d")  # the times, unboxed: no float object per run

    class BenchParameters(ActionParameters):
        pass

    class BenchAction:
        kind = "bench"
        parameters: type[BaseModel] = BenchParameters
        admin_only = False

        def check(self, params: BaseModel) -> None:
            return None

        async def run(self, params: BaseModel, ctx: ActionContext) -> ActionOutcome:
            fired.append(time.time())
            return ActionOutcome(ok=True)

    actions = ActionRegistry()
    actions.register("bench", BenchAction())

    async def bench() -> dict[str, Any]:
        async with trio.open_nursery() as nursery:
            store: Store = await nursery.start(Store(f"sqlite:///{data / 'vareon.db'}").run)
            registry, bus = Registry(), EventBus(default_queue_size=16)
            settings = SchedulerSettings(runs_keep=10)

            def factory() -> SchedulerModule:
                return SchedulerModule(store, bus, registry, settings=settings, actions=actions)

            root = Supervisor("root", [ChildSpec("scheduler", factory, shutdown=120.0)], registry=registry, bus=bus)
            await nursery.start(root.run)
            settle_collector()  # as Runtime.run does once its root supervisor has started
            tasks = registry.face(Tasks)
            _, first, second = _plan(idle)
            minute_a, minute_b = int(first // 60 % 60), int(second // 60 % 60)
            schedule = f"{minute_a},{minute_b} * * * *"
            began = time.perf_counter()
            for start in range(0, count, BULK_MAX):  # one bulk create per BULK_MAX tasks
                await tasks.create_many(
                    {
                        "tasks": [
                            {"name": f"bench-{i}", "schedule": schedule, "action": "bench", "overlap": "allow"}
                            for i in range(start, min(start + BULK_MAX, count))
                        ]
                    }
                )
            setup = time.perf_counter() - began
            scheduled = len(await tasks.next_fire_times())
            window_start = time.time()
            window_end = first - 2.0
            if window_end - window_start < 3.0:
                raise VareonError(f"creating {count} tasks took {setup:.0f}s; no idle window left before the first fire")
            cpu_before = _cpu()
            await trio.sleep(window_end - window_start)
            cpu = _cpu() - cpu_before
            window = time.time() - window_start
            deadline = time.monotonic() + 300
            while len(fired) < 2 * count or tasks.runs.live():
                if time.monotonic() > deadline:
                    break
                await trio.sleep(0.2)
            rss = _rss()
            await root.stop()
            await store.close()
            nursery.cancel_scope.cancel()
        return _summary(fired, (first, second), cpu, window, setup_s=setup, scheduled=scheduled, fires=len(fired), rss_mib=rss)

    return trio.run(bench)


# --------------------------------------------------------------------------- APScheduler side


def _apscheduler(count: int, idle: float) -> dict[str, Any]:
    try:
        from apscheduler.schedulers.background import BackgroundScheduler
        from apscheduler.triggers.cron import CronTrigger
    except ImportError as exc:
        raise VareonError('vareon bench scheduler compares against APScheduler 3: pip install "apscheduler<4"') from exc
    from datetime import timezone

    fired = array.array("d")  # the times, unboxed: no float object per run

    def job() -> None:
        fired.append(time.time())

    scheduler = BackgroundScheduler(timezone=timezone.utc, job_defaults={"misfire_grace_time": None, "coalesce": True})
    scheduler.start()
    _, first, second = _plan(idle)
    minute_a, minute_b = int(first // 60 % 60), int(second // 60 % 60)
    began = time.perf_counter()
    trigger = CronTrigger(minute=f"{minute_a},{minute_b}", timezone=timezone.utc)
    for i in range(count):
        scheduler.add_job(job, trigger, id=f"bench-{i}")
    setup = time.perf_counter() - began
    window_start = time.time()
    window_end = first - 2.0
    cpu_before = _cpu()
    time.sleep(max(window_end - window_start, 0.0))
    cpu = _cpu() - cpu_before
    window = time.time() - window_start
    deadline = time.monotonic() + 300
    while len(fired) < 2 * count and time.monotonic() < deadline:
        time.sleep(0.2)
    rss = _rss()
    scheduler.shutdown(wait=True)
    return _summary(fired, (first, second), cpu, window, setup_s=setup, scheduled=len(scheduler.get_jobs()), fires=len(fired), rss_mib=rss)


def _rss() -> float:
    import psutil

    return float(psutil.Process().memory_info().rss) / (1024 * 1024)


def child_main(argv: list[str]) -> None:
    """Entry of a side's process: ``SIDE COUNT IDLE OUT_JSON DATA_DIR``."""
    side, count, idle, out, data = argv[0], int(argv[1]), float(argv[2]), Path(argv[3]), Path(argv[4])
    result = _vareon(count, idle, data) if side == "vareon" else _apscheduler(count, idle)
    out.write_text(json.dumps(result))


def _side(side: str, count: int, idle: float, tmp: Path) -> dict[str, Any]:
    out = tmp / f"{side}.json"
    data = tmp / side
    data.mkdir()
    code = "import sys; from actors.myntrix.scheduler.bench import child_main; child_main(sys.argv[1:])"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    done = subprocess.run(
        [sys.executable, "-c", code, side, str(count), str(idle), str(out), str(data)],
        env=env, capture_output=True, text=True, check=False, timeout=900,
    )
    if done.returncode != 0:
        raise VareonError(f"the {side} side failed ({done.returncode}): {done.stderr.strip()[-2000:]}")
    result: dict[str, Any] = json.loads(out.read_text())
    return result


def main(*, output_dir: Path, quick: bool = False) -> int:
    """Run the scheduler benchmark, print it, write ``scheduler.json``; returns 0."""
    count = 1000 if quick else 10_000
    idle = 10.0 if quick else 25.0
    report = Report("scheduler")
    print(f"vareon bench scheduler ({count} cron tasks firing on two minutes; idle window {idle:g}s; one process each)", flush=True)
    with tempfile.TemporaryDirectory(prefix="vareon-bench-scheduler-") as name:
        tmp = Path(name)
        sides = {side: _side(side, count, idle, tmp) for side in ("apscheduler", "vareon")}
    for side, result in sides.items():
        late = result["lateness_ms"]
        if not late:
            raise VareonError(f"{side}: no job fired")
        report.figure(f"{side}_fires", result["fires"], "runs", f"{side}: runs started (expected {2 * count})")
        report.figure(f"{side}_lateness_p50_ms", percentile(late, 0.5), "ms", f"{side}: lateness p50")
        report.figure(f"{side}_lateness_p99_ms", percentile(late, 0.99), "ms", f"{side}: lateness p99")
        report.figure(f"{side}_lateness_max_ms", max(late), "ms", f"{side}: lateness max")
        percent = 100.0 * result["idle_cpu_s"] / result["idle_window_s"]
        report.figure(f"{side}_idle_cpu_percent", percent, "%", f"{side}: CPU over {result['idle_window_s']:.0f}s with nothing due")
        report.figure(f"{side}_setup_s", result["setup_s"], "s", f"{side}: creating {count} tasks")
        report.figure(f"{side}_rss_mib", result["rss_mib"], "MiB", f"{side}: RSS after the runs")
    ours, theirs = sides["vareon"], sides["apscheduler"]
    ours_p99 = percentile(ours["lateness_ms"], 0.99)
    theirs_p99 = percentile(theirs["lateness_ms"], 0.99)
    report.goal(
        "p99 lateness, APScheduler vs vareon", theirs_p99 / max(ours_p99, 1e-6), ">=", 1.0,
        f"{ours_p99:.0f} ms vs APScheduler {theirs_p99:.0f} ms (vareon also records each run: row and job written while the action runs)",
    )
    ours_idle = 100.0 * ours["idle_cpu_s"] / ours["idle_window_s"]
    report.goal("vareon idle CPU, percent of one core", ours_idle, "<=", 1.0, f"{ours['idle_cpu_s']:.3f} CPU s over {ours['idle_window_s']:.0f}s")
    report.write(output_dir)
    return 0
