"""``Tasks``: scheduled tasks as the web front (and tests, and the benchmark) use them.

A :class:`~actors.kit.resources.Resources` of the ``scheduled_tasks`` table (one scheduler actor
for all of them, not an actor per task). Reads come from the tables. ``create``, ``update`` and ``delete`` write the row, then tell the
scheduler actor (:class:`~actors.myntrix.scheduler.messages.ScheduleTask`,
:class:`~actors.myntrix.scheduler.messages.UnscheduleTask`), which answers at once: the face
never makes the scheduler wait for the database. ``run_now`` books and starts a run itself
(:class:`~actors.myntrix.scheduler.runs.Runs`) and answers it once its row is written.

Checked at the door, each a ``ServiceError`` the web front maps to HTTP: an unknown action kind
or bad parameters (422, from the actions registry), a bad or never-firing cron expression or an
unknown time zone (422, :class:`~actors.myntrix.scheduler.errors.InvalidCronError`), a kind
only an admin may define (``script``: it executes on the host) asked for by someone else (403),
an outbound destination (an ``api`` task's URL) that is internal (loopback, private,
link-local...), not in ``[outbound] allow`` and asked for by someone other than an admin (422,
:class:`~drivers.outbound.OutboundRefusedError`; decision 0024), an unknown id (404), a run now
while a run still goes and overlap is skip (409). A destination is checked after DNS resolution;
a name that does not resolve now is accepted, as every run checks it again.

``create_many`` (``POST /api/myntrix/tasks/bulk``) creates up to
:data:`~actors.myntrix.scheduler.schemas.BULK_MAX` tasks all or none: every task gets the checks
of ``create``, a refusal names the index and field of each bad task (``["tasks", 3,
"schedule"]``; 403 before 422, as for one task), then one transaction writes them all (one
``executemany`` insert) and one message (:class:`~actors.myntrix.scheduler.messages.ScheduleTasks`)
schedules them all (decision 0029).

Deleting a task cancels its live runs (each ends ``cancelled``), then deletes the task and its
runs; their ``jobs`` rows stay.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

import trio
from pydantic import BaseModel
from sqlalchemy import Select, delete, func, select
from sqlalchemy.orm import Session

from actors.kit.parsing import check_page, enum_value, parse_model
from actors.kit.resources import Filter, Resources
from actors.kit.wire import Page
from drivers.outbound import OutboundRefusedError
from vareon_runtime.actor import ActorRef
from vareon_runtime.auth import Principal, Role
from vareon_runtime.bus import EventBus
from vareon_runtime.clock import utcnow
from vareon_runtime.errors import InvalidRequestError, NotFoundError, PermissionDeniedError, ServiceError
from vareon_runtime.store import Store

from .actions import ACTIONS, ActionRegistry, Outbound
from .actor import schedule_of, spec_from_record
from .cron import parse_cron
from .messages import GetSchedule, ScheduleTask, ScheduleTasks, TaskSpec, UnscheduleTask
from .models import ScheduledTaskRecord, TaskRunRecord
from .runs import TaskRuns
from .schemas import (
    NEXT_RUNS,
    TASK_RUN_WORDS,
    RunStatus,
    Task,
    TaskBulkCreate,
    TaskBulkCreated,
    TaskCreate,
    TaskRun,
    TaskUpdate,
)
from .settings import SchedulerSettings

__all__ = ["Tasks"]

log = logging.getLogger("vareon.myntrix.scheduler.tasks")


def _aware(moment: datetime | None) -> datetime | None:
    if moment is not None and moment.tzinfo is None:
        return moment.replace(tzinfo=timezone.utc)  # the wire's times are UTC
    return moment


@dataclass(frozen=True)
class _Row:
    """A task row with its latest run, as read in the store's thread."""

    spec: TaskSpec
    created_by: str | None
    created_at: datetime
    last_run: datetime | None
    last_status: str | None


def _select_rows() -> Any:
    last = (
        select(TaskRunRecord.start_time, TaskRunRecord.status)
        .where(TaskRunRecord.task_id == ScheduledTaskRecord.id)
        .order_by(TaskRunRecord.start_time.desc(), TaskRunRecord.id.desc())
        .limit(1)
    )
    last_time = last.with_only_columns(TaskRunRecord.start_time).scalar_subquery()
    last_status = last.with_only_columns(TaskRunRecord.status).scalar_subquery()
    return select(ScheduledTaskRecord, last_time.label("last_run"), last_status.label("last_status"))


