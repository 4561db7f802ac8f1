"""Supervisors with Erlang/OTP semantics, plus backoff between restarts.

A supervisor starts its children in order and keeps them alive:

- **strategy**: ``one_for_one`` restarts the child that exited; ``one_for_all`` stops every other
  child (reverse start order) and starts them all again; ``rest_for_one`` does that for the child
  and the children started after it. A group restart waits the backoff first, then stops and
  starts the group under one hold of the supervisor's lock, so no user call lands halfway. A
  user stopping, restarting or deleting the crashed child during the backoff cancels the group
  restart (its siblings were not touched); a sibling stopped by a user meanwhile stays stopped.
- **restart type** per child: ``permanent`` (always restarted), ``transient`` (restarted only
  after an abnormal exit, that is an exception), ``temporary`` (never restarted; removed, also
  when a sibling's crash restarts its group).
- **intensity**: more than ``max_restarts`` restarts within ``period`` seconds and the supervisor
  stops all children and raises :class:`RestartIntensityError` (escalation to its parent).
- **per-child limit** (optional, ``ChildSpec.max_restarts``): a child that crashes more often
  than that is marked ``failed`` with its reason while its siblings carry on. It stays visible
  and a user can start it again with :meth:`Supervisor.restart_child`.
- **backoff**: the first restart is immediate; further restarts of the same child within its
  period wait ``initial * 2**(n-1)`` seconds, capped at ``maximum``, with jitter, so many
  crashing children do not storm the machine.
- **shutdown**: children stop one by one in reverse start order; each is cancelled and gets its
  ``shutdown`` seconds (an actor's ``on_stop`` runs shielded within that bound). A child that
  outlives it is abandoned: it stays cancelled and runs on until it yields (trio cannot kill a
  task). That is logged as an error and counted in :attr:`ChildInfo.abandoned`; a new
  incarnation started beside it is logged as an error too.

Children are anything with trio's start convention, ``async def run(self, *, task_status)``: an
:class:`~vareon_runtime.actor.Actor`, another :class:`Supervisor`, a server. An actor child gets a
mailbox and :class:`~vareon_runtime.actor.ActorRef` that survive its restarts; with a registry the
ref is registered under the child's name.
"""

from __future__ import annotations

import enum
import logging
import random
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

import trio

from .actor import Actor, ActorRef, Mailbox, lone_leaf
from .bus import EventBus
from .clock import utcnow
from .errors import (
    ChildGaveUpError,
    DuplicateChildError,
    RestartIntensityError,
    SupervisorStoppedError,
    UnknownChildError,
)
from .registry import Registry

__all__ = [
    "Backoff",
    "ChildInfo",
    "ChildSpec",
    "ChildStatus",
    "Restart",
    "Runnable",
    "Strategy",
    "Supervisor",
]

log = logging.getLogger("vareon.supervisor")


class Strategy(str, enum.Enum):
    ONE_FOR_ONE = "one_for_one"
    ONE_FOR_ALL = "one_for_all"
    REST_FOR_ONE = "rest_for_one"


class Restart(str, enum.Enum):
    PERMANENT = "permanent"
    TRANSIENT = "transient"
    TEMPORARY = "temporary"


class ChildStatus(str, enum.Enum):
    STARTING = "starting"
    RUNNING = "running"
    BACKOFF = "backoff"
    STOPPING = "stopping"
    STOPPED = "stopped"
    FAILED = "failed"


class Runnable(Protocol):
    """What a supervisor can run: trio's start convention."""

    async def run(self, *, task_status: Any = ...) -> None: ...


@dataclass(frozen=True)
class Backoff:
    """Delay before the n-th consecutive restart of one child: 0, then exponential with jitter."""

    initial: float = 0.1
    maximum: float = 30.0

    def delay(self, attempt: int, rng: random.Random) -> float:
        """Seconds to wait before restart number ``attempt`` (0 = the first, immediate)."""
        if attempt <= 0 or self.initial <= 0:
            return 0.0
        ceiling = min(self.maximum, self.initial * 2 ** (attempt - 1))
        return ceiling * (0.5 + 0.5 * rng.random())  # "equal jitter": never less than half


