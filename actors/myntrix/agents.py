"""``Agents``: the Myntrix agents domain as the web front (and tests, and the CLI) use it.

Each method is safe to call from many tasks at once. Reads (``get``, ``list``) come from the
``agents`` table, which every agent actor updates at each transition, so a listing is never held
up by an agent that is busy stopping. Lifecycle requests (``start``, ``stop``, ``restart``) are
messages to the agent's actor, which answers once the change is persisted. ``create``,
``update`` and ``delete`` write the row and add, replace or remove the actor under the module's
``agents`` supervisor.

Refusals are the kernel's ``ServiceError`` subclasses, which the web front maps to HTTP:
``NotFoundError`` (404) for an unknown id, ``ConflictError`` (409) for a start of a running agent
or a stop of a stopped one, ``InvalidRequestError`` (422) for a configuration that cannot run,
with the reason.

Every ``start``, ``stop`` and ``restart`` is a row in ``jobs`` (:class:`~actors.myntrix.jobs.Jobs`):
running while the agent's actor works on it, then completed with the agent's new status and pid,
or failed with the refusal or error.
"""

from __future__ import annotations

import logging
import random
import uuid
from collections.abc import Callable, Mapping
from typing import Any

import trio
from sqlalchemy import delete, func, select, update
from sqlalchemy.orm import Session

from drivers import (
    BadWorkingDirectoryError,
    ProcessBrokenError,
    ProcessConfigError,
    reap_orphan_group,
    validate_command,
)
from drivers.process import KILL_TIMEOUT
from vareon_runtime.actor import ActorRef
from vareon_runtime.bus import EventBus
from vareon_runtime.clock import utcnow
from vareon_runtime.errors import (
    ActorStoppedError,
    AskTimeoutError,
    ConflictError,
    DuplicateChildError,
    InvalidRequestError,
    NotFoundError,
    UnknownChildError,
    VareonError,
)
from vareon_runtime.store import Store
from vareon_runtime.supervisor import ChildSpec, ChildStatus, Restart, Supervisor

from .parsing import check_page, enum_value, parse_id, parse_model
from .agent import AgentActor, ProcessTable, agent_env
from .jobs import Jobs
from .messages import (
    GetAgentLogs,
    GetAgentState,
    ReleaseAgent,
    RenameAgent,
    RestartAgent,
    StartAgent,
    StopAgent,
)
from .models import AgentLogRecord, AgentRecord, agent_from_record
from .output import read_logs
from .schemas import (
    Agent,
    AgentConfig,
    AgentCreate,
    AgentLogLine,
    AgentPage,
    AgentStatus,
    AgentUpdate,
    DesiredState,
    JobStatus,
)
from .settings import MyntrixSettings

__all__ = ["LIST_LIMIT_MAX", "LOG_TAIL_MAX", "Agents", "check_runnable"]

log = logging.getLogger("vareon.myntrix.agents")

LIST_LIMIT_MAX = 500
LOG_TAIL_MAX = 10_000
_ASK = 5.0  # seconds for requests that do not wait for a process to stop
_LOGS_ASK = 1.0  # an agent busy stopping answers logs from the database instead


def check_runnable(config: AgentConfig) -> None:
    """Refuse a configuration whose command cannot run on this host, saying why.

    Raises:
        InvalidRequestError: no such executable, not executable, or a bad working directory;
            ``details`` names the field and the reason.
    """
    try:
        validate_command(config.command, cwd=config.cwd, env=agent_env(config))
    except ProcessConfigError as exc:
        field = "configuration.cwd" if isinstance(exc, BadWorkingDirectoryError) else "configuration.command"
        hint = ""
        if field == "configuration.command" and len(config.command) == 1 and " " in config.command[0]:
            hint = f" (the command is an argv list: did you mean {config.command[0].split()!r}?)"
        raise InvalidRequestError(
            f"the configuration cannot run: {exc}{hint}", details={"field": field, "reason": str(exc)}
        ) from exc


def _stop_budget(config: AgentConfig) -> float:
    """Seconds a request that may stop the process can take: stop timeout, SIGKILL, slack."""
    return config.stop_timeout + KILL_TIMEOUT + 5.0


