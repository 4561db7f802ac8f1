"""``vareon bench edge``: what one runtime costs an edge box, beside the edge goals.

Each figure is measured on real ``vareon run`` processes started by the benchmark:

- start to the first ``200`` of ``/health``, from the moment the process is spawned: on a
  **first boot** (an empty data directory: the database is created and every migration runs) and
  on a **warm start** (the same data directory again: nothing to migrate); with the CPU seconds
  the process spent until then (on a busy machine the wall time waits for a CPU, the CPU time
  does not);
- the **idle RSS** (``/proc/<pid>/smaps_rollup``) once the runtime has served that first answer
  and sat idle for a few seconds, with the default config's components and no agents, devices
  or tasks;
- the **import time** of a warm start (``python -X importtime``, each module's own time summed
  by top-level package, the median of a few starts; ``-X importtime`` itself slows imports, so
  these add up to more than the start takes without it), and whether a package that should wait for its first use (Alembic,
  croniter, httpx, paho, pyserial...) was imported before the first answer.

Figures are medians of several runs. Python's bytecode is cached as in an installed runtime: when
``PYTHONDONTWRITEBYTECODE`` is set the runs keep theirs in a directory of their own
(``PYTHONPYCACHEPREFIX``), filled by one start that is not measured.
"""

from __future__ import annotations

import http.client
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from ..errors import VareonError
from .processes import free_port, run_vareon, stop_process
from .report import Report

__all__ = [
    "FIRST_200_GOAL_SECONDS",
    "IDLE_RSS_GOAL_MIB",
    "LAZY_PACKAGES",
    "Started",
    "import_times",
    "main",
    "start_runtime",
]

IDLE_RSS_GOAL_MIB = 80.0
"""Idle RSS of a runtime with the default components (issue 23)."""

FIRST_200_GOAL_SECONDS = 1.0
"""Warm start to the first 200 of ``/health`` (issue 23)."""

LAZY_PACKAGES = (
    "alembic",
    "mako",
    "pygments",
    "croniter",
    "httpx",
    "paho",
    "serial",
    "prometheus_client",
    "email_validator",
    "argon2",
    "jwt",
    "smtplib",
)
"""Packages a runtime with nothing to migrate, no task, device, outbound call, sign-in or mail
must not import before its first answer: each is imported where it is first used."""

START_TIMEOUT = 120.0
_IMPORT_LINE = re.compile(r"import time:\s+(\d+) \|\s+(\d+) \|( *)(\S+)")


@dataclass(frozen=True)
class Started:
    """One start of ``vareon run``, measured."""

    seconds: float
    """From spawning the process to the first 200 of ``/health``."""
    cpu_seconds: float
    """User and system CPU time of the process until then."""
    rss_mib: float | None
    """Resident memory after the idle wait (None when not asked for)."""


def main(*, output_dir: Path, quick: bool = False) -> int:
    """Run the edge benchmark, print it beside the goals, write ``edge.json``; returns 0."""
    first_runs, warm_runs, import_runs, idle = (1, 2, 1, 3.0) if quick else (3, 5, 3, 8.0)
    report = Report("edge")
    print(
        f"vareon bench edge ({first_runs} first boots, {warm_runs} warm starts, RSS after {idle:g} s idle;"
        f" load average {_load()} on {os.cpu_count()} CPUs)",
        flush=True,
    )
    with tempfile.TemporaryDirectory(prefix="vareon-bench-edge-") as name:
        tmp = Path(name)
        env = _environment(tmp)
        config = tmp / "config.toml"
        run_vareon("init", "--config", str(config), env={**env, "VAREON_RUNTIME_DATA_DIR": str(tmp / "warm")})
        start_runtime(config, tmp / "warm", env=env, log=tmp / "prime.log")  # bytecode, and the warm database
        first = [
            start_runtime(config, tmp / f"first-{n}", env=env, idle=idle, log=tmp / f"first-{n}.log")
            for n in range(first_runs)
        ]
        warm = [
            start_runtime(config, tmp / "warm", env=env, idle=idle, log=tmp / f"warm-{n}.log") for n in range(warm_runs)
        ]
        runs = [import_times(config, tmp / "warm", env=env, log=tmp / f"importtime-{n}.log") for n in range(import_runs)]
    imports = Counter({p: statistics.median(run.get(p, 0.0) for run in runs) for p in set().union(*runs)})

    warm_rss = statistics.median(s.rss_mib for s in warm if s.rss_mib is not None)
    warm_seconds = statistics.median(s.seconds for s in warm)
    report.figure("idle_rss_warm_mib", warm_rss, "MiB", "idle RSS after a warm start, median")
    report.figure(
        "idle_rss_first_boot_mib",
        statistics.median(s.rss_mib for s in first if s.rss_mib is not None),
        "MiB",
        "idle RSS after a first boot (migrations run), median",
    )
    report.figure("first_200_warm_s", warm_seconds, "s", "warm start to first 200 of /health, median")
    report.figure("first_200_warm_cpu_s", statistics.median(s.cpu_seconds for s in warm), "s", "  CPU time until then, median")
    report.figure(
        "first_200_first_boot_s",
        statistics.median(s.seconds for s in first),
        "s",
        "first boot (empty data directory) to first 200 of /health, median",
    )
    report.figure(
        "first_200_first_boot_cpu_s", statistics.median(s.cpu_seconds for s in first), "s", "  CPU time until then, median"
    )
    total = sum(imports.values())
    report.figure(
        "import_time_total_ms", total * 1000, "ms", f"import time of a warm start (-X importtime), median of {import_runs}"
    )
    for package, seconds in imports.most_common(12):
        print(f"    {package:24} {seconds * 1000:7.1f} ms", flush=True)
    report.figures["import_time_ms_by_package"] = {p: round(s * 1000, 2) for p, s in imports.most_common()}
    early = [p for p in LAZY_PACKAGES if p in imports]
    report.figures["lazy_packages_imported_early"] = early
    print(f"  imported before the first answer though lazy: {', '.join(early) or 'none'}", flush=True)
    report.goal("idle RSS, warm start", warm_rss, "<=", IDLE_RSS_GOAL_MIB, f"MiB, median of {warm_runs}")
    report.goal(
        "warm start to first 200", warm_seconds, "<=", FIRST_200_GOAL_SECONDS,
        f"seconds, median of {warm_runs}; load average now {_load()}",
    )
    report.write(output_dir)
    return 0