@dataclass(frozen=True)
class ChildSpec:
    """How to make and keep one child.

    Args:
        name: unique under the supervisor; also the registry name of an actor child.
        factory: called for every (re)start; returns a fresh runnable.
        restart: permanent, transient or temporary.
        shutdown: seconds the child gets to stop before it is abandoned.
        max_restarts: optional per-child limit within ``period``; past it the child is ``failed``.
        period: the window for the per-child limit and for backoff.
    """

    name: str
    factory: Callable[[], Runnable]
    restart: Restart = Restart.PERMANENT
    shutdown: float = 5.0
    max_restarts: int | None = None
    period: float = 60.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "restart", Restart(self.restart))
        if self.shutdown < 0:
            raise ValueError(f"shutdown must be >= 0 seconds, not {self.shutdown!r}")


@dataclass(frozen=True)
class ChildInfo:
    """A snapshot of one child, for status pages and the API.

    ``abandoned`` counts earlier incarnations that did not stop within their shutdown timeout
    and still run (cancelled, but not yet yielding); normally 0.
    """

    name: str
    kind: str
    status: ChildStatus
    restarts: int
    last_error: str | None
    started_at: datetime | None
    abandoned: int = 0


def _describe(exc: BaseException) -> str:
    # A crash inside an actor's nursery arrives as a one-leaf ExceptionGroup: show the leaf.
    leaf = lone_leaf(exc)
    return f"{type(leaf).__name__}: {leaf}"


@dataclass(eq=False)
class _Incarnation:
    """One run of a child: its own cancel scope and its own end, apart from any other run."""

    instance: Runnable
    generation: int
    scope: trio.CancelScope = field(default_factory=trio.CancelScope)
    done: trio.Event = field(default_factory=trio.Event)


@dataclass(eq=False)
class _Child:
    spec: ChildSpec
    status: ChildStatus = ChildStatus.STOPPED
    kind: str = ""
    mailbox: Mailbox | None = None
    ref: ActorRef | None = None
    current: _Incarnation | None = None  # the running incarnation, if any
    abandoned: list[_Incarnation] = field(default_factory=list)  # outlived their shutdown
    generation: int = 0  # bumped by every start and stop: a pending restart of an older one is void
    restarts: int = 0
    recent: deque[float] = field(default_factory=deque)
    last_error: str | None = None
    started_at: datetime | None = None

    @property
    def name(self) -> str:
        return self.spec.name


class _StartStatus:
    """Passed to a child's ``run`` as ``task_status``: records that it started."""

    __slots__ = ("started_flag", "task_status")

    def __init__(self, task_status: trio.TaskStatus[Any]) -> None:
        self.task_status = task_status
        self.started_flag = False

    def started(self, value: Any = None) -> None:
        self.started_flag = True
        self.task_status.started(value)


