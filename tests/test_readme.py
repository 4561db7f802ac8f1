"""The README's walk-through, run for real as a new user would run it.

The runtime is started with the README's own command (``.venv/bin/vareon run --config
config.toml``) in a temporary copy of the bundled ``config.toml`` and data directory, on a free
port. Every ```sh block the README marks ``<!-- walk-through -->`` is then run, command by
command and in order, in one bash session (so its ``export``\\ s hold) whose ``curl`` is the real
one with the status printed after the body. Only three things are substituted: the free port for
8000, a temporary directory for ``/tmp/sim``, and ``<id>`` for the id the block's last
``POST`` to a collection answered (what a user copies by hand). Any command that fails, and any
answer of 400 or more, fails the test with the command and its output.

Meanwhile the test listens to every topic (``*``, with the walk-through's own operator token) and
checks that each topic it saw is listed in docs/websocket.md and in ``/asyncapi.json``. With
``VAREON_README_EVENTS=<file>`` it also writes them there, one JSON object a line: the examples
of docs/websocket.md come from that file.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio
from trio_websocket import open_websocket_url

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
WEBSOCKET_DOC = ROOT / "docs" / "websocket.md"
RUN = ".venv/bin/vareon run --config config.toml"
BLOCK = re.compile(r"<!-- walk-through[^>]*-->\n```sh\n(.*?)```", re.DOTALL)
ID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
START_TIMEOUT = 60
COMMAND_TIMEOUT = 90  # a `vareon` command imports the runtime: seconds on a busy box
STOP_TIMEOUT = 30

CURL = shutil.which("curl")
BASH = shutil.which("bash")
VENV = Path(sys.prefix)

pytestmark = [
    pytest.mark.skipif(CURL is None, reason="curl is not installed (apt-get install curl): the README's examples use it"),
    pytest.mark.skipif(BASH is None, reason="bash is not installed: the README's examples are shell commands"),
    pytest.mark.skipif(
        not (VENV / "bin" / "vareon").exists(),
        reason=f"the tests do not run from a venv with `vareon` installed ({VENV}): the README's paths are .venv/bin/...",
    ),
]


def walkthrough() -> list[list[str]]:
    """The commands of each walk-through block, a command being complete lines (a quote left
    open, or a line ending in a backslash, goes on with the next line)."""
    blocks = BLOCK.findall(README.read_text())
    assert blocks, "the README marks no walk-through block (<!-- walk-through --> before ```sh)"
    return [_commands(block) for block in blocks]


def _commands(block: str) -> list[str]:
    found: list[str] = []
    pending = ""
    for line in block.splitlines():
        pending += line + "\n"
        if line.endswith("\\"):
            continue
        try:
            shlex.split(pending, comments=True)
        except ValueError:  # a quote still open: the command goes on
            continue
        if pending.strip():
            found.append(pending.rstrip("\n"))
        pending = ""
    assert not pending.strip(), f"a walk-through command never ends: {pending!r}"
    return found


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _clean_environ(path: str) -> dict[str, str]:
    """The test's environment as a new user's shell: no VAREON_* override, no token."""
    environ = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith("VAREON_") and key not in ("TOKEN", "ADMIN_TOKEN", "ADMIN_PASSWORD", "OPERATOR_PASSWORD")
    }
    environ["PATH"] = path
    return environ


class Shell:
    """One bash session fed a command at a time; each command's output and exit status."""

    def __init__(self, process: trio.Process) -> None:
        self.process = process
        self.marker = f"__done_{uuid.uuid4().hex}__"
        self.buffer = b""

    async def run(self, command: str) -> tuple[int, str]:
        assert self.process.stdin is not None and self.process.stdout is not None
        script = f"{command}\nprintf '\\n{self.marker} %s\\n' \"$?\"\n"
        await self.process.stdin.send_all(script.encode())
        end = re.compile(rf"\n{self.marker} (\d+)\n".encode())
        while (found := end.search(self.buffer)) is None:
            chunk = await self.process.stdout.receive_some(65536)
            assert chunk, f"bash ended while running {command!r}: {self.buffer.decode(errors='replace')}"
            self.buffer += chunk
        output, self.buffer = self.buffer[: found.start()], self.buffer[found.end() :]
        return int(found.group(1)), output.decode(errors="replace")


def _statuses(output: str) -> list[int]:
    return [int(code) for code in re.findall(r"^__HTTP__ (\d{3})$", output, re.MULTILINE)]


def _created_id(command: str, output: str) -> str | None:
    """The id a POST to a collection answered (the next commands' ``<id>``)."""
    if "-X POST" not in command or "<id>" in command or "/api/myntrix/" not in command:
        return None
    for line in output.splitlines():
        try:
            body = json.loads(line.split("__HTTP__")[0])
        except ValueError:
            continue
        if isinstance(body, dict) and isinstance(body.get("id"), str):
            return body["id"]
    return None


