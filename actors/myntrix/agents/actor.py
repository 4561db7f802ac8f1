"""The agent actor: one agent, owning at most one OS process, keeping it as the user asked.

Lifecycle of the process (statuses, all persisted to ``agents`` and published on
``agent.<id>.status``)::

    stopped --start--> starting --spawned--> running --exit--> (restart policy)
                                                  |                 |-> starting (first restart: at once)
                                                  |                 |-> backoff --delay--> starting
                                                  |                 |-> error   (past max_restarts, or not restartable)
                                                  |                 '-> stopped (normal exit, not restarted)
                                                  '--stop--> stopping --> stopped

``running`` holds exactly while a process of the agent is alive: it is set once the spawn
succeeded and left the moment the exit is noticed. The exit is noticed without polling: a task
per process awaits :meth:`OSProcess.watch` (a pidfd on Linux) and sends the actor
:class:`ProcessExited`; every state change happens in the actor's one message loop. The process
carries the agent's owner mark, so what it leaves running outside its group is stopped with it.

A start, stop or restart comes with its job (a :class:`~actors.kit.jobs.JobTicket`): the job is
written in the same transaction as the agent's state, running while the agent is ``starting`` or
``stopping``, ended with the state the request led to, so a start is one commit.

Restarts follow the agent's configuration (restart type, ``max_restarts`` within ``period``,
exponential backoff with jitter from ``backoff_initial`` to ``backoff_max``, the first restart
immediate). Past ``max_restarts`` the agent is ``error`` with the reason; its desired state stays
what the user set, and nothing restarts it until a user starts it again (a runtime restart does
not either). The kernel supervisor above restarts the *actor* if it crashes (a bug); the actor's
``on_stop`` stops the process first, and the next incarnation starts it again from the row.

Output goes through :class:`~actors.myntrix.agents.output.AgentOutput` (ring buffer, bus,
batched writes); ``system`` lines record what the runtime did (started, exited, restarting, gave
up, heartbeat lost). A lost heartbeat (:mod:`actors.myntrix.agents.heartbeat`) stops the process
and counts as a crash. Health (:mod:`actors.myntrix.agents.health`) is sampled every
``health_interval`` and published on ``agent.<id>.health``.
"""

from __future__ import annotations

import logging
import random
import shlex
from dataclasses import dataclass, field
from datetime import datetime

import trio
from actors.kit.jobs import JobTicket, Jobs
from actors.kit.states import RunState
from drivers.commands import describe_exit
from drivers.errors import ProcessBrokenError, ProcessConfigError
from drivers.orphans import reap_orphan_group
from drivers.process import OSProcess
from vareon_runtime.actor import Actor, handles
from vareon_runtime.bus import EventBus
from vareon_runtime.clock import utcnow
from vareon_runtime.errors import (
    ActorStoppedError,
    ConflictError,
    InvalidRequestError,
    NotFoundError,
    StoreError,
)
from vareon_runtime.store import Store

from .health import TreeSampler, health_score
from .heartbeat import HeartbeatWatch
from .messages import (
    GetAgentLogs,
    GetAgentState,
    HeartbeatMissed,
    ProcessExited,
    ReleaseAgent,
    RenameAgent,
    RestartAgent,
    RestartDue,
    StartAgent,
    StopAgent,
)
from .models import load_agent
from .output import AgentOutput
from .processes import AgentProcess, ProcessTable, agent_env, owner_mark
from .restarts import RestartIntensity
from .row import AgentRow
from .schemas import (
    Agent,
    AgentConfig,
    AgentLogLine,
    AgentStatus,
    DesiredState,
    RestartType,
)
from .settings import AgentSettings

__all__ = ["DRAIN_TIMEOUT", "AgentActor", "AgentServices"]

log = logging.getLogger("vareon.myntrix.agent")

DRAIN_TIMEOUT = 0.2
"""Seconds the pipes of an exited process get to deliver its last lines (EOF is usually at once;
a grandchild still holding a pipe would hold it forever)."""

_TAIL_CHARS = 200  # of the last stderr line quoted in an exit reason

