"""An agent's restart is transient unless it says otherwise (supervisord's autorestart=unexpected):
an exit 0 is done, a crash restarts it. Agents stored with a restart keep it; one stored without
one reads as the default."""

from __future__ import annotations

import trio
from agents_support import TIMEOUT, AgentKit, until
from sqlalchemy import update
from sqlalchemy.orm import Session

from actors.myntrix.agents import Agents, AgentStatus
from actors.myntrix.agents.models import AgentRecord
from actors.myntrix.agents.schemas import AgentConfig, RestartType


def test_the_default_restart_is_transient() -> None:
    config = AgentConfig.model_validate({"argv": ["python3", "-c", "pass"]})
    assert config.restart is RestartType.TRANSIENT
    assert config.model_dump(mode="json")["restart"] == "transient"  # stored as written


async def test_an_agent_that_exits_0_is_done_and_one_that_crashes_restarts(kit: AgentKit, agents: Agents) -> None:
    with trio.fail_after(TIMEOUT):
        done = await kit.create(agents, "print('finished')\n", name="once")
        assert done.configuration.restart is RestartType.TRANSIENT
        with kit.bus.subscribe(f"agent.{done.id}.status") as statuses:
            await agents.start(done.id)
            ended = await until(statuses, lambda d: d["status"] not in ("starting", "running"))
        assert (ended["status"], ended["exitCode"], ended["lastError"], ended["restarts"]) == ("stopped", 0, None, 0)

        crashing = await kit.create(agents, "import sys; sys.exit(3)\n", name="crashing", maxRestarts=1)
        with kit.bus.subscribe(f"agent.{crashing.id}.status") as statuses:
            await agents.start(crashing.id)
            ended = await until(statuses, lambda d: d["status"] == "error")
        assert ended["restarts"] == 1 and ended["lastError"].startswith("gave up after 2 exits")


async def test_stored_restarts_are_kept_and_a_missing_one_is_the_default(kit: AgentKit, agents: Agents) -> None:
    with trio.fail_after(TIMEOUT):
        permanent = await kit.create(agents, "print('again')\n", name="permanent", restart="permanent", maxRestarts=1)
        legacy = await kit.create(agents, "print('legacy')\n", name="legacy")

        def drop_restart(session: Session) -> None:
            # A row written before restart was a field of the configuration.
            row = session.get(AgentRecord, legacy.id)
            assert row is not None
            configuration = {k: v for k, v in row.configuration.items() if k != "restart"}
            session.execute(update(AgentRecord).where(AgentRecord.id == legacy.id).values(configuration=configuration))

        await kit.store.write(drop_restart)
        assert (await agents.get(permanent.id)).configuration.restart is RestartType.PERMANENT
        assert (await agents.get(legacy.id)).configuration.restart is RestartType.TRANSIENT

        # The explicit permanent still restarts an exit 0, up to its limit.
        with kit.bus.subscribe(f"agent.{permanent.id}.status") as statuses:
            await agents.start(permanent.id)
            ended = await until(statuses, lambda d: d["status"] == "error")
        assert ended["exitCode"] == 0 and ended["restarts"] == 1
        assert (await agents.state(permanent.id)).status is AgentStatus.ERROR