class Agents:
    """The agents of one runtime.

    Args:
        store: the runtime's store.
        supervisor: the module's ``agents`` supervisor (one_for_one, no supervisor-wide limit);
            it registers each actor as ``agent/<uuid>``.
        bus: where the actors publish.
        settings: the module's tunables.
        processes: the module's table of live processes.
        rng: randomness for backoff jitter (tests pass a seeded one).
        jobs: where start, stop and restart are reported (a :class:`Jobs` on ``store`` if None).
    """

    def __init__(
        self,
        store: Store,
        supervisor: Supervisor,
        bus: EventBus,
        *,
        settings: MyntrixSettings | None = None,
        processes: ProcessTable | None = None,
        rng: random.Random | None = None,
        jobs: Jobs | None = None,
    ) -> None:
        self.store = store
        self.jobs = jobs if jobs is not None else Jobs(store)
        self.supervisor = supervisor
        self.bus = bus
        self.settings = settings or MyntrixSettings()
        self.processes = processes if processes is not None else ProcessTable()
        self._rng = rng or random.Random()
        # Per agent: delete, update and (re)starting an actor never interleave, so no request
        # brings back the actor of an agent being deleted or reconfigured.
        self._locks: dict[str, trio.Lock] = {}

    def _lock(self, agent_id: str) -> trio.Lock:
        lock = self._locks.get(agent_id)
        if lock is None:
            lock = self._locks[agent_id] = trio.Lock()
        return lock

    # ------------------------------------------------------------------ reads

    async def get(self, agent_id: str) -> Agent:
        """One agent.

        Raises:
            NotFoundError: no agent has that id.
        """
        agent_id = parse_id(agent_id, "agent")
        agent = await self.store.read(_read_agent(agent_id))
        if agent is None:
            raise NotFoundError(f"no agent has the id {agent_id!r}")
        return agent

    async def list(self, *, limit: int = 50, offset: int = 0, status: str | None = None) -> AgentPage:
        """A page of agents, oldest first, and the total (``status`` filters).

        Raises:
            InvalidRequestError: ``limit`` outside 1..500, a negative ``offset``, or an unknown status.
        """
        check_page(limit, offset, LIST_LIMIT_MAX)
        if status is not None:
            status = enum_value(AgentStatus, status)

        def page(session: Session) -> AgentPage:
            query = select(AgentRecord)
            count = select(func.count()).select_from(AgentRecord)
            if status is not None:
                query = query.where(AgentRecord.status == status)
                count = count.where(AgentRecord.status == status)
            rows = session.scalars(
                query.order_by(AgentRecord.created_at, AgentRecord.id).limit(limit).offset(offset)
            ).all()
            return AgentPage([agent_from_record(row) for row in rows], session.scalar(count) or 0)

        return await self.store.read(page)

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
            ref = await self._ref(agent.id)
            lines: list[AgentLogLine] = await ref.ask(GetAgentLogs(tail=tail), timeout=_LOGS_ASK)
            return lines
        except (AskTimeoutError, ActorStoppedError):
            # Busy stopping its process, or gone: what is persisted (up to a flush interval old).
            return await self.store.read(read_logs(agent.id, tail))

    # ------------------------------------------------------------------ changes

    async def create(self, data: AgentCreate | Mapping[str, Any]) -> Agent:
        """Add an agent (stopped) and its actor.

        Raises:
            InvalidRequestError: invalid fields, or a configuration that cannot run (with the reason).
        """
        request = parse_model(AgentCreate, data)
        check_runnable(request.configuration)
        agent_id = str(uuid.uuid4())
        now = utcnow()
        configuration = request.configuration.model_dump(mode="json")

        def insert(session: Session) -> None:
            session.add(
                AgentRecord(
                    id=agent_id,
                    name=request.name,
                    type=request.type,
                    status=AgentStatus.STOPPED.value,
                    health=0,
                    configuration=configuration,
                    desired_state=DesiredState.STOPPED.value,
                    restarts=0,
                    created_at=now,
                    updated_at=now,
                )
            )

        await self.store.write(insert)
        await self.start_actor(agent_id)
        log.info("agent %s (%s) created", agent_id, request.name)
        return self._announce("created", await self.get(agent_id))

    async def update(self, agent_id: str, data: AgentUpdate | Mapping[str, Any]) -> Agent:
        """Change an agent's name, type or configuration.

        A new configuration replaces the agent's actor: a running process is stopped and started
        again with it; the desired state is kept.

        Raises:
            NotFoundError: no agent has that id.
            InvalidRequestError: invalid fields, or a configuration that cannot run.
        """
        async with self._lock(parse_id(agent_id, "agent")):
            return self._announce("updated", await self._update(agent_id, data))

    async def _update(self, agent_id: str, data: AgentUpdate | Mapping[str, Any]) -> Agent:
        current = await self.get(agent_id)
        request = parse_model(AgentUpdate, data)
        if request.configuration is not None:
            check_runnable(request.configuration)
        name = request.name if request.name is not None else current.name
        kind = request.type if request.type is not None else current.type
        reconfigure = request.configuration is not None and request.configuration != current.configuration
        values: dict[str, Any] = {"name": name, "type": kind, "updated_at": utcnow()}
        if reconfigure:
            assert request.configuration is not None
            values["configuration"] = request.configuration.model_dump(mode="json")

        def change(session: Session) -> None:
            session.execute(update(AgentRecord).where(AgentRecord.id == current.id).values(**values))

        if reconfigure:
            # The actor reads its configuration when it starts: replace it. Its on_stop stops the
            # process; the next one starts it again if the desired state is running.
            await self._stop_actor(current.id, current.configuration)
            await self.store.write(change)
            await self.start_actor(current.id)
        else:
            await self.store.write(change)
            if (name, kind) != (current.name, current.type):
                ref = await self._ref_locked(current.id)
                await ref.ask(RenameAgent(name=name, type=kind), timeout=_ASK)
        return await self.get(current.id)

    async def delete(self, agent_id: str) -> None:
        """Stop the agent's process, remove its actor, and delete its row and captured output.

        Raises:
            NotFoundError: no agent has that id.
        """
        async with self._lock(parse_id(agent_id, "agent")):
            current = await self.get(agent_id)
            await self._stop_actor(current.id, current.configuration, forget=True)

            def remove(session: Session) -> None:
                session.execute(delete(AgentLogRecord).where(AgentLogRecord.agent_id == current.id))
                session.execute(delete(AgentRecord).where(AgentRecord.id == current.id))

            await self.store.write(remove)
        log.info("agent %s (%s) deleted", current.id, current.name)
        self.bus.publish(f"agent.{current.id}.deleted", {"id": current.id})

    def _announce(self, change: str, agent: Agent) -> Agent:
        # agent.<id>.created / .updated, as written: the scene and dashboards follow the table.
        self.bus.publish(f"agent.{agent.id}.{change}", agent.model_dump(mode="json", by_alias=True))
        return agent

    async def start(self, agent_id: str) -> Agent:
        """Start the agent's process; its desired state becomes running.

        Raises:
            NotFoundError: no agent has that id.
            ConflictError: it is already running.
            InvalidRequestError: its configuration cannot run (any more); the agent is ``error``.
        """
        return await self._lifecycle(agent_id, StartAgent())

    async def stop(self, agent_id: str) -> Agent:
        """Stop the agent's process (SIGTERM to its group, stop timeout, SIGKILL).

        Raises:
            NotFoundError: no agent has that id.
            ConflictError: it is already stopped.
        """
        return await self._lifecycle(agent_id, StopAgent())

    async def restart(self, agent_id: str) -> Agent:
        """Stop the agent's process if it runs, then start it; restart counts start afresh.

        Raises:
            NotFoundError: no agent has that id.
            InvalidRequestError: its configuration cannot run (any more).
        """
        return await self._lifecycle(agent_id, RestartAgent())

    async def state(self, agent_id: str) -> Agent:
        """The agent as its actor sees it this instant (the row may lag by one write)."""
        current = await self.get(agent_id)
        ref = await self._ref(current.id)
        state: Agent = await ref.ask(GetAgentState(), timeout=_stop_budget(current.configuration))
        return state

    # ------------------------------------------------------------------ actors

    async def boot(self) -> None:
        """Bring every agent back: stop what a crashed runtime left, then start every actor
        (each starts its process if its desired state is running)."""
        rows = await self.store.read(_identities)
        orphans = [(agent_id, pid, ctime, timeout) for agent_id, pid, ctime, timeout in rows if pid is not None]
        if orphans:
            stuck: set[str] = set()
            async with trio.open_nursery() as nursery:
                for agent_id, pid, ctime, timeout in orphans:
                    nursery.start_soon(self._reap, agent_id, pid, ctime, timeout, stuck)
            # A group that would not stop keeps its pid: its actor marks the agent error.
            ids = [agent_id for agent_id, *_ in orphans if agent_id not in stuck]

            def forget_pids(session: Session) -> None:
                session.execute(
                    update(AgentRecord).where(AgentRecord.id.in_(ids)).values(pid=None, process_create_time=None)
                )

            await self.store.write(forget_pids)
        for agent_id, *_ in rows:
            try:
                await self.start_actor(agent_id)
            except Exception:
                # One broken agent must not keep the others down; a request retries its actor.
                log.exception("agent %s: its actor did not start", agent_id)

    async def start_actor(self, agent_id: str) -> ActorRef:
        """Start the actor of an agent whose row exists (its process if desired running)."""
        config = await self.store.read(_read_config(agent_id))
        if config is None:
            raise NotFoundError(f"no agent has the id {agent_id!r}")
        store, bus, settings, processes, rng = self.store, self.bus, self.settings, self.processes, self._rng

        def factory() -> AgentActor:
            return AgentActor(agent_id, store=store, bus=bus, settings=settings, processes=processes, rng=rng)

        spec = ChildSpec(
            f"agent/{agent_id}",
            factory,
            restart=Restart.PERMANENT,
            shutdown=_stop_budget(config),
            max_restarts=settings.actor_max_restarts,
            period=settings.actor_period,
        )
        try:
            ref = await self.supervisor.start_child(spec)
        except DuplicateChildError as exc:
            raise ConflictError(f"agent {agent_id} is being changed by another request; try again") from exc
        assert isinstance(ref, ActorRef)
        return ref

    async def _reap(
        self, agent_id: str, pid: int, create_time: float | None, timeout: float, stuck: set[str]
    ) -> None:
        try:
            if await reap_orphan_group(pid, create_time, timeout=timeout):
                log.warning("agent %s: stopped pid %d left running by a previous runtime", agent_id, pid)
        except ProcessBrokenError as exc:
            log.error("agent %s: %s", agent_id, exc)
            stuck.add(agent_id)

    async def _ref(self, agent_id: str) -> ActorRef:
        """The agent's actor, started again if it failed or never started."""
        async with self._lock(agent_id):
            return await self._ref_locked(agent_id)

    async def _ref_locked(self, agent_id: str) -> ActorRef:
        name = f"agent/{agent_id}"
        try:
            info = self.supervisor.child(name)
        except UnknownChildError:
            return await self.start_actor(agent_id)
        if info.status in (ChildStatus.FAILED, ChildStatus.STOPPED):
            ref = await self.supervisor.restart_child(name)
            assert isinstance(ref, ActorRef)
            return ref
        return self.supervisor.ref(name)

    async def _lifecycle(self, agent_id: str, message: StartAgent | StopAgent | RestartAgent) -> Agent:
        current = await self.get(agent_id)
        action = {StartAgent: "start", StopAgent: "stop", RestartAgent: "restart"}[type(message)]
        job = await self.jobs.create(
            f"{action} agent {current.name}",
            f"agent.{action}",
            status=JobStatus.RUNNING,
            details={"agentId": current.id, "action": action},
        )
        try:
            ref = await self._ref(current.id)
            # Queued behind another stop, a stop may wait two stop budgets.
            reply: Agent = await ref.ask(message, timeout=2 * _stop_budget(current.configuration))
        except BaseException as exc:
            with trio.CancelScope(shield=True):  # a cancelled request still leaves its outcome
                await self._report(job.id, ok=False, note=f"{type(exc).__name__}: {exc}")
            raise
        await self._report(
            job.id,
            ok=True,
            note=f"agent {reply.status.value}" + (f", pid {reply.pid}" if reply.pid is not None else ""),
            details={"status": reply.status.value, "pid": reply.pid},
        )
        return reply

    async def _report(self, job_id: str, *, ok: bool, note: str, details: dict[str, Any] | None = None) -> None:
        """Finish a lifecycle job; a store that fails here does not undo what the agent did."""
        try:
            await self.jobs.finish(job_id, ok=ok, log=note, details=details)
        except VareonError as exc:
            log.error("job %s: its outcome (%s) was not recorded: %s", job_id, note, exc)

    async def _stop_actor(self, agent_id: str, config: AgentConfig, *, forget: bool = False) -> None:
        name = f"agent/{agent_id}"
        if name not in self.supervisor:
            return
        try:
            await self.supervisor.ref(name).ask(ReleaseAgent(), timeout=2 * _stop_budget(config))
        except (ActorStoppedError, UnknownChildError):
            pass  # not running: nothing to release
        await self.supervisor.delete_child(name)


def _read_agent(agent_id: str) -> Callable[[Session], Agent | None]:
    def read(session: Session) -> Agent | None:
        row = session.get(AgentRecord, agent_id)
        return agent_from_record(row) if row is not None else None

    return read


def _read_config(agent_id: str) -> Callable[[Session], AgentConfig | None]:
    def read(session: Session) -> AgentConfig | None:
        configuration = session.scalar(select(AgentRecord.configuration).where(AgentRecord.id == agent_id))
        return AgentConfig.model_validate(configuration) if configuration is not None else None

    return read


def _identities(session: Session) -> list[tuple[str, int | None, float | None, float]]:
    rows = session.execute(
        select(AgentRecord.id, AgentRecord.pid, AgentRecord.process_create_time, AgentRecord.configuration)
        .order_by(AgentRecord.created_at, AgentRecord.id)
    ).all()
    return [
        (agent_id, pid, ctime, float((configuration or {}).get("stop_timeout", 5.0)))
        for agent_id, pid, ctime, configuration in rows
    ]