# The statuses that end a start, restart or stop request, and whether the request got what it asked.
_REQUEST_ENDS: dict[str, dict[AgentStatus, bool]] = {
    "start": {AgentStatus.RUNNING: True, AgentStatus.ERROR: False, AgentStatus.BACKOFF: False, AgentStatus.STOPPED: False},
    "stop": {AgentStatus.STOPPED: True, AgentStatus.ERROR: False},
}
_REQUEST_ENDS["restart"] = _REQUEST_ENDS["start"]


@dataclass(frozen=True)
class AgentServices:
    """What every agent's actor of one module works with.

    Attributes:
        store: where the rows and the output lines are kept.
        bus: where statuses, health and output lines are published.
        jobs: where the jobs of start, stop and restart requests are published once written.
        settings: the module's tunables.
        processes: the module's table of live processes (for its stop).
        rng: randomness for the backoff jitter (tests pass a seeded one).
    """

    store: Store
    bus: EventBus
    jobs: Jobs
    settings: AgentSettings = field(default_factory=AgentSettings)
    processes: ProcessTable = field(default_factory=ProcessTable)
    rng: random.Random = field(default_factory=random.Random)


class AgentActor(Actor):
    """The actor of one agent (registry name ``agent/<uuid>``); see the module docstring.

    Args:
        agent_id: the agent's id; its row must exist when the actor starts.
        services: what the module's agents share.
    """

    mailbox_size = 64

    def __init__(self, agent_id: str, services: AgentServices) -> None:
        super().__init__()
        self.agent_id = agent_id
        self.store = store = services.store
        self.bus = services.bus
        self.jobs = services.jobs
        self.settings = services.settings
        self.processes = services.processes
        self._topic = f"agent.{agent_id}"
        # The agent as loaded from its row; the observed fields change below.
        self.agent_name = ""
        self.agent_type = ""
        self.config: AgentConfig | None = None
        self.created_at: datetime = utcnow()
        self.updated_at: datetime = self.created_at
        self.status = AgentStatus.STOPPED
        self.desired = DesiredState.STOPPED
        self.health = 0
        self.last_run: datetime | None = None
        self.restarts = 0
        self.exit_code: int | None = None
        self.last_error: str | None = None
        # Supervision of the process.
        self._run: AgentProcess | None = None
        self._generation = 0
        self._exits = RestartIntensity(services.rng)
        self._job: tuple[JobTicket, str] | None = None  # the request in progress and its job
        self._backoff_scope: trio.CancelScope | None = None
        self._orphan: tuple[int, float | None] | None = None  # a leftover group that would not stop
        self.row = AgentRow(agent_id, store, self.bus, self.jobs)
        self.output = AgentOutput(agent_id, store=store, bus=self.bus, settings=self.settings)

    # ------------------------------------------------------------------ lifecycle

    async def on_start(self) -> None:
        loaded = await self.store.read(load_agent(self.agent_id))
        if loaded is None:
            raise NotFoundError(f"agent {self.agent_id} does not exist")
        agent = loaded.agent
        self._load(agent)
        self.nursery.start_soon(self.output.flusher)
        self.nursery.start_soon(self._health_loop)
        if agent.pid is not None:
            # A process recorded by an earlier incarnation that could not stop it (the module
            # reaps a crashed runtime's processes before any actor starts; this is the backstop).
            self._orphan = (agent.pid, loaded.process_create_time)
            await self._reap_orphan()
        if self.status is not AgentStatus.ERROR:
            self.status = AgentStatus.STOPPED  # whatever the row said, no process of ours runs now
        if self.desired is DesiredState.RUNNING and self.status is not AgentStatus.ERROR:
            await self._launch()
        else:
            await self._save()

    async def on_stop(self) -> None:
        # Any ending (runtime shutdown, the agent deleted or replaced, a crash of this actor):
        # the process stops the same way as on request, and the desired state is kept. A request
        # in progress is its asker's to settle.
        self._job = None
        self._cancel_backoff()
        try:
            if self._run is not None:
                await self._halt()
                self._set_status(AgentStatus.STOPPED)
                await self._save()
            elif self.status in (AgentStatus.BACKOFF, AgentStatus.STARTING, AgentStatus.STOPPING):
                self._set_status(AgentStatus.STOPPED)
                await self._save()
        except StoreError as exc:
            log.warning("%s: the final state was not persisted: %s", self.name, exc)
        await self.output.flush()

    # ------------------------------------------------------------------ requests

    @handles(StartAgent)
    async def start(self, msg: StartAgent) -> Agent:
        if self._run is not None:
            raise ConflictError(
                f"agent {self.agent_name!r} is already running (pid {self._run.proc.pid})",
                details={"status": self.status.value, "pid": self._run.proc.pid},
            )
        self._take(msg.job, "start")
        self.desired = DesiredState.RUNNING
        await self._fresh_start()
        return self.snapshot()

    @handles(StopAgent)
    async def stop_agent(self, msg: StopAgent) -> Agent:
        if self._run is None and self.status is AgentStatus.STOPPED and self.desired is DesiredState.STOPPED:
            raise ConflictError(
                f"agent {self.agent_name!r} is already stopped", details={"status": self.status.value}
            )
        self._take(msg.job, "stop")
        self.desired = DesiredState.STOPPED
        await self._halt()
        self._set_status(AgentStatus.STOPPED)  # from error too: its last error stays visible
        await self._save()
        return self.snapshot()

    @handles(RestartAgent)
    async def restart(self, msg: RestartAgent) -> Agent:
        self._take(msg.job, "restart")
        self.desired = DesiredState.RUNNING
        await self._halt()
        await self._fresh_start()
        return self.snapshot()

    def _take(self, job: JobTicket | None, action: str) -> None:
        """Carry the request's job: running from now, ended by the status the request leads to
        (see :meth:`_set_status`), written with the agent's state."""
        if job is not None:
            job.start()
            self._job = (job, action)

    @handles(ReleaseAgent)
    async def release(self, msg: ReleaseAgent) -> Agent:
        if self._run is not None or self.status is not AgentStatus.ERROR:
            await self._halt()
            self._set_status(AgentStatus.STOPPED)
            await self._save()
        return self.snapshot()

    @handles(RenameAgent)
    async def rename(self, msg: RenameAgent) -> Agent:
        self.agent_name, self.agent_type = msg.name, msg.type
        return self.snapshot()

    @handles(GetAgentState)
    async def state(self, msg: GetAgentState) -> Agent:
        return self.snapshot()

    @handles(GetAgentLogs)
    async def logs(self, msg: GetAgentLogs) -> list[AgentLogLine]:
        return await self.output.tail(msg.tail)

    def snapshot(self) -> Agent:
        """The agent as it is now."""
        return Agent(
            id=self.agent_id,
            name=self.agent_name,
            type=self.agent_type,
            status=self.status,
            health=self.health,
            last_run=self.last_run,
            configuration=self._config,
            desired_state=self.desired,
            pid=self._run.proc.pid if self._run is not None else None,
            restarts=self.restarts,
            exit_code=self.exit_code,
            last_error=self.last_error,
            created_at=self.created_at,
            updated_at=self.updated_at,
        )

    # ------------------------------------------------------------------ the process's own events

    @handles(ProcessExited)
    async def _exited(self, msg: ProcessExited) -> None:
        try:
            await self._on_exited(msg)
        except StoreError as exc:
            log.warning("%s: the state after an exit was not persisted (retried later): %s", self.name, exc)

    async def _on_exited(self, msg: ProcessExited) -> None:
        run = self._run
        if run is None or msg.generation != run.generation or msg.generation != self._generation:
            return  # about a process already stopped or replaced
        # The leader is gone; members of its group may not be (grandchildren). Usually the group
        # is gone too and this returns at once.
        try:
            await run.proc.stop(self._config.stop_timeout)
        except ProcessBrokenError as exc:
            log.error("%s: %s", self.name, exc)
        await self._release(run)
        reason = describe_exit(msg.exit_code)
        if msg.exit_code != 0 and run.last_stderr:
            reason += f" (last stderr line: {run.last_stderr[:_TAIL_CHARS]!r})"
        await self._after_exit(msg.exit_code, reason, abnormal=msg.exit_code != 0)

    @handles(HeartbeatMissed)
    async def _heartbeat_missed(self, msg: HeartbeatMissed) -> None:
        run = self._run
        if run is None or msg.generation != run.generation or msg.generation != self._generation:
            return
        self._system(f"{msg.reason}; stopping the process")
        await self._halt()
        await self._after_exit(self.exit_code, msg.reason, abnormal=True)

    @handles(RestartDue)
    async def _restart_due(self, msg: RestartDue) -> None:
        if msg.generation != self._generation or self.status is not AgentStatus.BACKOFF or self._run is not None:
            return
        self._backoff_scope = None
        try:
            await self._launch()
        except StoreError as exc:
            log.warning("%s: the restart was not persisted (retried later): %s", self.name, exc)

    # ------------------------------------------------------------------ supervision

    @property
    def _config(self) -> AgentConfig:
        assert self.config is not None, "the configuration is loaded in on_start"
        return self.config

    def _load(self, agent: Agent) -> None:
        self.agent_name, self.agent_type = agent.name, agent.type
        self.config = agent.configuration
        self.created_at, self.updated_at = agent.created_at, agent.updated_at
        self.status, self.desired = agent.status, agent.desired_state
        self.health = self.row.saved_health = agent.health
        self.last_run, self.restarts = agent.last_run, agent.restarts
        self.exit_code, self.last_error = agent.exit_code, agent.last_error

    async def _fresh_start(self) -> None:
        """A start asked for by a user: counts, backoff and the last error start afresh."""
        self._cancel_backoff()
        self._exits.clear()
        self.last_error = None
        self.exit_code = None
        failure = await self._launch()
        if failure is not None:
            raise InvalidRequestError(self.last_error or str(failure), details={"reason": str(failure)})

    async def _reap_orphan(self) -> bool:
        """Stop the group a previous incarnation left; if it cannot, keep its pid and mark the
        agent ``error`` (a second copy is never started next to it)."""
        if self._orphan is None:
            return True
        pid, create_time = self._orphan
        try:
            await reap_orphan_group(pid, create_time, timeout=self._config.stop_timeout, owner=owner_mark(self.agent_id))
        except ProcessBrokenError as exc:
            log.error("%s: %s", self.name, exc)
            self.last_error = f"pid {pid} left by a previous runtime could not be stopped ({exc}); not started again"
            self.status = AgentStatus.ERROR
            return False
        self._orphan = None
        return True

    async def _launch(self) -> ProcessConfigError | None:
        """Start the process and persist the outcome.

        A configuration that cannot run marks the agent ``error`` and is returned; a failure of
        the operating system counts as a crash (restarted with backoff within the intensity).
        """
        if not await self._reap_orphan():
            self._system(self.last_error or "a previous process could not be stopped")
            self._set_status(AgentStatus.ERROR)
            await self._save()
            return ProcessConfigError(self.last_error or "a previous process could not be stopped")
        try:
            await self._spawn()
        except ProcessConfigError as exc:
            self.last_error = f"cannot start: {exc}"
            self._system(self.last_error)
            self._set_status(AgentStatus.ERROR)
            await self._save()
            return exc
        except ProcessBrokenError as exc:
            await self._after_exit(None, f"could not start: {exc}", abnormal=True)
        return None

    async def _spawn(self) -> None:
        config = self._config
        self._generation += 1
        self._set_status(AgentStatus.STARTING)
        try:
            proc = await OSProcess.spawn(
                config.argv,
                cwd=config.cwd,
                env=agent_env(config),
                max_line=self.settings.max_line,
                owner=owner_mark(self.agent_id),
            )
        except BaseException:
            self.status = AgentStatus.STOPPED  # the caller decides what it becomes
            raise
        heartbeat = HeartbeatWatch(config.heartbeat) if config.heartbeat is not None else None
        run = AgentProcess(proc, self._generation, heartbeat=heartbeat)
        self._run = run
        self.processes.add(proc)
        self.last_run = utcnow()
        self.nursery.start_soon(self._watch, run)
        self._system(f"started pid {proc.pid}: {shlex.join(config.argv)}")
        self._set_status(AgentStatus.RUNNING)
        try:
            await self._save()
        except BaseException as exc:
            # Never leave a process the database does not know of: stop it, then fail.
            with trio.CancelScope(shield=True):
                self.last_error = f"could not record the start: {exc}"
                try:
                    await self._halt()
                except StoreError:
                    pass
                self._set_status(AgentStatus.STOPPED)
                try:
                    await self._save()
                except StoreError:
                    pass
            raise

    async def _halt(self) -> None:
        """Stop the process if there is one (SIGTERM to its group, stop timeout, SIGKILL) and any
        pending restart. The caller sets and saves the status that follows."""
        self._generation += 1  # whatever the old process's tasks still report is stale now
        self._cancel_backoff()
        run = self._run
        if run is None:
            return
        try:
            self._set_status(AgentStatus.STOPPING)
            try:
                await self._save()
            except StoreError as exc:
                # Stop all the same; the caller's next save (or the health loop) catches the row up.
                log.warning("%s: the stopping state was not persisted: %s", self.name, exc)
        finally:
            # Even if the database failed us: a process is never left behind for want of a row.
            try:
                code: int | None = await run.proc.stop(self._config.stop_timeout)
            except ProcessBrokenError as exc:
                log.error("%s: %s", self.name, exc)
                self.last_error = str(exc)
                code = run.proc.returncode
            # Let the pipes deliver the last lines (the watcher returns at EOF or DRAIN_TIMEOUT).
            with trio.move_on_after(DRAIN_TIMEOUT * 2):
                await run.done.wait()
            await self._release(run)
            self.exit_code = code
            self._system(f"stopped: {describe_exit(code)}" if code is not None else "stopped")

    async def _release(self, run: AgentProcess) -> None:
        run.scope.cancel()
        self.processes.discard(run.proc)
        if self._run is run:
            self._run = None
        with trio.CancelScope(shield=True):
            await run.proc.aclose()

    async def _after_exit(self, code: int | None, reason: str, *, abnormal: bool) -> None:
        """Decide what follows the end of a process: restart now, back off, or stay down."""
        self.exit_code = code
        self._system(reason)
        config = self._config
        if self.processes.closing:
            # The module is stopping every agent; desired states are kept for the next start.
            self._set_status(AgentStatus.STOPPED)
            await self._save()
            return
        if config.restart is RestartType.TEMPORARY or (config.restart is RestartType.TRANSIENT and not abnormal):
            if abnormal:
                self.last_error = f"{reason}; not restarted (restart is {config.restart.value})"
                self._set_status(AgentStatus.ERROR)
            else:
                self._set_status(AgentStatus.STOPPED)
            await self._save()
            return
        exits = self._exits.exited(config)
        if exits > config.max_restarts:
            self.last_error = (
                f"gave up after {exits} exits within {config.period:g}s "
                f"(maxRestarts={config.max_restarts}); last: {reason}; start it again to retry"
            )
            self._system(self.last_error)
            log.error("%s (%s): %s", self.name, self.agent_name, self.last_error)
            self._set_status(AgentStatus.ERROR)
            await self._save()
            return
        self.restarts += 1
        self.last_error = reason if abnormal else None
        delay = self._exits.delay(config)
        if delay <= 0:
            self._system("restarting")
            await self._launch()
            return
        self._system(f"restarting in {delay:.2f}s")
        self._set_status(AgentStatus.BACKOFF)
        await self._save()
        generation = self._generation
        scope = self._backoff_scope = trio.CancelScope()

        async def restart_later() -> None:
            with scope:
                await trio.sleep(delay)
                await self._tell_self(RestartDue(generation=generation))

        self.nursery.start_soon(restart_later)

    def _cancel_backoff(self) -> None:
        if self._backoff_scope is not None:
            self._backoff_scope.cancel()
            self._backoff_scope = None

    async def _tell_self(self, message: ProcessExited | HeartbeatMissed | RestartDue) -> None:
        try:
            await self.ref.tell(message)
        except ActorStoppedError:
            pass  # the actor is ending; on_stop takes care of the process

    # ------------------------------------------------------------------ per-process tasks

    async def _watch(self, run: AgentProcess) -> None:
        """Pump the output, check the heartbeat, and report the exit the moment it happens."""
        try:
            with run.scope:
                async with trio.open_nursery() as nursery:
                    if run.heartbeat is not None:
                        nursery.start_soon(self._heartbeat, run, run.heartbeat)
                    code = await run.proc.watch(lambda stream, text: self._line(stream, text, run), drain=DRAIN_TIMEOUT)
                    if run.generation == self._generation:
                        await self._tell_self(ProcessExited(generation=run.generation, exit_code=code))
                    nursery.cancel_scope.cancel()
        finally:
            run.done.set()

    async def _heartbeat(self, run: AgentProcess, watch: HeartbeatWatch) -> None:
        reason = await watch.run()
        if run.generation == self._generation:
            await self._tell_self(HeartbeatMissed(generation=run.generation, reason=reason))

    # ------------------------------------------------------------------ state, output, health

    def _set_status(self, status: AgentStatus) -> None:
        """Change the status; the change is published by the next :meth:`_save`, once persisted,
        so that whoever reacts to the event reads the same state back from the API."""
        self.status = status
        self.health = self._liveness_health()
        run = self._run
        if self._job is not None:
            ticket, action = self._job
            ok = _REQUEST_ENDS[action].get(status)
            if ok is not None:
                pid = run.proc.pid if run is not None and status is AgentStatus.RUNNING else None
                note = f"agent {status.value}" + (f", pid {pid}" if pid is not None else "")
                if not ok and self.last_error:
                    note += f": {self.last_error}"
                ticket.finish(RunState.SUCCEEDED if ok else RunState.FAILED, log=note, details={"status": status.value, "pid": pid})
        self.row.changed(
            {
                "id": self.agent_id,
                "status": status.value,
                "pid": run.proc.pid if run is not None and status is not AgentStatus.STARTING else None,
                "restarts": self.restarts,
                "exitCode": self.exit_code,
                "lastError": self.last_error,
                "health": self.health,
                "desiredState": self.desired.value,
            }
        )

    async def _save(self) -> None:
        """Persist the observed state (one UPDATE of the agent's row, with the request's job)."""
        self.updated_at = utcnow()
        run, orphan = self._run, self._orphan
        values = {
            "status": self.status.value,
            "health": self.health,
            "last_run": self.last_run,
            "desired_state": self.desired.value,
            "pid": run.proc.pid if run is not None else (orphan[0] if orphan else None),
            "process_create_time": run.proc.create_time if run is not None else (orphan[1] if orphan else None),
            "restarts": self.restarts,
            "exit_code": self.exit_code,
            "last_error": self.last_error,
            "updated_at": self.updated_at,
        }
        job = self._job
        await self.row.save(values, job[0] if job is not None else None)
        if job is not None and job[0].state.finished and self._job is job:
            self._job = None

    def _system(self, text: str) -> None:
        log.info("%s (%s): %s", self.name, self.agent_name, text)
        self.output.add("system", text)

    def _line(self, stream: str, text: str, run: AgentProcess) -> None:
        self.output.add(stream, text)
        if run.heartbeat is not None:
            run.heartbeat.saw_line(text)
        if stream == "stderr":
            run.last_stderr = text

    def _liveness_health(self, cpu_percent: float | None = None, memory_percent: float | None = None) -> int:
        run = self._run
        if self.status is not AgentStatus.RUNNING or run is None:
            return 0
        return health_score(
            running=True,
            recent_restarts=self._exits.recent(self._config),
            heartbeat_failing=run.heartbeat is not None and run.heartbeat.misses > 0,
            cpu_percent=cpu_percent,
            memory_percent=memory_percent,
        )

    async def _health_loop(self) -> None:
        sampler = TreeSampler()
        while True:
            await trio.sleep(self.settings.health_interval)
            if self.row.dirty:
                try:
                    await self._save()
                except StoreError as exc:
                    log.warning("%s: the state is still not persisted: %s", self.name, exc)
            run = self._run
            if run is None or self.status is not AgentStatus.RUNNING:
                continue
            sample = await trio.to_thread.run_sync(sampler.sample, run.proc.pid)
            if run is not self._run or self.status is not AgentStatus.RUNNING:
                continue  # it changed while the thread read /proc
            cpu, memory = sample if sample is not None else (None, None)
            health = self._liveness_health(cpu, memory)
            self.bus.publish(
                f"{self._topic}.health",
                {"id": self.agent_id, "health": health, "cpuPercent": cpu, "memoryPercent": memory},
            )
            self.health = health
            await self.row.save_health(health, actor=self.name)