class Supervisor:
    """Starts children, restarts them by strategy, escalates past its intensity.

    Args:
        name: used in logs, events and errors.
        children: started in this order by :meth:`run`.
        strategy: one_for_one, one_for_all or rest_for_one.
        max_restarts: restarts allowed within ``period`` before giving up; None for no limit
            (for supervisors of user-made children that carry their own limits).
        period: the intensity window, seconds.
        backoff: delays between restarts of the same child.
        registry: where actor children's refs are registered by name.
        bus: where status changes are published on ``status.actor``.
        shutdown_timeout: cap on the whole ordered shutdown; default the sum of the children's.
        rng: randomness for jitter (tests pass a seeded one).
    """

    def __init__(
        self,
        name: str = "supervisor",
        children: Iterable[ChildSpec] = (),
        *,
        strategy: Strategy | str = Strategy.ONE_FOR_ONE,
        max_restarts: int | None = 3,
        period: float = 5.0,
        backoff: Backoff | None = None,
        registry: Registry | None = None,
        bus: EventBus | None = None,
        shutdown_timeout: float | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.name = name
        self.strategy = Strategy(strategy)
        self.max_restarts = max_restarts
        self.period = period
        self.backoff = backoff or Backoff()
        self.registry = registry
        self.bus = bus
        self.shutdown_timeout = shutdown_timeout
        self._rng = rng or random.Random()
        self._initial = list(children)
        self._children: dict[str, _Child] = {}  # insertion order is start order
        self._restart_times: deque[float] = deque()
        self._lock = trio.Lock()
        self._nursery: trio.Nursery | None = None
        self._stop = trio.Event()
        self._stopping = False
        self._failure: BaseException | None = None

    # ---------------------------------------------------------------- running

    async def run(self, *, task_status: trio.TaskStatus[Supervisor] = trio.TASK_STATUS_IGNORED) -> None:
        """Start the children in order, supervise them until stopped, then stop them in reverse.

        Raises:
            RestartIntensityError: the restart intensity was exceeded (after stopping children).
            Exception: a child failed to start during this initial start.
        """
        start_error: Exception | None = None
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            try:
                try:
                    for spec in self._initial:
                        async with self._lock:
                            await self._start(self._add(spec), initial=True)
                except Exception as exc:
                    start_error = exc  # raised below, outside the nursery, unwrapped
                else:
                    task_status.started(self)
                    await self._stop.wait()
            finally:
                self._stopping = True
                with trio.CancelScope(shield=True) as scope:
                    scope.deadline = trio.current_time() + self._shutdown_budget()
                    await self._terminate_all()
                nursery.cancel_scope.cancel()  # pending backoff timers
        self._nursery = None
        if start_error is not None:
            raise start_error
        if self._failure is not None:
            raise self._failure

    async def stop(self) -> None:
        """Stop every child in reverse start order and let :meth:`run` return."""
        self._stop.set()
        await trio.lowlevel.checkpoint()

    # ---------------------------------------------------------------- dynamic children

    async def start_child(self, spec: ChildSpec) -> ActorRef | Runnable:
        """Add a child while running and start it; returns its ref (actors) or the runnable.

        Raises:
            DuplicateChildError: a child with that name exists.
            SupervisorStoppedError: the supervisor is stopping or not running.
            Exception: whatever the child raised before it reported started (it is not added).
        """
        async with self._lock:
            self._check_running(spec.name)
            child = self._add(spec)
            try:
                instance = await self._start(child, initial=True)
            except BaseException:
                self._forget(child)
                raise
            return child.ref if child.ref is not None else instance

    async def terminate_child(self, name: str) -> None:
        """Stop a child and keep its spec; it stays ``stopped`` until restarted.

        Raises:
            UnknownChildError: no child with that name.
        """
        async with self._lock:
            child = self._get(name)
            await self._terminate(child)
            self._close_mailbox(child)

    async def restart_child(self, name: str) -> ActorRef | Runnable:
        """Start a stopped or failed child again (stopping it first if it is running).

        Its per-child restart count starts afresh.

        Raises:
            UnknownChildError: no child with that name.
            SupervisorStoppedError: the supervisor is stopping or not running.
        """
        async with self._lock:
            child = self._get(name)
            self._check_running(name)
            await self._terminate(child)
            child.recent.clear()
            instance = await self._start(child, initial=True)
            return child.ref if child.ref is not None else instance

    async def delete_child(self, name: str) -> None:
        """Stop a child if it runs, then forget it and unregister its name.

        Raises:
            UnknownChildError: no child with that name.
        """
        async with self._lock:
            child = self._get(name)
            await self._terminate(child)
            self._forget(child)

    def which_children(self) -> list[ChildInfo]:
        """Snapshots of every child in start order."""
        return [self._info(child) for child in self._children.values()]

    def child(self, name: str) -> ChildInfo:
        """A snapshot of one child.

        Raises:
            UnknownChildError: no child with that name.
        """
        return self._info(self._get(name))

    def ref(self, name: str) -> ActorRef:
        """The ref of an actor child.

        Raises:
            UnknownChildError: no child with that name, or it is not an actor.
        """
        ref = self._get(name).ref
        if ref is None:
            raise UnknownChildError(f"child {name!r} of {self.name} is not an actor")
        return ref

    def __contains__(self, name: object) -> bool:
        return name in self._children

    # ---------------------------------------------------------------- internals

    def _info(self, child: _Child) -> ChildInfo:
        return ChildInfo(
            name=child.name,
            kind=child.kind,
            status=child.status,
            restarts=child.restarts,
            last_error=child.last_error,
            started_at=child.started_at,
            abandoned=len(child.abandoned),
        )

    def _check_running(self, name: str) -> None:
        """Refuse to start a child unless running and not stopping. Caller holds the lock."""
        if self._nursery is None and not self._stopping:
            raise SupervisorStoppedError(
                f"cannot start {name}: supervisor {self.name} is not running "
                "(start it with `await nursery.start(supervisor.run)` first)"
            )
        if self._nursery is None:
            raise SupervisorStoppedError(f"cannot start {name}: supervisor {self.name} has stopped")
        if self._stopping or self._stop.is_set():
            raise SupervisorStoppedError(f"cannot start {name}: supervisor {self.name} is stopping")

    def _get(self, name: str) -> _Child:
        try:
            return self._children[name]
        except KeyError:
            raise UnknownChildError(f"{self.name} has no child named {name!r}") from None

    def _add(self, spec: ChildSpec) -> _Child:
        if spec.name in self._children:
            raise DuplicateChildError(f"{self.name} already has a child named {spec.name!r}")
        child = _Child(spec)
        self._children[spec.name] = child
        return child

    def _forget(self, child: _Child) -> None:
        self._close_mailbox(child)
        self._children.pop(child.name, None)
        if child.ref is not None and self.registry is not None and child.name in self.registry:
            self.registry.unregister(child.name)

    def _close_mailbox(self, child: _Child) -> None:
        if child.mailbox is not None:
            child.mailbox.close(child.name)

    def _set_status(self, child: _Child, status: ChildStatus, reason: str | None = None) -> None:
        child.status = status
        if self.bus is not None:
            self.bus.publish(
                "status.actor",
                {
                    "supervisor": self.name,
                    "name": child.name,
                    "kind": child.kind,
                    "status": status.value,
                    "restarts": child.restarts,
                    "reason": reason,
                },
            )

    def _shutdown_budget(self) -> float:
        if self.shutdown_timeout is not None:
            return self.shutdown_timeout
        return sum(child.spec.shutdown for child in self._children.values()) + 1.0

    async def _start(self, child: _Child, *, initial: bool) -> Runnable:
        """Start one child and wait until it reports ready; returns its runnable. Caller holds the lock."""
        assert self._nursery is not None, "a supervisor starts children only while running"
        instance = child.spec.factory()
        child.kind = type(instance).__name__
        if isinstance(instance, Actor):
            if child.mailbox is None:
                child.mailbox = Mailbox(instance.mailbox_size)
                child.ref = ActorRef(child.name, child.mailbox, type(instance))
                if self.registry is not None:
                    self.registry.register(child.name, child.ref)
            elif child.mailbox.closed:  # stopped or failed before: open a fresh mailbox
                child.mailbox.reopen()
            assert child.ref is not None
            instance.bind(child.name, child.ref, child.mailbox, stop_timeout=child.spec.shutdown)
        child.generation += 1
        incarnation = _Incarnation(instance, child.generation)
        child.current = incarnation
        reason = None
        if child.abandoned:
            # trio cannot kill the old one; refusing would leave the child down for as long as
            # the old one hangs. Start, but say so loudly (an actor's old incarnation shares the
            # mailbox, although, cancelled, it takes no further message).
            reason = (
                f"started {child.name} while an abandoned incarnation of it still runs "
                f"({len(child.abandoned)} did not stop within {child.spec.shutdown:g}s)"
            )
            log.error("%s: %s", self.name, reason)
        self._set_status(child, ChildStatus.STARTING, reason)
        try:
            await self._nursery.start(self._supervise, child, incarnation)
        except Exception as exc:
            if child.current is incarnation:
                child.current = None
            child.last_error = _describe(exc)
            self._set_status(child, ChildStatus.STOPPED, child.last_error)
            if initial:
                raise
            # A restart that fails to start counts as another crash.
            self._exited(child, incarnation.generation, exc)
            return instance
        if incarnation.done.is_set():
            return instance  # it ended the moment it started; _exited has already taken over
        child.started_at = utcnow()
        self._set_status(child, ChildStatus.RUNNING)
        return instance

    async def _supervise(
        self, child: _Child, incarnation: _Incarnation, *, task_status: trio.TaskStatus[Any]
    ) -> None:
        status = _StartStatus(task_status)
        scope = incarnation.scope
        error: BaseException | None = None
        try:
            with scope:
                try:
                    await incarnation.instance.run(task_status=status)
                except Exception as exc:
                    if not status.started_flag:
                        raise  # nursery.start() hands it to _start
                    error = exc
            if not status.started_flag and not scope.cancelled_caught:
                raise RuntimeError(f"{child.name} returned before reporting that it started")
        finally:
            # Only this incarnation's own state: a newer one may run by now.
            if child.current is incarnation:
                child.current = None
            incarnation.done.set()
            if incarnation in child.abandoned:
                child.abandoned.remove(incarnation)
                log.warning("%s: an abandoned incarnation of %s has ended at last", self.name, child.name)
        if scope.cancel_called:  # it was being stopped: that is no exit of its own
            if error is not None:
                log.warning("%s: %s failed while stopping: %s", self.name, child.name, _describe(error))
            return
        self._exited(child, incarnation.generation, error)

    def _exited(self, child: _Child, generation: int, error: BaseException | None) -> None:
        """React to a child that ended on its own (never while it is being stopped)."""
        if generation != child.generation or self._stopping or child.name not in self._children:
            return
        reason = _describe(error) if error is not None else None
        if error is not None:
            child.last_error = reason
        spec = child.spec
        restart = spec.restart is Restart.PERMANENT or (
            spec.restart is Restart.TRANSIENT and error is not None
        )
        if not restart:
            if error is not None:
                log.error("%s: child %s crashed: %s", self.name, child.name, reason, exc_info=error)
            if spec.restart is Restart.TEMPORARY:
                self._set_status(child, ChildStatus.STOPPED, reason or "exited normally")
                self._forget(child)
            else:
                self._close_mailbox(child)
                self._set_status(child, ChildStatus.STOPPED, reason or "exited normally")
            return

        now = trio.current_time()
        if self.max_restarts is not None:
            self._restart_times.append(now)
            while self._restart_times and self._restart_times[0] <= now - self.period:
                self._restart_times.popleft()
            if len(self._restart_times) > self.max_restarts:
                if error is not None:
                    log.error("%s: child %s crashed: %s", self.name, child.name, reason, exc_info=error)
                self._give_up(
                    RestartIntensityError(
                        f"{self.name} gave up: {len(self._restart_times)} restarts within "
                        f"{self.period:g}s (max_restarts={self.max_restarts}); last, "
                        f"{child.name} exited with {reason or 'a normal exit'}"
                    )
                )
                return

        child.recent.append(now)
        while child.recent and child.recent[0] <= now - spec.period:
            child.recent.popleft()
        if spec.max_restarts is not None and len(child.recent) > spec.max_restarts:
            gave_up = ChildGaveUpError(
                f"{child.name} gave up after {len(child.recent)} restarts within "
                f"{spec.period:g}s (max_restarts={spec.max_restarts}); last exit: "
                f"{reason or 'normal'}; start it again to retry"
            )
            child.last_error = str(gave_up)
            log.error("%s: %s", self.name, gave_up, exc_info=error)
            self._close_mailbox(child)
            self._set_status(child, ChildStatus.FAILED, child.last_error)
            return

        child.restarts += 1
        delay = self.backoff.delay(len(child.recent) - 1, self._rng)
        self._set_status(child, ChildStatus.BACKOFF if delay else ChildStatus.STARTING, reason)
        assert self._nursery is not None
        # The crash is logged (traceback and all) after the restart, off the restart's path.
        self._nursery.start_soon(self._recover, child, child.generation, delay, error, child.restarts)

    def _give_up(self, error: RestartIntensityError) -> None:
        log.error("%s", error)
        self._failure = error
        self._stop.set()

    def _affected(self, child: _Child) -> list[_Child]:
        children = list(self._children.values())
        if self.strategy is Strategy.ONE_FOR_ALL:
            return children
        if self.strategy is Strategy.REST_FOR_ONE:
            return children[children.index(child) :]
        return [child]

    async def _recover(
        self, child: _Child, generation: int, delay: float, error: BaseException | None, restart: int
    ) -> None:
        try:
            await self._restart_group(child, generation, delay)
        finally:
            if error is not None:
                log.error(
                    "%s: child %s crashed (restart %d): %s",
                    self.name, child.name, restart, _describe(error), exc_info=error,
                )

    async def _restart_group(self, child: _Child, generation: int, delay: float) -> None:
        """Restart ``child`` and, by strategy, its group: after the backoff, in one lock hold.

        Until the backoff ends nothing but ``child`` is down, so a user call on any member
        meanwhile leaves a consistent state: stopping, restarting or deleting ``child`` bumps its
        generation and cancels this restart; a sibling stopped or deleted meanwhile is left out.
        """
        if delay:
            await trio.sleep(delay)
        async with self._lock:
            if (
                self._stopping
                or self._stop.is_set()
                or generation != child.generation
                or child.name not in self._children
            ):
                return  # stopping, or a user stopped, restarted or deleted it meanwhile
            restarting: list[_Child] = []
            for member in reversed(self._affected(child)):
                if member is child:
                    restarting.append(member)
                elif member.current is not None:
                    await self._terminate(member)
                    if member.spec.restart is Restart.TEMPORARY:
                        # OTP: a temporary child is never restarted, not even with its group.
                        self._set_status(
                            member, ChildStatus.STOPPED, f"stopped with {child.name}'s group; temporary"
                        )
                        self._forget(member)
                    else:
                        restarting.append(member)
                elif member.status in (ChildStatus.BACKOFF, ChildStatus.STARTING):
                    restarting.append(member)  # its own pending restart is overtaken by this one
                # else stopped or failed: it stays so until a user starts it
            for member in reversed(restarting):
                if self._stop.is_set():
                    break  # the supervisor gives up; shutdown sets the rest to stopped
                if member.name in self._children:
                    await self._start(member, initial=False)

    async def _terminate(self, child: _Child) -> None:
        """Stop one child and wait for it, bounded by its shutdown timeout. Caller holds the lock."""
        incarnation = child.current
        if incarnation is None:
            if child.status not in (ChildStatus.STOPPED, ChildStatus.FAILED):
                child.generation += 1  # cancels the pending restart
                self._set_status(child, ChildStatus.STOPPED)
            return
        self._set_status(child, ChildStatus.STOPPING)
        incarnation.scope.cancel()
        # An actor's on_stop is bounded by the same timeout; a little slack lets it report.
        with trio.move_on_after(child.spec.shutdown + 0.5):
            await incarnation.done.wait()
        reason = None
        if not incarnation.done.is_set():
            # It stays cancelled and ends when it next yields; _supervise then forgets it.
            child.abandoned.append(incarnation)
            reason = f"did not stop within {child.spec.shutdown:g}s; abandoned, it still runs"
            log.error("%s: %s %s", self.name, child.name, reason)
        if child.current is incarnation:
            child.current = None
        child.generation += 1
        self._set_status(child, ChildStatus.STOPPED, reason)

    async def _terminate_all(self) -> None:
        async with self._lock:
            for child in reversed(list(self._children.values())):
                await self._terminate(child)
