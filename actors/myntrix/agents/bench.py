"""``vareon bench agents``: crash-to-running latency beside supervisord, and RSS with 50 agents.

One program, a tiny TCP server that answers each connection with its pid, is kept alive twice in
the same run: as an agent of a runtime (``vareon run`` on a fresh data directory, driven over
HTTP) and as a supervisord program (``autorestart=true``). For each kill the benchmark reads the
serving pid over TCP, sends it SIGKILL and connects in a tight loop until a *different* pid
answers: kill -9 to new pid serving, the same measurement for both. Both supervisors restart at
once (the agent with ``backoffInitial=0`` and no restart limit, supervisord with ``startsecs=0``),
so the figure is the supervisor's own reaction plus the program's start.

Then the runtime's RSS with 50 idle agents running (a sleeping Python script each), beside its
RSS with none.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import psutil

from vareon_runtime.bench import Report, percentile
from vareon_runtime.bench.processes import (
    checked,
    free_port,
    served_runtime,
    stop_process,
)
from vareon_runtime.errors import VareonError

__all__ = ["main"]

IDLE_AGENTS = 50
SERVER = """\
import os, socket, sys
sock = socket.socket()
sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
sock.bind(("127.0.0.1", int(sys.argv[1])))
sock.listen(64)
pid = str(os.getpid()).encode()
while True:
    conn, _ = sock.accept()
    conn.sendall(pid)
    conn.close()
"""
IDLE = "import time\nwhile True:\n    time.sleep(3600)\n"


def _serving_pid(port: int) -> int | None:
    """The pid the server on ``port`` answers, or None while nothing serves."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1.0) as conn:
            data = conn.recv(32)
    except OSError:
        return None
    return int(data) if data.strip().isdigit() else None


def _wait_serving(port: int, timeout: float, *, not_pid: int | None = None) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        pid = _serving_pid(port)
        if pid is not None and pid != not_pid:
            return pid
        time.sleep(0.0002)
    raise VareonError(f"nothing new served on port {port} within {timeout:g}s")


def _crash_latencies(port: int, kills: int) -> list[float]:
    """Seconds from SIGKILL of the serving pid to a new pid serving, ``kills`` times."""
    latencies = []
    pid = _wait_serving(port, 30.0)
    for _ in range(kills):
        os.kill(pid, signal.SIGKILL)
        start = time.perf_counter()
        new = _wait_serving(port, 30.0, not_pid=pid)
        latencies.append(time.perf_counter() - start)
        pid = new
        time.sleep(0.05)  # let the supervisor settle (reap, persist) before the next kill
    return latencies


def _runtime(tmp: Path, kills: int, script: Path, idle: Path) -> dict[str, Any]:
    environ = {key: value for key, value in os.environ.items() if key != "VAREON_MOCK_SYSTEM_METRICS"}
    with served_runtime(tmp, role="admin", environ=environ) as runtime, runtime.client() as http:
        server_port = free_port()
        agent = _created(http, "crash-target", [sys.executable, str(script), str(server_port)])
        checked(http.post(f"/api/myntrix/agents/{agent}/start"))
        latencies = _crash_latencies(server_port, kills)
        checked(http.post(f"/api/myntrix/agents/{agent}/stop"))

        rss_before = psutil.Process(runtime.process.pid).memory_info().rss
        for i in range(IDLE_AGENTS):
            idle_id = _created(http, f"idle-{i}", [sys.executable, str(idle)])
            checked(http.post(f"/api/myntrix/agents/{idle_id}/start"))
        time.sleep(2.0)  # output readers, health samplers and flushes settle
        running = http.get("/api/myntrix/agents", params={"status": "running"}).headers["X-Total-Count"]
        if int(running) != IDLE_AGENTS:
            raise VareonError(f"{running} of {IDLE_AGENTS} idle agents are running; the RSS would be meaningless")
        rss_after = psutil.Process(runtime.process.pid).memory_info().rss
    return {"latencies": latencies, "rss_before": rss_before, "rss_after": rss_after}


def _created(http: httpx.Client, name: str, command: list[str]) -> str:
    configuration = {"argv": command, "backoffInitial": 0, "backoffMax": 0, "maxRestarts": 10_000, "stopTimeout": 2}
    response = checked(http.post("/api/myntrix/agents", json={"name": name, "configuration": configuration}))
    return str(response.json()["id"])


def _supervisord(tmp: Path, kills: int, script: Path) -> list[float]:
    supervisord = shutil.which("supervisord") or str(Path(sys.executable).with_name("supervisord"))
    if not Path(supervisord).exists():
        raise VareonError("vareon bench agents compares against supervisord: pip install supervisor")
    port = free_port()
    conf = tmp / "supervisord.conf"
    conf.write_text(
        "[supervisord]\n"
        f"logfile={tmp / 'supervisord.log'}\npidfile={tmp / 'supervisord.pid'}\nnodaemon=true\n"
        "[program:target]\n"
        f"command={sys.executable} {script} {port}\n"
        "autorestart=true\nstartsecs=0\nstartretries=10000\nstopasgroup=true\nkillasgroup=true\n"
        f"stdout_logfile={tmp / 'target.log'}\nredirect_stderr=true\n"
    )
    proc = subprocess.Popen([supervisord, "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        return _crash_latencies(port, kills)
    finally:
        stop_process(proc)


def main(*, output_dir: Path, quick: bool = False) -> int:
    """Run the agents benchmark, print it, write ``agents.json``; returns 0."""
    kills = 20 if quick else 100
    report = Report("agents")
    print(f"vareon bench agents ({kills} kill -9 per supervisor, then {IDLE_AGENTS} idle agents)", flush=True)
    with tempfile.TemporaryDirectory(prefix="vareon-bench-agents-") as name:
        tmp = Path(name)
        script, idle = tmp / "server.py", tmp / "idle.py"
        script.write_text(SERVER)
        idle.write_text(IDLE)
        theirs = _supervisord(tmp, kills, script)
        ours = _runtime(tmp, kills, script, idle)

    ours_ms = [s * 1000 for s in ours["latencies"]]
    theirs_ms = [s * 1000 for s in theirs]
    for who, values in (("vareon", ours_ms), ("supervisord", theirs_ms)):
        report.figure(f"{who}_crash_median_ms", percentile(values, 0.5), "ms", f"{who}: kill -9 to new pid serving, median")
        report.figure(f"{who}_crash_p95_ms", percentile(values, 0.95), "ms", f"{who}: kill -9 to new pid serving, p95")
    mib = 1024 * 1024
    report.figure("rss_no_agents_mib", ours["rss_before"] / mib, "MiB", "runtime RSS, no agent running")
    report.figure(f"rss_{IDLE_AGENTS}_agents_mib", ours["rss_after"] / mib, "MiB", f"runtime RSS, {IDLE_AGENTS} idle agents running")
    report.figure(
        "rss_per_agent_kib", (ours["rss_after"] - ours["rss_before"]) / IDLE_AGENTS / 1024, "KiB", "runtime RSS per idle agent"
    )
    ours_median, theirs_median = percentile(ours_ms, 0.5), percentile(theirs_ms, 0.5)
    report.goal(
        "crash-to-running median, supervisord vs vareon", theirs_median / ours_median, ">=", 10.0,
        f"{ours_median:.1f} ms vs supervisord {theirs_median:.1f} ms",
    )
    report.write(output_dir)
    return 0
