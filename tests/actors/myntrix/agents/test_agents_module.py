"""The agents module in a real runtime: entry points, migrations, the registry face, restarts."""

from __future__ import annotations

import sys
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

import psutil
import pytest
import trio
from sqlalchemy import inspect
from sqlalchemy.orm import Session

import actors.kit.models  # noqa: F401  (the jobs table belongs to Base.metadata)
import actors.myntrix.agents.models  # noqa: F401  (the agents tables belong to Base.metadata)
from actors.kit.component import component as jobs_component
from actors.myntrix.agents import Agents, AgentStatus, DesiredState
from actors.myntrix.agents.component import component as agents_component
from vareon_runtime.config import load_config
from vareon_runtime.errors import NotRegisteredError
from vareon_runtime.registry import Registry
from vareon_runtime.runtime import Runtime
from vareon_runtime.store import Base, Store

TIMEOUT = 30.0
MYNTRIX_TABLES = {"agents", "agent_logs", "jobs"}


def test_the_module_is_installed_as_entry_points() -> None:
    components = {point.name: point.value for point in entry_points(group="vareon.components")}
    routes = {point.name: point.value for point in entry_points(group="vareon.routes")}
    assert components["agents"] == "actors.myntrix.agents.component:component"
    assert routes["agents"] == "web.agents:blueprint"
    assert agents_component.migrations == "actors.myntrix.agents.migrations"
    assert agents_component.config is not None and agents_component.config.name == "myntrix"


async def test_migrations_match_the_models(database_url: str) -> None:
    def schema(session: Session) -> dict[str, Any]:
        from alembic.autogenerate import compare_metadata
        from alembic.migration import MigrationContext

        connection = session.connection()

        def ours(obj: Any, name: str | None, type_: str, reflected: bool, compare_to: Any) -> bool:
            table = obj if type_ == "table" else getattr(obj, "table", None)
            return table is None or table.name in MYNTRIX_TABLES

        context = MigrationContext.configure(connection, opts={"include_object": ours})
        inspector = inspect(connection)
        return {
            "tables": set(inspector.get_table_names()),
            "heads": set(context.get_current_heads()),
            "indexes": {index["name"] for index in inspector.get_indexes("agent_logs")},
            "foreign_keys": [(fk["name"], fk["options"]) for fk in inspector.get_foreign_keys("agent_logs")],
            "diff": [repr(diff) for diff in compare_metadata(context, Base.metadata)],
        }

    with trio.fail_after(TIMEOUT):
        async with trio.open_nursery() as nursery:
            store: Store = await nursery.start(Store(database_url).run)
            found = await store.read(schema)
            await store.close()
    assert MYNTRIX_TABLES <= found["tables"]
    assert {"0001_kit_run_states", "0004_users_token_epoch"} <= found["heads"]  # the kit's depends on 0002_myntrix_jobs
    assert "ix_agent_logs_agent_id_id" in found["indexes"]
    assert found["foreign_keys"] == [("fk_agent_logs_agent_id_agents", {"ondelete": "CASCADE"})]
    assert found["diff"] == []


def test_the_face_needs_the_module_running() -> None:
    with pytest.raises(NotRegisteredError, match="no Agents is provided: its module is not running"):
        Registry().face(Agents)


async def test_a_runtime_restart_brings_running_agents_back(tmp_path: Path) -> None:
    """`vareon run` twice on the same data: the agent whose desired state was running runs again."""
    config = load_config(None, environ={"VAREON_RUNTIME_DATA_DIR": str(tmp_path / "data")})
    script = tmp_path / "agent.py"
    script.write_text("import time\nprint('up', flush=True)\ntime.sleep(600)\n")

    async def run_once(check: Any) -> Any:
        runtime = Runtime(config, components=[jobs_component, agents_component])
        async with trio.open_nursery() as nursery:
            await nursery.start(runtime.run)
            assert runtime.context is not None
            try:
                return await check(runtime.context.registry.face(Agents))
            finally:
                runtime.stop()

    async def first(agents: Agents) -> tuple[str, int | None, str]:
        agent = await agents.create({"name": "keeper", "configuration": {"argv": [sys.executable, str(script)]}})
        # `command`, argv's former name, still works.
        idle = await agents.create({"name": "idle", "configuration": {"command": [sys.executable, str(script)]}})
        started = await agents.start(agent.id)
        assert started.status is AgentStatus.RUNNING
        return agent.id, started.pid, idle.id

    with trio.fail_after(TIMEOUT):
        agent_id, old_pid, idle_id = await run_once(first)

        async def second(agents: Agents) -> None:
            back = await agents.get(agent_id)
            assert back.status is AgentStatus.RUNNING and back.desired_state is DesiredState.RUNNING
            assert back.pid is not None and back.pid != old_pid
            assert old_pid is not None and not psutil.pid_exists(old_pid) or psutil.Process(old_pid).status() == psutil.STATUS_ZOMBIE
            assert (await agents.get(idle_id)).status is AgentStatus.STOPPED
            assert (await agents.state(agent_id)).pid == back.pid

        await run_once(second)


def test_the_myntrix_section_of_the_config_reaches_the_modules(tmp_path: Path) -> None:
    from actors.myntrix.metrics.component import component as metrics_component
    from vareon_runtime.bus import EventBus
    from vareon_runtime.component import RuntimeContext
    from vareon_runtime.config import load_config
    from vareon_runtime.registry import Registry
    from vareon_runtime.store import Store

    config = load_config(
        None,
        environ={
            "VAREON_RUNTIME_DATA_DIR": str(tmp_path),
            "VAREON_MYNTRIX_METRICS_INTERVAL": "2.5",
            "VAREON_MYNTRIX_METRICS_HISTORY": "10",
            "VAREON_MYNTRIX_AGENT_LOG_LINES": "77",
        },
    )
    ctx = RuntimeContext(
        config=config, store=Store(config.database_url), bus=EventBus(), registry=Registry(),
        version="test", auth=None,  # type: ignore[arg-type]  # the module never touches auth
    )
    agents = agents_component.build(ctx)
    metrics = metrics_component.build(ctx)
    assert agents is not None and metrics is not None
    assert agents.factory().agents.settings.log_keep == 77  # type: ignore[attr-defined]
    sampler = metrics.factory().face  # type: ignore[attr-defined]
    assert (sampler.interval, sampler.history.maxlen) == (2.5, 10)
