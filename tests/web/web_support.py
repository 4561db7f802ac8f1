"""Helpers of the web tests: start a runtime with the web front, read uniform error bodies."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import trio
from quart_trio import QuartTrio

from actors.kit.component import component as jobs_component
from actors.myntrix.agents.component import component as agents_component
from actors.myntrix.devices.component import component as devices_component
from actors.myntrix.metrics.component import component as metrics_component
from actors.myntrix.scheduler.component import component as scheduler_component
from vareon_runtime import Runtime, RuntimeContext, load_config
from vareon_runtime.auth import Passwords, Role
from vareon_runtime.component import Component
from vareon_runtime.supervisor import ChildSpec
from web import WebServer
from web.component import component as web_component

START_TIMEOUT = 30.0
PASSWORD = "correct horse battery staple"
# The domain components with routes, so those answer as in production rather than 503.
AGENTS: tuple[Component, ...] = (jobs_component, metrics_component, agents_component)
DEVICES: tuple[Component, ...] = (*AGENTS, devices_component)
SCHEDULER: tuple[Component, ...] = (*AGENTS, scheduler_component)
DOMAINS: tuple[Component, ...] = (*AGENTS, devices_component, scheduler_component)


@dataclass
class Front:
    """A started runtime and its web front."""

    runtime: Runtime
    ctx: RuntimeContext
    server: WebServer
    stopped: trio.Event

    async def stop(self) -> None:
        """Stop the runtime cleanly and wait until it has."""
        self.runtime.stop()
        with trio.fail_after(START_TIMEOUT):
            await self.stopped.wait()

    @property
    def app(self) -> QuartTrio:
        return self.server.app

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.server.port}"


@dataclass(frozen=True)
class Account:
    username: str
    role: Role
    token: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


def environ_for(data_dir: Path, **extra: str) -> dict[str, str]:
    """The VAREON_* variables of a test runtime: data in ``data_dir``, web on 127.0.0.1:0."""
    return {
        "VAREON_RUNTIME_DATA_DIR": str(data_dir),
        "VAREON_SERVER_HOST": "127.0.0.1",
        "VAREON_SERVER_PORT": "0",
        **extra,
    }


async def start_front(
    nursery: trio.Nursery,
    data_dir: Path,
    environ: Mapping[str, str] | None = None,
    *,
    components: tuple[Component, ...] = (),
) -> Front:
    """Start a runtime with the web front (and ``components``) in ``nursery``."""
    made: list[ChildSpec] = []

    def build(ctx: RuntimeContext) -> ChildSpec | None:
        spec = web_component.build(ctx)
        assert spec is not None, "the web front is disabled in this config"
        made.append(spec)
        return spec

    web = Component(name="web", build=build, order=web_component.order)

    config = load_config(None, environ=environ_for(data_dir, **(environ or {})))
    runtime = Runtime(config, components=[*components, web])
    stopped = trio.Event()

    async def run(*, task_status: trio.TaskStatus[Runtime] = trio.TASK_STATUS_IGNORED) -> None:
        try:
            await runtime.run(task_status=task_status)
        finally:
            stopped.set()

    with trio.fail_after(START_TIMEOUT):
        await nursery.start(run)
    assert runtime.context is not None
    # The real hasher with a cheap cost: argon2id at its production cost would dominate the run.
    runtime.context.auth.passwords = Passwords(time_cost=1, memory_cost=1024)
    server = made[0].factory()
    assert isinstance(server, WebServer) and server.port, "the web front did not bind"
    return Front(runtime, runtime.context, server, stopped)


def error_of(body: object) -> dict[str, object]:
    """The ``error`` object of a uniform error body (asserting the shape on the way)."""
    assert isinstance(body, dict) and set(body) == {"error"}, body
    error = body["error"]
    assert isinstance(error, dict) and set(error) == {"code", "message", "details"}, error
    assert isinstance(error["code"], str) and isinstance(error["message"], str)
    return error