async def _listen(url: str, token: str, seen: list[dict[str, Any]], *, task_status: trio.TaskStatus[None]) -> None:
    async with open_websocket_url(url) as ws:
        assert json.loads(await ws.get_message())["type"] == "auth_required"
        await ws.send_message(json.dumps({"type": "auth", "access_token": token}))
        assert json.loads(await ws.get_message())["type"] == "auth_ok"
        await ws.send_message(json.dumps({"id": 1, "type": "subscribe", "topic": "*"}))
        assert json.loads(await ws.get_message())["success"] is True
        task_status.started()
        while True:
            frame = json.loads(await ws.get_message())
            assert frame["type"] == "event", frame  # a dropped frame would hide topics
            seen.append(frame["event"])


def test_the_quick_start_starts_the_runtime_as_this_test_does() -> None:
    quick_start = README.read_text().split("## Quick start", 1)[1].split("\n## ", 1)[0]
    assert RUN in quick_start


async def test_the_walkthrough_runs_without_an_error(tmp_path: Path) -> None:
    assert CURL is not None and BASH is not None
    port = _free_port()
    home = tmp_path / "clone"
    home.mkdir()
    config = (ROOT / "config.toml").read_text()
    assert "\nport = 8000\n" in config
    (home / "config.toml").write_text(config.replace("\nport = 8000\n", f"\nport = {port}\n"))
    (home / ".venv").symlink_to(VENV)
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "curl").write_text(f"#!/bin/sh\nexec {shlex.quote(CURL)} -sS -w '\\n__HTTP__ %{{http_code}}\\n' \"$@\"\n")
    (bin_dir / "curl").chmod(0o755)
    environ = _clean_environ(f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}")
    log = tmp_path / "runtime.log"
    seen: list[dict[str, Any]] = []

    with log.open("wb") as log_file:
        runtime = await trio.lowlevel.open_process(
            shlex.split(RUN), cwd=home, env=environ, stdout=log_file, stderr=log_file, start_new_session=True
        )
    shell = await trio.lowlevel.open_process(
        [BASH, "--noprofile", "--norc"], cwd=home, env=environ, stdin=subprocess.PIPE,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True,
    )
    try:
        await _wait_until_up(f"http://127.0.0.1:{port}", runtime, log)
        async with trio.open_nursery() as listening:
            await _walk(Shell(shell), port, tmp_path, listening, seen)
            assert runtime.returncode is None, f"the runtime stopped during the walk-through:\n{log.read_text()}"
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as http:
                asyncapi = (await http.get("/asyncapi.json")).json()
            listening.cancel_scope.cancel()
    finally:
        # SIGINT is Ctrl-C: the runtime's orderly stop. The shell's group takes its background
        # jobs (the simulator) along.
        for process, stop in ((shell, signal.SIGTERM), (runtime, signal.SIGINT)):
            if process.returncode is None:
                os.killpg(process.pid, stop)
        with trio.fail_after(STOP_TIMEOUT):
            await runtime.wait()
            await shell.wait()
        if shell.stdin is not None:
            await shell.stdin.aclose()
        if shell.stdout is not None:
            await shell.stdout.aclose()
    assert runtime.returncode == 0, log.read_text()

    if os.environ.get("VAREON_README_EVENTS"):
        Path(os.environ["VAREON_README_EVENTS"]).write_text("".join(json.dumps(event) + "\n" for event in seen))
    topics = {ID.sub("<id>", event["topic"]) for event in seen}
    assert {"agent.<id>.log", "device.<id>.status", "job.<id>", "task.<id>.run"} <= topics, topics
    documented = WEBSOCKET_DOC.read_text()
    missing = sorted(t for t in topics if f"`{t}`" not in documented)
    assert not missing, f"docs/websocket.md does not list {missing}"
    listed = {entry["topic"] for entry in asyncapi["channels"]["events"]["x-topics"]}
    assert topics <= listed, f"/asyncapi.json does not list {sorted(topics - listed)}"


async def _wait_until_up(base: str, runtime: trio.Process, log: Path) -> None:
    with trio.fail_after(START_TIMEOUT):
        async with httpx.AsyncClient(base_url=base) as http:
            while True:
                assert runtime.returncode is None, log.read_text()
                try:
                    if (await http.get("/health")).status_code == 200:
                        return
                except httpx.TransportError:
                    pass
                await trio.sleep(0.2)


async def _walk(bash: Shell, port: int, tmp_path: Path, listening: trio.Nursery, seen: list[dict[str, Any]]) -> None:
    """Run every walk-through command; start listening to every topic once ``$TOKEN`` is set."""
    listener = False
    for commands in walkthrough():
        last_id: str | None = None
        for written in commands:
            command = written.replace("localhost:8000", f"localhost:{port}").replace("/tmp/sim", str(tmp_path / "sim"))
            if "<id>" in command:
                assert last_id is not None, f"nothing was created before {written!r}"
                command = command.replace("<id>", last_id)
            with trio.fail_after(COMMAND_TIMEOUT):
                status, output = await bash.run(command)
            where = f"\n$ {written}\n{output}"
            assert status == 0, f"exit status {status}:{where}"
            codes = _statuses(output)
            assert all(200 <= code < 400 for code in codes), f"HTTP {codes}:{where}"
            last_id = _created_id(written, output) or last_id
            if not listener:
                _, token = await bash.run('printf %s "$TOKEN"')
                if token:
                    await listening.start(_listen, f"ws://127.0.0.1:{port}/api/websocket", token, seen)
                    listener = True
    assert listener, "the walk-through never set $TOKEN"
