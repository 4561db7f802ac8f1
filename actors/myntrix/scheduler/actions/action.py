"""The contract of a task action: the :class:`Action` protocol, the :class:`ActionContext` a run
hands it, the :class:`ActionOutcome` it answers, :class:`ActionParameters`, the base of every
kind's parameter model, and :class:`BaseAction`, a base a kind may build on; :class:`Outbound`,
the runtime's outbound rule as tasks apply it (whose role counts)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from pydantic import BaseModel, ConfigDict
from pydantic.alias_generators import to_camel

from drivers.outbound import OutboundGuard
from vareon_runtime.auth import Role
from vareon_runtime.bus import EventBus
from vareon_runtime.registry import Registry

__all__ = ["Action", "ActionContext", "ActionOutcome", "ActionParameters", "BaseAction", "Outbound", "RoleOf"]

RoleOf = Callable[[str], Awaitable[Role | None]]
"""The current role of the account named so; None when there is no such active account."""


async def _no_role(username: str) -> Role | None:
    return None


async def _never() -> bool:
    return False


@dataclass(frozen=True)
class Outbound:
    """The outbound rule as tasks apply it (docs/decisions/0024-outbound-destinations.md).

    The role that counts is the current one of the task's creator: its ``createdBy`` (a username)
    is looked up when a destination needs it, so a creator who is no longer an admin (demoted,
    disabled, deleted) no longer reaches internal destinations. A task without a creator was
    made by the runtime itself (code, tests), not by a user, and reaches them.

    Attributes:
        guard: the ``[outbound]`` rule (a guard without an allow-list by default).
        roles: the current role of a user by name (none known by default: only admins reach
            internal destinations, and nobody is one).
    """

    guard: OutboundGuard = field(default_factory=OutboundGuard)
    roles: RoleOf = _no_role

    @staticmethod
    def reaches_internal(role: Role | None) -> bool:
        """Whether a holder of ``role`` may aim at internal destinations: admins only."""
        return role is Role.ADMIN

    def creator_reach(self, creator: str | None) -> Callable[[], Awaitable[bool]]:
        """Whether a task created by ``creator`` may reach internal destinations, asked (and
        the creator's role looked up) only when a destination is internal."""

        async def reach() -> bool:
            if creator is None:
                return True
            return self.reaches_internal(await self.roles(creator))

        return reach


@dataclass(frozen=True)
class ActionContext:
    """What one run of an action may use; built by the run's worker.

    Attributes:
        task_id, run_id: the task and this run.
        registry, bus: the runtime's (the ``agent`` action finds the agents face through it).
        log: appends one line to the run's captured log (bounded, never blocks) and publishes
            it on the task's log topic, which every role may follow.
        keep: appends one line to the run's log without publishing it: what only the task's
            creator and admins may read (an ``api`` answer's body). None: :attr:`log`.
        started_process: notes the process group the action started (its leader's pid and
            creation time) on the run's row, so that the boot after a kill -9 of the runtime
            stops what the run left running; never blocks.
        outbound: the ``[outbound]`` rule every outbound call of the action goes through
            (:meth:`OutboundGuard.transport`, :meth:`OutboundGuard.check_destination`).
        reaches_internal: whether the task's creator may aim at internal destinations (an
            admin), asked only when a destination is internal; no by default.
    """

    task_id: str
    run_id: str
    registry: Registry
    bus: EventBus
    log: Callable[[str], None]
    started_process: Callable[[int, float | None], None] = lambda pid, create_time: None
    outbound: OutboundGuard = field(default_factory=OutboundGuard)
    reaches_internal: Callable[[], Awaitable[bool]] = _never
    keep: Callable[[str], object] | None = None

    def kept(self, line: str) -> None:
        """Append ``line`` to the run's log, published only if the context has no :attr:`keep`."""
        (self.keep or self.log)(line)

    def fail(self, reason: str) -> ActionOutcome:
        """Write ``reason`` to the run's log and answer a failed outcome carrying it."""
        self.log(reason)
        return ActionOutcome(ok=False, error=reason)


@dataclass(frozen=True)
class ActionOutcome:
    """How one run of an action went: ``ok``, and what the run record shows."""

    ok: bool
    exit_code: int | None = None
    http_status: int | None = None
    error: str | None = None


@runtime_checkable
class Action(Protocol):
    """One kind of task action (see :mod:`actors.myntrix.scheduler.actions`)."""

    kind: str
    parameters: type[BaseModel]
    admin_only: bool

    def check(self, params: BaseModel) -> None:
        """Check valid parameters against this host without network I/O.

        Raises:
            InvalidRequestError: they cannot work here; ``details`` names the field and why.
        """
        ...

    async def run(self, params: BaseModel, ctx: ActionContext) -> ActionOutcome:
        """Do the work once. Cancelled (timeout, cancel), it cleans up before it returns.

        A kind that makes outbound calls a user aims also has ``destinations(params)`` (see
        :meth:`BaseAction.destinations`) and makes them through ``ctx.outbound``; what they
        answer in its log is shown only to the task's creator and admins."""
        ...


class BaseAction:
    """A base of an :class:`Action`: a kind sets ``kind`` and ``parameters`` (and ``admin_only``
    when it executes on the host), overrides :meth:`check` when its parameters can be checked
    against this host, and implements :meth:`~Action.run`."""

    kind: str
    parameters: type[BaseModel]
    admin_only: bool = False

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.kind!r}>"

    def check(self, params: BaseModel) -> None:
        """Nothing to check beyond the parameters' shape without I/O."""
        assert isinstance(params, self.parameters)

    def destinations(self, params: BaseModel) -> Mapping[str, str]:
        """The URLs the parameters aim outbound calls at, by the field holding each
        (``{"parameters.url": ...}``): each is checked against the ``[outbound]`` rule when a
        task is defined, and the kind's log is shown only to the creator and admins. None here."""
        return {}


class ActionParameters(BaseModel):
    """Base of the kinds' parameter models: camelCase aliases, both spellings in, nothing extra."""

    model_config = ConfigDict(
        alias_generator=to_camel, validate_by_name=True, validate_by_alias=True, extra="forbid", frozen=True
    )

    def masked(self) -> dict[str, Any]:
        """The parameters for the wire (camelCase, JSON types), secrets replaced by
        :data:`~actors.myntrix.scheduler.actions.masking.MASK`."""
        return self.model_dump(mode="json", by_alias=True)

    def unmasked(self, previous: BaseModel) -> ActionParameters:
        """These parameters with each :data:`~actors.myntrix.scheduler.actions.masking.MASK` that
        stands where ``previous`` had a secret replaced by that secret (a client sent back what it
        was shown)."""
        return self
