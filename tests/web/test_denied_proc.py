"""A real denied `/proc`, as on Android/Termux: every endpoint answers without a 5xx, and the
answers that depend on the host say `"mocked": true` with a reason.

The runtime runs as an unprivileged user (65534, `nobody`; root reads any file) in a private
mount namespace where `/proc` is a fresh mount with `hidepid=2` (other users' processes are not
there) and `/proc/stat` and `/proc/meminfo` are covered by an empty file nobody may read. Setting
that up needs root, `unshare` and `setpriv`; elsewhere the test is skipped with the reason.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio

from vareon_runtime.bench.processes import free_port

NOBODY = 65534
TIMEOUT = 90
PASSWORD = "a long enough admin passphrase"
DENIED = ("/proc/stat", "/proc/meminfo")


def _why_not() -> str | None:
    """Why this machine cannot deny /proc to the runtime, or None when it can."""
    if sys.platform != "linux":
        return "denying /proc needs Linux mount namespaces"
    if os.geteuid() != 0:
        return "bind-mounting over /proc needs root (the runtime itself then runs as nobody)"
    for tool in ("unshare", "setpriv"):
        if shutil.which(tool) is None:
            return f"{tool} (util-linux) is not installed"
    probe = subprocess.run(
        ["unshare", "-m", "--", "sh", "-c", "mount -t proc -o hidepid=2 proc /proc && mount --bind /dev/null /proc/stat"],
        capture_output=True, text=True, timeout=30, check=False,
    )
    if probe.returncode != 0:
        return f"this machine does not allow a private mount namespace with its own /proc: {probe.stderr.strip()}"
    nobody = subprocess.run(
        [*_as_nobody(), sys.executable, "-c", "import vareon_runtime, web, actors, drivers"],
        capture_output=True, text=True, timeout=60, check=False,
    )
    if nobody.returncode != 0:
        return f"user {NOBODY} cannot import the runtime from here: {nobody.stderr.strip()[-300:]}"
    return None


def _as_nobody() -> list[str]:
    return ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups", "--"]


@pytest.fixture
def work() -> Iterator[Path]:
    """A directory of the unprivileged user's (under /tmp: pytest's own is closed to others)."""
    reason = _why_not()
    if reason is not None:
        pytest.skip(reason)
    path = Path(tempfile.mkdtemp(prefix="vareon-denied-proc-"))
    try:
        os.chown(path, NOBODY, NOBODY)
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def _script(denied: Path, command: list[str]) -> str:
    mounts = " && ".join(f"mount --bind {denied} {target}" for target in DENIED)
    quoted = " ".join(f"'{part}'" for part in command)
    return f"mount -t proc -o hidepid=2 proc /proc && {mounts} && exec {quoted}"


async def test_every_endpoint_answers_on_a_denied_proc(work: Path) -> None:
    denied = work / "denied"
    denied.write_bytes(b"")
    os.chmod(denied, 0)  # root's, mode 000: nobody may read it
    port = free_port()
    env = {
        **os.environ,
        "VAREON_SERVER_PORT": str(port),
        "VAREON_RUNTIME_DATA_DIR": str(work / "data"),
        "VAREON_RUNTIME_LOG_LEVEL": "info",
        "VAREON_AUTH_BOOTSTRAP_ADMIN": "admin",
        "VAREON_ADMIN_PASSWORD": PASSWORD,
    }
    env.pop("VAREON_MOCK_SYSTEM_METRICS", None)  # the denial itself must make them mocked
    config = work / "config.toml"
    with trio.fail_after(TIMEOUT):
        await trio.run_process(
            [*_as_nobody(), sys.executable, "-m", "vareon_runtime.cli", "init", "--config", str(config)],
            env=env, capture_stdout=True, capture_stderr=True,
        )
    run = [*_as_nobody(), sys.executable, "-m", "vareon_runtime.cli", "run", "--config", str(config)]
    log = work / "runtime.log"
    with log.open("wb") as stderr:
        process = await trio.lowlevel.open_process(
            ["unshare", "-m", "--", "sh", "-c", _script(denied, run)], env=env, stderr=stderr
        )
        try:
            answers = await _walk(f"http://127.0.0.1:{port}", work, process)
        finally:
            process.send_signal(signal.SIGTERM)
            with trio.fail_after(TIMEOUT):
                await process.wait()
    text = log.read_text(errors="replace")
    assert "Traceback" not in text, text[-3000:]
    failed = {route: status for route, status in answers["statuses"].items() if status >= 500}
    assert failed == {}, text[-3000:]
    assert len(answers["statuses"]) > 30  # every operation of the OpenAPI document was called

    metrics = answers["metrics"]
    assert metrics["mocked"] is True and metrics["current"]["mocked"] is True
    assert "denied access" in metrics["reason"] and "/proc/stat" in metrics["reason"]
    assert metrics["current"]["memory"]["total"] is None  # /proc/meminfo is denied too
    assert metrics["current"]["cpuCount"] >= 1  # os.cpu_count needs no /proc

    status = answers["status"]
    assert status["mocked"] is True and status["reason"] == metrics["reason"]
    assert status["host"]["mocked"] is True
    # The runtime's own /proc/self stays readable under hidepid=2.
    assert status["process"]["mocked"] is False and status["process"]["rss"] > 0
    assert {m["name"]: m["status"] for m in status["modules"]}["metrics"] == "running"
    assert not [m for m in status["modules"] if m["status"] != "running"]
    # The agent started as nobody runs, and its health stands on liveness alone.
    assert answers["agent"]["status"] == "running" and answers["agent"]["health"] >= 1


async def _walk(base: str, work: Path, process: trio.Process) -> dict[str, Any]:
    """Sign in, start an agent, then call every operation of /openapi.json (reads first)."""
    async with httpx.AsyncClient(base_url=base, timeout=30) as client:
        with trio.fail_after(TIMEOUT):
            while True:
                assert process.returncode is None, "the runtime exited before answering"
                try:
                    if (await client.get("/health")).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                await trio.sleep(0.05)
        with trio.fail_after(TIMEOUT):
            signed = await client.post("/api/token", json={"username": "admin", "password": PASSWORD})
            assert signed.status_code == 200, signed.text
            client.headers["Authorization"] = f"Bearer {signed.json()['access_token']}"
            agent = await client.post(
                "/api/myntrix/agents",
                json={"name": "sleeper", "type": "script", "configuration": {"argv": ["/bin/sleep", "600"], "cwd": str(work)}},
            )
            assert agent.status_code in (200, 201), agent.text
            agent_id = agent.json()["id"]
            started = await client.post(f"/api/myntrix/agents/{agent_id}/start")
            assert started.status_code < 300, started.text
            document = (await client.get("/openapi.json")).json()
            statuses: dict[str, int] = {"GET /health": 200}
            operations = [
                (method.upper(), path, operation)
                for path, item in document["paths"].items()
                for method, operation in item.items()
            ]
            # Reads first, then changes; a sign-out or a deletion last of all.
            operations.sort(key=lambda o: (o[0] != "GET", "logout" in o[1] or o[0] == "DELETE", o[1]))
            for method, path, operation in operations:
                url = _filled(path, operation, agent_id)
                body = {"json": {}} if method in ("POST", "PUT", "PATCH") else {}
                response = await client.request(method, url, **body)
                statuses[f"{method} {path}"] = response.status_code
                if (method, path) == ("GET", "/api/system/status"):
                    status = response.json()
                elif (method, path) == ("GET", "/api/myntrix/system-metrics"):
                    metrics = response.json()
                elif method == "GET" and path.startswith("/api/myntrix/agents/{") and path.count("/") == 4:
                    shown = response.json()
            for path in ("/docs", "/openapi.json"):
                statuses[f"GET {path}"] = (await client.get(path)).status_code
    return {"statuses": statuses, "status": status, "metrics": metrics, "agent": shown}


_PARAMETER = re.compile(r"\{([^{}]+)\}")


def _filled(path: str, operation: dict[str, Any], agent_id: str) -> str:
    """``path`` with each parameter filled: the agent's id on agent routes, else a UUID or 1."""
    kinds = {
        p["name"]: p.get("schema", {}).get("type")
        for p in operation.get("parameters", [])
        if p.get("in") == "path"
    }

    def value(match: re.Match[str]) -> str:
        if kinds.get(match.group(1)) in ("integer", "number"):
            return "1"
        return agent_id if path.startswith("/api/myntrix/agents/") else str(uuid.uuid4())

    return _PARAMETER.sub(value, path)