def start_runtime(
    config: Path,
    data_dir: Path,
    *,
    env: dict[str, str],
    idle: float = 0.0,
    log: Path,
    python: tuple[str, ...] = (),
) -> Started:
    """Start ``vareon run --config config`` on ``data_dir``, time its first 200 of ``/health``,
    wait ``idle`` seconds and read its RSS (when ``idle`` > 0), then stop it.

    Args:
        env: the process's environment (its port and data directory are set here).
        log: where its stderr goes.
        python: interpreter options (``-X importtime``).

    Raises:
        VareonError: it exited, or did not answer within two minutes.
    """
    port = free_port()
    child = {**env, "VAREON_SERVER_PORT": str(port), "VAREON_RUNTIME_DATA_DIR": str(data_dir)}
    command = [sys.executable, *python, "-m", "vareon_runtime.cli", "run", "--config", str(config)]
    with log.open("wb") as stderr:
        began = time.perf_counter()
        process = subprocess.Popen(command, env=child, stdout=subprocess.DEVNULL, stderr=stderr)
        try:
            _wait_for_health(port, process, log)
            seconds = time.perf_counter() - began
            cpu = _cpu_seconds(process.pid)
            rss = None
            if idle > 0:
                time.sleep(idle)
                rss = _rss_mib(process.pid)
        finally:
            stop_process(process)
    return Started(seconds=seconds, cpu_seconds=cpu, rss_mib=rss)


def import_times(config: Path, data_dir: Path, *, env: dict[str, str], log: Path) -> Counter[str]:
    """Each top-level package's import time (its modules' own times, seconds) in a start of
    ``vareon run`` under ``python -X importtime``, up to its first answer."""
    start_runtime(config, data_dir, env=env, log=log, python=("-X", "importtime"))
    totals: Counter[str] = Counter()
    for line in log.read_text(errors="replace").splitlines():
        match = _IMPORT_LINE.match(line)
        if match:
            totals[match.group(4).split(".")[0]] += int(match.group(1)) / 1e6
    return totals


def _environment(tmp: Path) -> dict[str, str]:
    env = {**os.environ, "VAREON_RUNTIME_LOG_LEVEL": "warning"}
    if sys.dont_write_bytecode or env.get("PYTHONDONTWRITEBYTECODE"):
        # An installed runtime has its bytecode; without it every start compiles the project.
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        env["PYTHONPYCACHEPREFIX"] = str(tmp / "pycache")
        print(f"  bytecode: kept in {tmp / 'pycache'} for these runs (PYTHONDONTWRITEBYTECODE is set here)", flush=True)
    return env


def _wait_for_health(port: int, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while True:
        if process.poll() is not None:
            tail = log.read_text(errors="replace")[-2000:]
            raise VareonError(f"vareon run exited with {process.returncode} before answering /health: {tail}")
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=2.0)
        try:
            connection.request("GET", "/health")
            if connection.getresponse().status == 200:
                return
        except OSError:
            pass
        finally:
            connection.close()
        if time.monotonic() > deadline:
            raise VareonError(f"vareon run did not answer /health within {START_TIMEOUT:g} s")
        time.sleep(0.01)


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime, stime


def _rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
        if line.startswith("Rss:"):
            return int(line.split()[1]) / 1024
    raise VareonError(f"no Rss line in /proc/{pid}/smaps_rollup")


def _load() -> str:
    try:
        return ", ".join(f"{value:.1f}" for value in os.getloadavg())
    except OSError:
        return "unknown"
