"""Runtime boot and stop, the journal, and `vareon run` as a real process."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import trio
import trio.testing
from sqlalchemy import select
from sqlalchemy.orm import Session

from vareon_runtime.actor import Actor, handles
from vareon_runtime.component import Component, RuntimeContext
from vareon_runtime.config import load_config
from vareon_runtime.errors import ActorCrashedError
from vareon_runtime.messages import Message
from vareon_runtime.runtime import Runtime
from vareon_runtime.store import EventRecord
from vareon_runtime.supervisor import ChildSpec, ChildStatus


class Crash(Message):
    pass


class Module(Actor):
    journal: list[str] = []

    async def on_start(self) -> None:
        Module.journal.append(f"start {self.name}")

    async def on_stop(self) -> None:
        Module.journal.append(f"stop {self.name}")

    @handles(Crash)
    async def crash(self, msg: Crash) -> None:
        raise RuntimeError(f"{self.name} broke")


def module(name: str, order: int, **spec: object) -> Component:
    def build(ctx: RuntimeContext) -> ChildSpec:
        return ChildSpec(name, Module, **spec)  # type: ignore[arg-type]

    return Component(name=name, build=build, order=order)


def config_for(tmp_path: Path):  # type: ignore[no-untyped-def]
    return load_config(
        None,
        environ={"VAREON_RUNTIME_DATA_DIR": str(tmp_path / "data"), "VAREON_SERVER_PORT": "0"},
    )


async def test_modules_start_in_order_and_stop_in_reverse(tmp_path: Path) -> None:
    Module.journal = []
    runtime = Runtime(config_for(tmp_path), components=[module("web", 1000), module("myntrix", 10), module("neosyntis", 20)])
    async with trio.open_nursery() as nursery:
        with trio.fail_after(30):
            await nursery.start(runtime.run)
        assert [c.name for c in runtime.root.which_children()] == ["journal", "myntrix", "neosyntis", "web"]
        assert runtime.context is not None
        assert runtime.context.registry.count_by_kind() == {"myntrix": 1, "neosyntis": 1, "web": 1}
        runtime.stop()
    assert Module.journal == [
        "start myntrix", "start neosyntis", "start web", "stop web", "stop neosyntis", "stop myntrix",
    ]
    assert (tmp_path / "data" / "vareon.db").exists()
    assert oct((tmp_path / "data").stat().st_mode & 0o777) == "0o700"


async def test_a_module_that_gives_up_is_journaled_in_the_database(tmp_path: Path) -> None:
    Module.journal = []
    runtime = Runtime(config_for(tmp_path), components=[module("flaky", 10, max_restarts=1, period=60)])
    async with trio.open_nursery() as nursery:
        with trio.fail_after(30):
            await nursery.start(runtime.run)
            ref = runtime.root.ref("flaky")
            for _ in range(2):
                try:
                    await ref.ask(Crash(), timeout=5)
                except ActorCrashedError:
                    pass
                while runtime.root.child("flaky").status in (ChildStatus.STARTING, ChildStatus.BACKOFF):
                    await trio.sleep(0.01)
            while runtime.root.child("flaky").status is not ChildStatus.FAILED:
                await trio.sleep(0.01)
            assert runtime.context is not None
            store = runtime.context.store

            def failures(session: Session) -> list[tuple[str, str, str]]:
                rows = session.scalars(select(EventRecord).where(EventRecord.source == "flaky"))
                return [(r.kind, r.message, json.dumps(r.details)) for r in rows]

            while not any(kind == "failed" for kind, _, _ in await store.read(failures)):
                await trio.sleep(0.01)
        runtime.stop()
    rows = sqlite3.connect(tmp_path / "data" / "vareon.db").execute(
        "SELECT kind, message FROM events WHERE source = 'flaky' ORDER BY id"
    ).fetchall()
    assert ("failed", rows[-1][1]) == rows[-1]
    assert "flaky gave up after 2 restarts within 60s (max_restarts=1)" in rows[-1][1]
    assert "RuntimeError: flaky broke" in rows[-1][1]


def _vareon(*args: str, cwd: Path, env: dict[str, str] | None = None, **kwargs: object) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "vareon_runtime.cli", *args],
        cwd=cwd,
        env={**os.environ, "VAREON_SERVER_PORT": "0", **(env or {})},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        **kwargs,  # type: ignore[arg-type]
    )


async def test_vareon_init_then_run_then_sigterm_stops_cleanly(tmp_path: Path) -> None:
    init = _vareon("init", "--config", "config.toml", cwd=tmp_path)
    out, err = init.communicate(timeout=60)
    assert init.returncode == 0, err
    assert (tmp_path / "data").is_dir()
    again = _vareon("init", "--config", "config.toml", cwd=tmp_path)
    _, err = again.communicate(timeout=60)
    assert again.returncode == 2 and "already exists" in err

    proc = _vareon("run", "--config", "config.toml", cwd=tmp_path)
    assert proc.stderr is not None
    lines: list[str] = []
    with trio.fail_after(60):
        while True:
            line = await trio.to_thread.run_sync(proc.stderr.readline)
            assert line, f"vareon run exited early: {''.join(lines)}"
            lines.append(line)
            if "started" in line and "vareon.runtime" in line:
                break
    proc.send_signal(signal.SIGTERM)
    rest = await trio.to_thread.run_sync(lambda: proc.communicate(timeout=60)[1])
    assert proc.returncode == 0, "".join(lines) + rest
    assert "received SIGTERM" in rest and "stopped" in rest
    assert (tmp_path / "data" / "vareon.db").exists()


def test_vareon_run_without_a_config_says_how_to_make_one(tmp_path: Path) -> None:
    proc = _vareon("run", "--config", "missing.toml", cwd=tmp_path)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 2
    assert "missing.toml does not exist; create one with `vareon init --config missing.toml`" in err


def test_vareon_bench_kernel_quick_writes_its_json(tmp_path: Path) -> None:
    proc = _vareon("bench", "kernel", "--quick", "--output", str(tmp_path / "out"), cwd=tmp_path)
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    result = json.loads((tmp_path / "out" / "kernel.json").read_text())
    assert {g["goal"] for g in result["goals"]} >= {
        "tell throughput vs raw channel", "ask round trip vs raw", "durable writes vs raw one-commit-per-insert",
    }
    assert "GOAL tell throughput vs raw channel" in out


def test_unknown_benchmark_names_the_known_ones(tmp_path: Path) -> None:
    proc = _vareon("bench", "nope", cwd=tmp_path)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 2 and "no benchmark named 'nope'; known: " in err and "kernel" in err


async def test_the_journal_ignores_foreign_payloads_on_the_status_topic(tmp_path: Path) -> None:
    runtime = Runtime(config_for(tmp_path), components=[])
    async with trio.open_nursery() as nursery:
        with trio.fail_after(30):
            await nursery.start(runtime.run)
            assert runtime.context is not None
            runtime.context.bus.publish("status.actor", "not a status dict")
            await trio.testing.wait_all_tasks_blocked()
            assert runtime.root.child("journal").restarts == 0
        runtime.stop()
