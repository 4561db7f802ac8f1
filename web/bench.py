"""``vareon bench http``: the web front's requests/s beside the bare stack's floor, same run.

Three servers are measured one after the other with ``wrk`` (a real load generator, in its own
process) on loopback, each server in its own process:

1. the floor: a raw ASGI app answering a small JSON body, served by the same Hypercorn trio worker
   with the same settings (:func:`web.server.hypercorn_config`): what the stack can do at best;
2. the runtime (``vareon run`` on a fresh data directory): ``GET /health``;
3. the runtime: ``GET /api/users/me`` with a bearer token: the token check, the caller's account
   from the users view (decision 0018), JSON.

Ratios are printed against the floor; the goal is the authenticated read at >= 80% of it. The
machine's other work moves all three figures: compare ratios, and run it more than once.
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import httpx

from vareon_runtime.bench import Report
from vareon_runtime.bench.processes import (
    checked,
    free_port,
    served_runtime,
    stop_process,
    wait_ready,
)
from vareon_runtime.errors import VareonError

__all__ = ["main"]

CONNECTIONS = 32
GOAL = 0.8
"""The authenticated read's share of the floor's requests/s to reach."""
FLOOR_BODY = b'{"status":"ok","version":"0.0.0"}'


async def floor_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """A raw ASGI app: the least any HTTP answer on this stack can cost."""
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(FLOOR_BODY)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": FLOOR_BODY})


def _serve_floor(port: int) -> None:
    import trio
    from hypercorn.trio import serve

    from vareon_runtime.config import ServerConfig

    from .server import hypercorn_config

    # The runtime's own Hypercorn settings (no Server header, no access log, ...), so the two
    # figures differ by the app alone.
    config = hypercorn_config(ServerConfig(host="127.0.0.1", port=port))
    trio.run(serve, floor_app, config)  # type: ignore[arg-type]


def _wrk(wrk: str, url: str, seconds: int, headers: dict[str, str] | None = None) -> dict[str, float]:
    command = [wrk, "-t1", f"-c{CONNECTIONS}", f"-d{seconds}s", "--latency"]
    for name, value in (headers or {}).items():
        command += ["-H", f"{name}: {value}"]
    out = subprocess.run([*command, url], check=True, capture_output=True, text=True).stdout
    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if bad:
        raise VareonError(f"{url} answered {bad.group(1)} non-2xx responses under load; the figure would be meaningless:\n{out}")
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    result = {"rps": rps}
    for pct in ("50", "99"):
        found = re.search(rf"^\s+{pct}%\s+([\d.]+)(us|ms|s)\s*$", out, re.MULTILINE)
        if found:
            scale = {"us": 1e-3, "ms": 1.0, "s": 1e3}[found.group(2)]
            result[f"p{pct}_ms"] = float(found.group(1)) * scale
    return result


def main(*, output_dir: Path, quick: bool = False) -> int:
    """Run the HTTP benchmark, print it, write ``http.json``; returns 0."""
    wrk = shutil.which("wrk")
    if wrk is None:
        raise VareonError("vareon bench http needs the wrk load generator on PATH: apt-get install wrk")
    seconds = 3 if quick else 10
    report = Report("http")
    print(f"vareon bench http ({seconds}s per figure, wrk -t1 -c{CONNECTIONS}, loopback)", flush=True)

    port = free_port()
    floor = subprocess.Popen([sys.executable, "-m", "web.bench", "floor", str(port)])
    try:
        base = f"http://127.0.0.1:{port}"
        wait_ready(base + "/", floor)
        _wrk(wrk, base + "/", 1)  # warm up
        raw = _wrk(wrk, base + "/", seconds)
    finally:
        stop_process(floor)
    report.figure("floor_rps", raw["rps"], "req/s", "raw ASGI app, same Hypercorn trio worker (floor)")

    with tempfile.TemporaryDirectory(prefix="vareon-bench-http-") as tmp:
        with served_runtime(Path(tmp), role="viewer") as runtime:
            auth = {"Authorization": f"Bearer {runtime.token}"}
            checked(httpx.get(runtime.base + "/api/users/me", headers=auth))
            _wrk(wrk, runtime.base + "/health", 1)
            health = _wrk(wrk, runtime.base + "/health", seconds)
            me = _wrk(wrk, runtime.base + "/api/users/me", seconds, auth)

    report.figure("health_rps", health["rps"], "req/s", "runtime GET /health")
    report.figure("me_rps", me["rps"], "req/s", "runtime GET /api/users/me (bearer token + users view)")
    for name, figures in (("floor", raw), ("health", health), ("me", me)):
        if "p99_ms" in figures:
            report.figure(f"{name}_p99_ms", figures["p99_ms"], "ms", f"{name} p99 latency")
    report.figure("health_vs_floor", health["rps"] / raw["rps"], "ratio", "/health vs floor")
    report.goal(
        "authenticated read vs raw ASGI floor", me["rps"] / raw["rps"], ">=", GOAL,
        f"{me['rps']:,.0f} vs {raw['rps']:,.0f} req/s",
    )
    report.write(output_dir)
    return 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="serve the benchmark's raw ASGI floor app")
    parser.add_argument("what", choices=["floor"])
    parser.add_argument("port", type=int)
    _serve_floor(parser.parse_args().port)