def _row(record: ScheduledTaskRecord, last_run: Any, last_status: str | None) -> _Row:
    if isinstance(last_run, datetime) and last_run.tzinfo is None:
        last_run = last_run.replace(tzinfo=timezone.utc)  # a scalar subquery loses the column type
    elif isinstance(last_run, str):
        last_run = datetime.fromisoformat(last_run).replace(tzinfo=timezone.utc)
    return _Row(spec_from_record(record), record.created_by, record.created_at, last_run, last_status)


_DNS_AT_ONCE = 16
"""Destinations a bulk create resolves at once."""


def _problems(index: int, exc: ServiceError) -> list[dict[str, Any]]:
    """A refusal of the ``index``-th task of a bulk create, as entries of the error's details,
    each located in the body (``["tasks", 3, "parameters", "url"]``) as validation errors are."""
    details = exc.details
    if isinstance(details, list) and details and all(isinstance(item, Mapping) and "loc" in item for item in details):
        return [
            {"loc": ["tasks", index, *item["loc"]], "msg": item.get("msg", exc.message), "type": item.get("type", exc.code)}
            for item in details
        ]
    field = details.get("field") if isinstance(details, Mapping) else None
    where = str(field).split(".") if field else []
    return [{"loc": ["tasks", index, *where], "msg": exc.message, "type": exc.code}]


def _refusal(error: type[ServiceError], problems: list[dict[str, Any]], total: int) -> ServiceError:
    """One error for the problems of a bulk create: the first in the message, all in details."""
    first = problems[0]
    where = ".".join(str(part) for part in first["loc"])
    more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
    return error(f"{where}: {first['msg']}{more}; none of the {total} tasks was created", details=problems)


def _read_one(task_id: str) -> Callable[[Session], _Row | None]:
    def read(session: Session) -> _Row | None:
        found = session.execute(_select_rows().where(ScheduledTaskRecord.id == task_id)).first()
        return _row(*found) if found is not None else None

    return read


