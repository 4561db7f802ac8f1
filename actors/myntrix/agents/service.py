"""``Agents``: the Myntrix agents domain as the web front (and tests, and the CLI) use it.

A :class:`~actors.kit.resources.Resources` of the ``agents`` table with an actor per agent
(:class:`~actors.kit.resources.EntityActors`, ``agent/<uuid>``). Reads (``get``, ``list``) come
from the table, which every agent's actor updates at each transition, so a listing is never
held up by an agent that is busy stopping. Lifecycle requests (``start``, ``stop``, ``restart``)
are one message to the agent's actor, which answers once the change is persisted. ``create``,
``update`` and ``delete`` write the row and add, replace or remove the actor.

Refusals are the kernel's ``ServiceError`` subclasses, which the web front maps to HTTP:
``NotFoundError`` (404) for an unknown id, ``ConflictError`` (409) for a start of a running agent
or a stop of a stopped one, ``InvalidRequestError`` (422) for a configuration that cannot run,
with the reason.

Every ``start``, ``stop`` and ``restart`` is a job (type ``agent.<action>``): the agent's actor
writes it with the agent's state, running while the agent is starting or stopping, ended with
the state the request led to; a request the actor refuses (or never answers, as it crashed)
leaves its job failed with the reason.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any

import trio
from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session

from actors.kit.jobs import JobTicket
from actors.kit.parsing import parse_model
from actors.kit.processes import check_command
from actors.kit.resources import EntityActors, Filter, Resources
from actors.kit.states import RunState
from drivers.errors import ProcessBrokenError
from drivers.orphans import KILL_TIMEOUT, reap_orphan_group
from vareon_runtime.auth import Principal
from vareon_runtime.clock import utcnow
from vareon_runtime.errors import AskTimeoutError, InvalidRequestError, NotFoundError, UnavailableError, VareonError
from vareon_runtime.supervisor import Supervisor

from .actor import AgentActor, AgentServices
from .messages import GetAgentLogs, GetAgentState, ReleaseAgent, RenameAgent, RestartAgent, StartAgent, StopAgent
from .models import AgentLogRecord, AgentRecord
from .output import read_logs
from .processes import agent_env, owner_mark
from .schemas import Agent, AgentConfig, AgentCreate, AgentLogLine, AgentStatus, AgentUpdate, DesiredState

__all__ = ["LOG_TAIL_MAX", "Agents", "check_runnable"]

log = logging.getLogger("vareon.myntrix.agents")

LOG_TAIL_MAX = 10_000
_ASK = 5.0  # seconds for requests that do not wait for a process to stop
_LOGS_ASK = 1.0  # an agent busy stopping answers logs from the database instead


def check_runnable(config: AgentConfig) -> None:
    """Refuse a configuration whose program cannot run on this host, saying why.

    Raises:
        InvalidRequestError: no such executable, not executable, or a bad working directory;
            ``details`` names the field and the reason.
    """
    check_command(config.argv, cwd=config.cwd, env=agent_env(config), field="configuration", what="the configuration")


def _stop_budget(config: AgentConfig) -> float:
    """Seconds a request that may stop the process can take: stop timeout, SIGKILL, slack."""
    return config.stop_timeout + KILL_TIMEOUT + 5.0


class Agents(Resources[Agent]):
    """The agents of one runtime.

    Args:
        services: what the module's agents share (the store, the bus, the jobs, the settings...).
        supervisor: the module's ``agents`` supervisor (:func:`~actors.kit.module.entity_supervisor`);
            it registers each actor as ``agent/<uuid>``.
    """

    noun = "agent"
    title = "Myntrix module"
    record = AgentRecord
    item = Agent
    filters = {"status": Filter(AgentRecord.status, AgentStatus)}

    def __init__(self, services: AgentServices, supervisor: Supervisor) -> None:
        super().__init__(services.store, services.bus)
        self.jobs = services.jobs
        self.settings = services.settings
        self.processes = services.processes
        self.actors = EntityActors(
            supervisor,
            "agent",
            lambda agent_id: AgentActor(agent_id, services),
            self.locks,
            shutdown=self._shutdown,
            max_restarts=services.settings.actor_max_restarts,
            period=services.settings.actor_period,
        )

    async def _shutdown(self, agent_id: str) -> float:
        """Seconds an agent's actor may take to stop: its process's stop budget."""
        config = await self.store.read(_read_config(agent_id))
        if config is None:
            raise NotFoundError(f"no agent has the id {agent_id!r}")
        return _stop_budget(config)

    # ------------------------------------------------------------------ reads

    async def logs(self, agent_id: str, *, tail: int = 100) -> list[AgentLogLine]:
        """The agent's last ``tail`` captured lines, oldest first.

        Raises:
            NotFoundError: no agent has that id.
            InvalidRequestError: ``tail`` outside 1..10000.
        """
        if not 1 <= tail <= LOG_TAIL_MAX:
            raise InvalidRequestError(f"tail must be between 1 and {LOG_TAIL_MAX}, not {tail!r}")
        agent = await self.get(agent_id)
        try:
            lines: list[AgentLogLine] = await self.actors.ask(agent.id, GetAgentLogs(tail=tail), timeout=_LOGS_ASK)
            return lines
        except UnavailableError:
            # Busy stopping its process, or gone: what is persisted (up to a flush interval old).
            return await self.store.read(read_logs(agent.id, tail))

    async def state(self, agent_id: str) -> Agent:
        """The agent as its actor sees it this instant (the row may lag by one write)."""
        current = await self.get(agent_id)
        state: Agent = await self.actors.ask(current.id, GetAgentState(), timeout=_stop_budget(current.configuration))
        return state

    # ------------------------------------------------------------------ changes

    async def create(self, data: AgentCreate | Mapping[str, Any], by: Principal | None = None) -> Agent:
        """Add an agent (stopped) and its actor.

        Raises:
            InvalidRequestError: invalid fields, or a configuration that cannot run (with the reason).
        """
        request = parse_model(AgentCreate, data)
        check_runnable(request.configuration)
        agent_id, now = self.new_id(), utcnow()
        await self.insert(
            {
                "id": agent_id,
                "name": request.name,
                "type": request.type,
                "status": AgentStatus.STOPPED.value,
                "health": 0,
                "configuration": request.configuration.model_dump(mode="json"),
                "desired_state": DesiredState.STOPPED.value,
                "restarts": 0,
                "created_at": now,
                "updated_at": now,
            }
        )
        await self.actors.start(agent_id)
        log.info("agent %s (%s) created", agent_id, request.name)
        return self.announce("created", await self.get(agent_id))

    async def update(self, agent_id: str, data: AgentUpdate | Mapping[str, Any], by: Principal | None = None) -> Agent:
        """Change an agent's name, type or configuration.

        A new configuration replaces the agent's actor: a running process is stopped and started
        again with it; the desired state is kept.

        Raises:
            NotFoundError: no agent has that id.
            InvalidRequestError: invalid fields, or a configuration that cannot run.
        """
        async with self.locked(agent_id) as agent_id:
            current = await self.get(agent_id)
            request = parse_model(AgentUpdate, data)
            if request.configuration is not None:
                check_runnable(request.configuration)
            name = request.name if request.name is not None else current.name
            kind = request.type if request.type is not None else current.type
            values: dict[str, Any] = {"name": name, "type": kind, "updated_at": utcnow()}
            reconfigured = request.configuration is not None and request.configuration != current.configuration
            if reconfigured:
                assert request.configuration is not None
                values["configuration"] = request.configuration.model_dump(mode="json")
            # A new configuration replaces the actor (its on_stop stops the process; the next
            # one starts it again if the desired state is running); a new name is shown.
            return await self.rewrite(
                current.id,
                values,
                release=ReleaseAgent() if reconfigured else None,
                release_timeout=2 * _stop_budget(current.configuration),
                tell=RenameAgent(name=name, type=kind) if (name, kind) != (current.name, current.type) else None,
            )

    async def delete(self, agent_id: str, by: Principal | None = None) -> None:
        """Stop the agent's process, remove its actor, and delete its row and captured output.

        Raises:
            NotFoundError: no agent has that id.
        """
        async with self.locked(agent_id) as agent_id:
            current = await self.get(agent_id)
            await self.actors.release(current.id, ReleaseAgent(), timeout=2 * _stop_budget(current.configuration))
            await self.remove(current.id, delete(AgentLogRecord).where(AgentLogRecord.agent_id == current.id))
        log.info("agent %s (%s) deleted", current.id, current.name)
        self.announce_deleted(current.id)

    async def start(self, agent_id: str) -> Agent:
        """Start the agent's process; its desired state becomes running.

        Raises:
            NotFoundError: no agent has that id.
            ConflictError: it is already running.
            InvalidRequestError: its configuration cannot run (any more); the agent is ``error``.
        """
        return await self._lifecycle(agent_id, "start")

    async def stop(self, agent_id: str) -> Agent:
        """Stop the agent's process (SIGTERM to its group, stop timeout, SIGKILL).

        Raises:
            NotFoundError: no agent has that id.
            ConflictError: it is already stopped.
        """
        return await self._lifecycle(agent_id, "stop")

    async def restart(self, agent_id: str) -> Agent:
        """Stop the agent's process if it runs, then start it; restart counts start afresh.

        Raises:
            NotFoundError: no agent has that id.
            InvalidRequestError: its configuration cannot run (any more).
        """
        return await self._lifecycle(agent_id, "restart")

    async def _lifecycle(self, agent_id: str, action: str) -> Agent:
        current = await self.get(agent_id)
        ticket = self.jobs.ticket(f"{action} agent {current.name}", f"agent.{action}", details={"agentId": current.id, "action": action})
        message = {"start": StartAgent, "stop": StopAgent, "restart": RestartAgent}[action](job=ticket)
        try:
            # Queued behind another stop, a stop may wait two stop budgets.
            reply: Agent = await self.actors.ask(current.id, message, timeout=2 * _stop_budget(current.configuration))
        except BaseException as exc:
            if not isinstance(exc.__cause__, AskTimeoutError):  # a slow actor still ends its job
                with trio.CancelScope(shield=True):  # a cancelled request still leaves its outcome
                    await self._settle(ticket, f"{type(exc).__name__}: {exc}")
            raise
        return reply

    async def _settle(self, ticket: JobTicket, note: str) -> None:
        """Fail a request's job the actor did not end; a store that fails here is logged."""
        if ticket.in_database and ticket.state.finished:
            return
        try:
            await self.jobs.settle(ticket, RunState.FAILED, log=note)
        except VareonError as exc:
            log.error("job %s: its outcome (%s) was not recorded: %s", ticket.id, note, exc)

    # ------------------------------------------------------------------ boot

    async def boot(self) -> None:
        """Bring every agent back: stop what a crashed runtime left, then start every actor
        (each starts its process if its desired state is running)."""
        await self.jobs.recover(["agent."], "the runtime stopped (crash or kill) before this request ended")
        rows = await self.store.read(_identities)
        orphans = [(agent_id, pid, ctime, timeout) for agent_id, pid, ctime, timeout in rows if pid is not None]
        if orphans:
            stuck: set[str] = set()
            async with trio.open_nursery() as nursery:
                for agent_id, pid, ctime, timeout in orphans:
                    nursery.start_soon(self._reap, agent_id, pid, ctime, timeout, stuck)
            # A group that would not stop keeps its pid: its actor marks the agent error.
            await self.store.write(_forget_pids([agent_id for agent_id, *_ in orphans if agent_id not in stuck]))
        await self.actors.boot(agent_id for agent_id, *_ in rows)

    async def _reap(self, agent_id: str, pid: int, create_time: float | None, timeout: float, stuck: set[str]) -> None:
        try:
            if await reap_orphan_group(pid, create_time, timeout=timeout, owner=owner_mark(agent_id)):
                log.warning("agent %s: stopped what a previous runtime left running (pid %s)", agent_id, pid)
        except ProcessBrokenError as exc:
            log.error("agent %s: %s", agent_id, exc)
            stuck.add(agent_id)


def _read_config(agent_id: str) -> Callable[[Session], AgentConfig | None]:
    def read(session: Session) -> AgentConfig | None:
        configuration = session.scalar(select(AgentRecord.configuration).where(AgentRecord.id == agent_id))
        return AgentConfig.model_validate(configuration) if configuration is not None else None

    return read


def _identities(session: Session) -> list[tuple[str, int | None, float | None, float]]:
    rows = session.execute(
        select(AgentRecord.id, AgentRecord.pid, AgentRecord.process_create_time, AgentRecord.configuration).order_by(
            AgentRecord.created_at, AgentRecord.id
        )
    ).all()
    return [
        (agent_id, pid, ctime, float((configuration or {}).get("stop_timeout", 5.0)))
        for agent_id, pid, ctime, configuration in rows
    ]


def _forget_pids(ids: list[str]) -> Callable[[Session], None]:
    def write(session: Session) -> None:
        session.execute(update(AgentRecord).where(AgentRecord.id.in_(ids)).values(pid=None, process_create_time=None))

    return write