class Tasks(Resources[Task]):
    """The scheduled tasks of one runtime.

    Args:
        store: the runtime's store.
        bus: the runtime's event bus.
        scheduler: the scheduler actor's ref (stable across its restarts).
        runs: the module's runs (run now, cancelling the runs of a deleted task).
        actions: the action kinds.
        settings: the module's tunables (the default zone and misfire grace).
        now: wall-clock time (aware UTC).
        outbound: the ``[outbound]`` rule and the creators' roles (destinations are checked
            when a task is defined).
    """

    noun = "task"
    title = "task scheduler"
    record = ScheduledTaskRecord
    filters = {"enabled": Filter(ScheduledTaskRecord.enabled)}

    def __init__(
        self,
        store: Store,
        bus: EventBus,
        scheduler: ActorRef,
        runs: TaskRuns,
        *,
        actions: ActionRegistry = ACTIONS,
        settings: SchedulerSettings | None = None,
        now: Callable[[], datetime] = utcnow,
        outbound: Outbound | None = None,
    ) -> None:
        super().__init__(store, bus)
        self.scheduler = scheduler
        self.runs = runs
        self.actions = actions
        self.settings = settings or SchedulerSettings()
        self.now = now
        self.outbound = outbound or Outbound()

    def query(self) -> Select[Any]:
        return _select_rows()

    def wire(self, row: Any) -> Any:
        return _row(*row)  # shaped in trio's thread: the next fire times need the clock

    def shape(self, items: list[Any]) -> list[Task]:
        now, cache = self.now(), {}
        return [self._shape(row, now, cache) for row in items]

    # ------------------------------------------------------------------ shaping

    def _check_kind(self, kind: str, role: Role | None, *, doing: str) -> None:
        """Refuse an unknown kind (422), or a kind only admins may define to anyone else (403)."""
        action = self.actions.action(kind)
        if role is not None and getattr(action, "admin_only", False) and role is not Role.ADMIN:
            raise PermissionDeniedError(
                f"only an admin may {doing} a {kind} task (it executes on the host); you are {role.value}",
                details={"field": "action", "kind": kind, "role": role.value},
            )

    async def _check_destinations(
        self, kind: str, params: BaseModel, reach: bool | Callable[[], Awaitable[bool]], *, note: str = ""
    ) -> None:
        """Refuse (422) an outbound destination of the parameters that is internal, not allowed,
        and not for whoever counts (``reach``: see :data:`drivers.outbound.Internal`)."""
        destinations = getattr(self.actions.action(kind), "destinations", None)
        if destinations is None:
            return
        for where, url in destinations(params).items():
            try:
                await self.outbound.guard.check_destination(url, internal=reach, unresolved_ok=True)
            except OutboundRefusedError as exc:
                raise OutboundRefusedError(
                    f"{where}: {exc.message}{note}", details={"field": where, **exc.details}
                ) from exc

    async def log_owners(self, task_ids: Iterable[str]) -> dict[str, str | None]:
        """The creator of each of these tasks whose runs log what an outbound call answered (a
        kind with destinations, such as ``api``; a kind no longer known too): those logs are for
        the creator and admins (decision 0024). Other tasks, and unknown ids, are left out."""
        wanted = sorted(set(task_ids))
        if not wanted:
            return {}

        def read(session: Session) -> list[tuple[str, str, dict[str, Any], str | None]]:
            columns = (ScheduledTaskRecord.id, ScheduledTaskRecord.action, ScheduledTaskRecord.parameters, ScheduledTaskRecord.created_by)
            rows = session.execute(select(*columns).where(ScheduledTaskRecord.id.in_(wanted))).all()
            return [(task_id, kind, parameters, creator) for task_id, kind, parameters, creator in rows]

        owners: dict[str, str | None] = {}
        for task_id, kind, parameters, creator in await self.store.read(read):
            try:
                params = self.actions.validate(kind, parameters, check=False)
                destinations = getattr(self.actions.action(kind), "destinations", None)
                outbound = destinations is not None and bool(destinations(params))
            except ServiceError:
                outbound = True  # cannot tell what its runs logged: keep it to its creator
            if outbound:
                owners[task_id] = creator
        return owners

    def _masked(self, spec: TaskSpec) -> dict[str, Any]:
        """The parameters for the wire, secrets masked; {} when the kind is no longer known."""
        try:
            params = self.actions.validate(spec.action, spec.parameters, check=False)
        except ServiceError as exc:
            log.warning("task %s: its parameters cannot be shown: %s", spec.id, exc)
            return {}
        masked = getattr(params, "masked", None)
        return masked() if callable(masked) else params.model_dump(mode="json", by_alias=True)

    def _shape(self, row: _Row, now: datetime, cache: dict[tuple[str, str], list[datetime]] | None = None) -> Task:
        """The wire shape of a task read at ``now``; ``cache`` keeps the next fire times of each
        schedule for the other tasks of one answer (a page, a bulk create's events)."""
        spec = row.spec
        next_runs: list[datetime] = []
        if spec.enabled:
            key = (spec.schedule, spec.timezone)
            if cache is not None and key in cache:
                next_runs = cache[key]
            else:
                try:
                    schedule = schedule_of(spec.schedule, spec.timezone)
                    next_runs = [moment.astimezone(schedule.zone) for moment in schedule.next_times(now, NEXT_RUNS)]
                except ServiceError as exc:
                    log.warning("task %s: no next fire times: %s", spec.id, exc)
                if cache is not None:
                    cache[key] = next_runs
        return Task(
            **{**spec.as_dict(), "parameters": self._masked(spec), "created_by": row.created_by},
            created_at=row.created_at,
            last_run=row.last_run,
            last_status=TASK_RUN_WORDS.wire(row.last_status) if row.last_status else None,
            next_run=next_runs[0] if next_runs else None,
            next_runs=next_runs,
        )

    async def _tell(self, spec: TaskSpec) -> None:
        await self.scheduler.ask(ScheduleTask(task=spec), timeout=self.settings.ask_timeout)

    async def _load(self, task_id: str) -> _Row:
        row = await self.store.read(_read_one(task_id))
        if row is None:
            raise NotFoundError(f"no task has the id {task_id!r}")
        return row

    # ------------------------------------------------------------------ reads

    async def history(
        self,
        *,
        task_id: str | None = None,
        status: RunStatus | str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        limit: int = 50,
        offset: int = 0,
    ) -> Page[TaskRun]:
        """A page of runs, newest first (by start time), and how many match.

        Args:
            task_id: only this task's runs.
            status: only runs in this status (``success``; ``succeeded`` is read too).
            since, until: only runs started at or after ``since`` and before ``until``.

        Raises:
            InvalidRequestError: ``limit`` outside 1..500, ``offset`` outside 0..OFFSET_MAX, an unknown
                status, or ``since`` after ``until``.
        """
        check_page(limit, offset)
        wanted: list[str] | None = None
        if status is not None:
            wanted = [state.value for state in TASK_RUN_WORDS.states(enum_value(RunStatus, status))]
        since, until = _aware(since), _aware(until)
        if since is not None and until is not None and since > until:
            raise InvalidRequestError(f"since ({since.isoformat()}) must not be after until ({until.isoformat()})")

        def read(session: Session) -> Page[TaskRun]:
            conditions = []
            if task_id is not None:
                conditions.append(TaskRunRecord.task_id == str(task_id))
            if wanted is not None:
                conditions.append(TaskRunRecord.status.in_(wanted))
            if since is not None:
                conditions.append(TaskRunRecord.start_time >= since)
            if until is not None:
                conditions.append(TaskRunRecord.start_time < until)
            rows = session.scalars(
                select(TaskRunRecord)
                .where(*conditions)
                .order_by(TaskRunRecord.start_time.desc(), TaskRunRecord.id.desc())
                .limit(limit)
                .offset(offset)
            ).all()
            total = session.scalar(select(func.count()).select_from(TaskRunRecord).where(*conditions)) or 0
            return Page([TaskRun.model_validate(row) for row in rows], total)

        return await self.store.read(read)

    # ------------------------------------------------------------------ changes

    async def create(self, data: TaskCreate | Mapping[str, Any], by: Principal | None = None) -> Task:
        """Create a task; answers it with its next fire times.

        Args:
            by: who asks (the kinds only an admin may define are refused to others; its name is
                the task's ``createdBy``); None for callers inside the runtime.

        Raises:
            InvalidRequestError: a bad body, an unknown kind, bad parameters, a bad or
                never-firing schedule, an unknown time zone (422); an internal outbound
                destination not allowed, from someone other than an admin
                (:class:`~drivers.outbound.OutboundRefusedError`, 422).
            PermissionDeniedError: a kind only an admin may define, for someone else (403).
        """
        data = parse_model(TaskCreate, data)
        role, user = (by.role, by.username) if by is not None else (None, None)
        self._check_kind(data.action, role, doing="create")
        params = self.actions.validate(data.action, data.parameters)
        await self._check_destinations(data.action, params, by is None or Outbound.reaches_internal(role))
        zone = data.timezone or self.settings.timezone
        now = self.now()
        parse_cron(data.schedule, zone, now=now)
        record = self._record(data, params, zone, user, now)

        def insert(session: Session) -> _Row:
            row = ScheduledTaskRecord(**record)
            session.add(row)
            session.flush()
            return _Row(spec_from_record(row), row.created_by, row.created_at, None, None)

        row = await self.store.write(insert)
        await self._tell(row.spec)
        log.info("task %s (%s) created by %s: %s %s", row.spec.id, row.spec.name, user, row.spec.schedule, row.spec.action)
        return self.announce("created", self._shape(row, now))

    def _record(self, data: TaskCreate, params: BaseModel, zone: str, user: str | None, now: datetime) -> dict[str, Any]:
        """The ``scheduled_tasks`` row of a checked task (a new id, the defaults resolved)."""
        return {
            "id": self.new_id(),
            "name": data.name,
            "schedule": " ".join(data.schedule.split()),
            "action": data.action,
            "parameters": params.model_dump(mode="json", by_alias=True),
            "enabled": data.enabled,
            "timezone": zone,
            "timeout": data.timeout,
            "overlap": data.overlap.value,
            "misfire_policy": data.misfire_policy.value,
            "misfire_grace": data.misfire_grace if data.misfire_grace is not None else self.settings.misfire_grace,
            "created_by": user,
            "created_at": now,
            "updated_at": now,
            "last_fire_at": None,
        }

    async def create_many(self, data: TaskBulkCreate | Mapping[str, Any], by: Principal | None = None) -> TaskBulkCreated:
        """Create many tasks, all or none; answers their ids in the order given.

        Each task is checked as :meth:`create` checks one; then all are written in one
        transaction and scheduled in one step (one message to the scheduler, not one per task).

        Args:
            by: who asks (as for :meth:`create`).

        Raises:
            PermissionDeniedError: a kind only an admin may define, for someone else (403); the
                details locate each such task (``{"loc": ["tasks", 3, "action"], ...}``).
            InvalidRequestError: a bad body, or any refusal :meth:`create` makes, of any of the
                tasks (422): the message names the first, the details locate each one.
        """
        data = parse_model(TaskBulkCreate, data)
        items = data.tasks
        role, user = (by.role, by.username) if by is not None else (None, None)
        denied: list[dict[str, Any]] = []
        problems: list[dict[str, Any]] = []
        unknown: set[int] = set()
        for index, item in enumerate(items):
            try:
                self._check_kind(item.action, role, doing="create")
            except PermissionDeniedError as exc:
                denied += _problems(index, exc)
            except ServiceError as exc:
                problems += _problems(index, exc)
                unknown.add(index)
        if denied:
            raise _refusal(PermissionDeniedError, denied, len(items))

        now = self.now()
        checked: list[tuple[TaskCreate, BaseModel, str]] = []
        schedules: dict[tuple[str, str], ServiceError | None] = {}  # tasks share schedules: checked once
        outbound: dict[str, list[tuple[int, str]]] = {}  # destination -> (task, field) using it
        for index, item in enumerate(items):
            if index in unknown:
                continue  # nothing else to check without the kind
            zone = item.timezone or self.settings.timezone
            key = (" ".join(item.schedule.split()), zone)
            if key not in schedules:
                try:
                    parse_cron(key[0], zone, now=now)
                    schedules[key] = None
                except ServiceError as exc:
                    schedules[key] = exc
            found = schedules[key]
            try:
                params = self.actions.validate(item.action, item.parameters)
            except ServiceError as exc:
                problems += _problems(index, exc)
                params = None
            if found is not None:
                problems += _problems(index, found)
            if params is None or found is not None:
                continue
            destinations = getattr(self.actions.action(item.action), "destinations", None)
            for where, url in (destinations(params) if destinations is not None else {}).items():
                outbound.setdefault(url, []).append((index, where))
            checked.append((item, params, zone))
        if outbound:
            problems += await self._check_many_destinations(outbound, by is None or Outbound.reaches_internal(role))
        if problems:
            problems.sort(key=lambda problem: problem["loc"][1])
            raise _refusal(InvalidRequestError, problems, len(items))

        records = [self._record(item, params, zone, user, now) for item, params, zone in checked]
        await self.insert_many(records)
        specs = tuple(TaskSpec.of(record) for record in records)
        ids = [spec.id for spec in specs]
        del records, checked
        await self.scheduler.ask(ScheduleTasks(tasks=specs), timeout=self.settings.ask_timeout)
        log.info("%d tasks created by %s in one transaction", len(specs), user)
        cache: dict[tuple[str, str], list[datetime]] = {}
        for spec in specs:
            if self.bus.wants(f"{self.noun}.{spec.id}.created"):  # shaped only for a listener
                self.announce("created", self._shape(_Row(spec, user, now, None, None), now, cache))
        return TaskBulkCreated(count=len(ids), ids=ids)

    async def _check_many_destinations(
        self, destinations: dict[str, list[tuple[int, str]]], reach: bool
    ) -> list[dict[str, Any]]:
        """Check each destination of a bulk create once (a few resolved at a time); the problems
        of the tasks using a refused one."""
        problems: list[dict[str, Any]] = []
        limiter = trio.CapacityLimiter(_DNS_AT_ONCE)

        async def check(url: str, users: list[tuple[int, str]]) -> None:
            async with limiter:
                try:
                    await self.outbound.guard.check_destination(url, internal=reach, unresolved_ok=True)
                except OutboundRefusedError as exc:
                    for index, where in users:
                        problems.append({"loc": ["tasks", index, *where.split(".")], "msg": exc.message, "type": exc.code})

        async with trio.open_nursery() as nursery:
            for url, users in destinations.items():
                nursery.start_soon(check, url, users)
        return problems

    async def update(self, task_id: str, data: TaskUpdate | Mapping[str, Any], by: Principal | None = None) -> Task:
        """Change the fields given (``enabled`` alone enables or disables).

        Raises:
            NotFoundError: no task has that id.
            InvalidRequestError: as for :meth:`create`; a changed outbound destination is checked
                against both who changes it and the task's creator.
            PermissionDeniedError: the task's kind, or the new one, is one only an admin may define.
        """
        data = parse_model(TaskUpdate, data)
        given = data.model_fields_set
        role = by.role if by is not None else None
        async with self.locked(task_id) as task_id:
            current = (await self._load(task_id)).spec
            if current.action in self.actions:
                self._check_kind(current.action, role, doing="change")
            kind = data.action if data.action is not None else current.action
            self._check_kind(kind, role, doing="change")
            changes: dict[str, Any] = {}
            if data.action is not None or data.parameters is not None:
                previous = None
                if kind == current.action:
                    try:
                        previous = self.actions.validate(current.action, current.parameters, check=False)
                    except ServiceError:
                        previous = None
                parameters = data.parameters if data.parameters is not None else current.parameters
                params = self.actions.validate(kind, parameters, previous=previous)
                changes["action"] = kind
                changes["parameters"] = params.model_dump(mode="json", by_alias=True)
                if (kind, changes["parameters"]) != (current.action, current.parameters):
                    await self._check_changed_destinations(kind, params, by, current.created_by)
            now = self.now()
            if data.schedule is not None or data.timezone is not None:
                schedule = data.schedule if data.schedule is not None else current.schedule
                zone = data.timezone if data.timezone is not None else current.timezone
                parse_cron(schedule, zone, now=now)
                changes["schedule"] = " ".join(schedule.split())
                changes["timezone"] = zone
            for name in ("name", "enabled", "misfire_grace"):
                value = getattr(data, name)
                if value is not None:
                    changes[name] = value
            for name in ("overlap", "misfire_policy"):
                value = getattr(data, name)
                if value is not None:
                    changes[name] = value.value
            if "timeout" in given:
                changes["timeout"] = data.timeout
            changes["updated_at"] = now

            def change(session: Session) -> _Row | None:
                row = session.get(ScheduledTaskRecord, task_id)
                if row is None:
                    return None
                for name, value in changes.items():
                    setattr(row, name, value)
                session.flush()
                return _read_one(task_id)(session)

            row = await self.store.write(change)
            if row is None:
                raise NotFoundError(f"no task has the id {task_id!r}")
            await self._tell(row.spec)
            return self.announce("updated", self._shape(row, now))

    async def _check_changed_destinations(
        self, kind: str, params: BaseModel, by: Principal | None, creator: str | None
    ) -> None:
        """A changed call must be one both who changes it and the task's creator (whose role
        its runs go with) may aim: else an operator could turn an admin's task inward."""
        if by is not None and not Outbound.reaches_internal(by.role):
            await self._check_destinations(kind, params, False)
        elif creator is not None and (by is None or creator != by.username):
            note = f" (the task is {creator}'s, and its runs go with its creator's role: recreate it as yours)"
            await self._check_destinations(kind, params, self.outbound.creator_reach(creator), note=note)

    async def delete(self, task_id: str, by: Principal | None = None) -> None:
        """Cancel the task's live runs (they end ``cancelled``, by whom), then delete it and its runs.

        Args:
            by: who asks; refused (403) for a kind only admins define unless admin. None for
                callers inside the runtime.

        Raises:
            NotFoundError: no task has that id.
            PermissionDeniedError: see ``role``.
        """
        async with self.locked(task_id) as task_id:
            current = (await self._load(task_id)).spec
            if current.action in self.actions:
                self._check_kind(current.action, by.role if by is not None else None, doing="delete")
            await self.scheduler.ask(UnscheduleTask(task_id=task_id), timeout=self.settings.ask_timeout)
            left = await self.runs.cancel(
                self.runs.live(task_id),
                "the task was deleted",
                by=by.username if by is not None else None,
                timeout=self.settings.run_shutdown,
            )
            if left:
                log.error("task %s: %d runs did not stop within %gs of its deletion", task_id, len(left), self.settings.run_shutdown)

            await self.remove(task_id, delete(TaskRunRecord).where(TaskRunRecord.task_id == task_id))
        log.info("task %s (%s) deleted", task_id, current.name)
        self.announce_deleted(task_id)

    async def run_now(self, task_id: str, by: Principal | None = None) -> TaskRun:
        """Run the task now, whatever its schedule (also when disabled); answers the run as
        started (status running) once its row is written.

        Raises:
            NotFoundError: no task has that id.
            TaskBusyError: a run still goes and the overlap policy is skip (409).
            UnavailableError: the scheduler is stopping, or the run could not be recorded (503).
        """
        async with self.locked(task_id) as task_id:
            spec = (await self._load(task_id)).spec
            return await self.runs.run_now(spec, user=by.username if by is not None else None)

    async def next_fire_times(self) -> dict[str, datetime]:
        """The scheduler's next fire time of every enabled task (aware UTC)."""
        schedule: dict[str, datetime] = await self.scheduler.ask(GetSchedule(), timeout=self.settings.ask_timeout)
        return schedule
