"""The scheduler actor: one actor keeps every enabled task's next fire time in a heap and sleeps
until the earliest. No per-second polling: with nothing due it wakes once per ``sleep_max``
(60 s) to look at the wall clock, which is what bounds how late a jump is noticed.

Time: fire times are wall-clock instants (``now()``, by default
:func:`vareon_runtime.clock.utcnow`); sleeping is done with trio's clock, the distance to the
next fire time being mapped onto ``trio.current_time()`` at each computation, so a test passes
``now=lambda: EPOCH + timedelta(seconds=trio.current_time())`` and drives a simulated day with
``autojump_clock``.

At each wake the scheduler compares how far the wall clock moved with how far the monotonic
clock moved:

- **in step** (within ``jump_tolerance``): every due fire time is on time and runs (several
  missed fire times of one task, after an overload, run once: they are coalesced);
- **forward jump** (NTP setting the time of a box that booted without a real-time clock, or a
  suspend): the fire times the wall clock jumped over are *misfires*;
- **backward jump**: fire times already handled do not run again; a jump back of more than
  ``backward_rebase`` (3 h) reschedules every task from the new time, since the old times were
  wrong rather than early.

On boot (the first wake) every fire time between a task's last handled one (``last_fire_at``,
or when it was last changed) and now is a misfire. A misfire follows the task's policy:
``run_once`` runs once, now, if the latest missed time is within ``misfireGrace`` seconds;
otherwise, and always with ``skip``, one ``skipped`` run says what was missed and why.

Overlap: a fire time of a task whose previous run still runs becomes a ``skipped`` run saying so
when the task's overlap policy is ``skip`` (the default); with ``allow`` a second run starts.

The last handled fire time of each task is written back (``last_fire_at``) in one statement per
wake, off the scheduler's path.
"""

from __future__ import annotations

import heapq
import itertools
import logging
from collections.abc import Callable
from datetime import datetime, timedelta
from functools import lru_cache

import trio
from sqlalchemy import bindparam, select, update
from sqlalchemy.orm import Session

from vareon_runtime.actor import Actor, handles
from vareon_runtime.clock import isoformat, utcnow
from vareon_runtime.errors import VareonError
from vareon_runtime.store import Store

from .cron import CronSchedule, parse_cron
from .messages import GetSchedule, ScheduleTask, ScheduleTasks, TaskSpec, UnscheduleTask
from .models import ScheduledTaskRecord
from .runs import TaskRuns
from .schemas import MisfirePolicy, RunTrigger
from .settings import SchedulerSettings

__all__ = ["TaskScheduler", "load_tasks", "schedule_of", "spec_from_record"]

log = logging.getLogger("vareon.myntrix.scheduler")


@lru_cache(maxsize=4096)
def schedule_of(expression: str, timezone_name: str) -> CronSchedule:
    """The parsed schedule of a stored task, shared by tasks with the same expression and zone.

    Raises:
        InvalidCronError: the stored expression or zone is no longer valid (a zone removed from
            the host's tz database).
    """
    return parse_cron(expression, timezone_name)


def spec_from_record(row: ScheduledTaskRecord) -> TaskSpec:
    """The :class:`TaskSpec` of a ``scheduled_tasks`` row (in the store's worker thread)."""
    return TaskSpec.of(row)


def load_tasks(session: Session) -> list[TaskSpec]:
    """A store read: every enabled task."""
    rows = session.scalars(select(ScheduledTaskRecord).where(ScheduledTaskRecord.enabled.is_(True))).all()
    return [spec_from_record(row) for row in rows]


def _base(spec: TaskSpec) -> datetime:
    """Where a task's next fire time is counted from: its last handled fire time, or its last
    change (creation, a new schedule, being enabled), whichever is later."""
    if spec.last_fire_at is None:
        return spec.updated_at
    return max(spec.last_fire_at, spec.updated_at)


class _Entry(list):  # type: ignore[type-arg]
    """One scheduled task in the heap: ``[next fire time, order, spec, schedule]``.

    A list, so that the heap compares entries in C (by fire time, then by the order they were
    scheduled in) and a fire moves an entry by changing its time in place and pushing it back:
    a sweep of ten thousand runs makes no new heap entry, and so leaves nothing of its own
    scattered over the memory the runs used (decision 0029). An entry that is no longer the
    task's (changed, removed) stays in the heap until it comes up, and is dropped then.
    """

    __slots__ = ()

    @property
    def next_fire(self) -> datetime:
        return self[0]  # type: ignore[no-any-return]

    @next_fire.setter
    def next_fire(self, value: datetime) -> None:
        self[0] = value

    @property
    def spec(self) -> TaskSpec:
        return self[2]  # type: ignore[no-any-return]

    @property
    def schedule(self) -> CronSchedule:
        return self[3]  # type: ignore[no-any-return]


class TaskScheduler(Actor):
    """The cron scheduler (see the module docstring).

    Args:
        store: the runtime's store (tasks are loaded at start; ``last_fire_at`` written back).
        runs: where runs are booked, started and skipped.
        settings: the module's tunables.
        now: wall-clock time (aware UTC).
    """

    def __init__(
        self,
        store: Store,
        runs: TaskRuns,
        *,
        settings: SchedulerSettings | None = None,
        now: Callable[[], datetime] = utcnow,
    ) -> None:
        super().__init__()
        self.store = store
        self.runs = runs
        self.settings = settings or SchedulerSettings()
        self.now = now
        self._entries: dict[str, _Entry] = {}
        self._heap: list[_Entry] = []
        self._seq = itertools.count()
        self._sleep: trio.CancelScope | None = None
        self._handled: dict[str, datetime] = {}
        self.wakes = 0  # how often the clock loop woke up (a test counts them: no polling)

    # ------------------------------------------------------------------ lifecycle

    async def on_start(self) -> None:
        specs = await self.store.read(load_tasks)
        for spec in specs:
            self._put(spec, _base(spec))
        log.info("scheduler: %d enabled tasks", len(self._entries))
        self.nursery.start_soon(self._clock)

    # ------------------------------------------------------------------ messages

    @handles(ScheduleTask)
    async def schedule(self, msg: ScheduleTask) -> datetime | None:
        spec = msg.task
        old = self._entries.pop(spec.id, None)
        if not spec.enabled:
            self._wake()
            return None
        if old is not None and old.spec.schedule == spec.schedule and old.spec.timezone == spec.timezone:
            entry = self._put(spec, None, next_fire=old.next_fire)  # same times: keep the one due
        else:
            # From the change itself, not from now: a fire time that passed while the message
            # was on its way still runs.
            entry = self._put(spec, _base(spec))
        self._wake()
        return entry.next_fire if entry is not None else None

    @handles(ScheduleTasks)
    async def schedule_many(self, msg: ScheduleTasks) -> int:
        scheduled = 0
        for spec in msg.tasks:
            self._entries.pop(spec.id, None)
            if spec.enabled and self._put(spec, _base(spec)) is not None:
                scheduled += 1
        self._wake()
        return scheduled

    @handles(UnscheduleTask)
    async def unschedule(self, msg: UnscheduleTask) -> bool:
        found = self._entries.pop(msg.task_id, None) is not None
        self._wake()
        return found

    @handles(GetSchedule)
    async def get_schedule(self, msg: GetSchedule) -> dict[str, datetime]:
        return {task_id: entry.next_fire for task_id, entry in self._entries.items()}

    # ------------------------------------------------------------------ the heap

    def _put(self, spec: TaskSpec, base: datetime | None, *, next_fire: datetime | None = None) -> _Entry | None:
        try:
            schedule = schedule_of(spec.schedule, spec.timezone)
        except VareonError as exc:
            log.error("task %s (%s) cannot be scheduled: %s", spec.id, spec.name, exc)
            return None
        if next_fire is None:
            assert base is not None
            next_fire = schedule.next_after(base)
        entry = _Entry((next_fire, next(self._seq), spec, schedule))
        self._entries[spec.id] = entry
        heapq.heappush(self._heap, entry)
        return entry

    def _wake(self) -> None:
        if self._sleep is not None:
            self._sleep.cancel()

    # ------------------------------------------------------------------ the clock

    async def _clock(self) -> None:
        settings = self.settings
        last_wall, last_mono = self.now(), trio.current_time()
        on_time_until: datetime | None = None  # first round: what is due was missed while down
        first = True
        while True:
            wall, mono = self.now(), trio.current_time()
            if not first:
                expected = last_wall + timedelta(seconds=mono - last_mono)
                drift = (wall - expected).total_seconds()
                if drift > settings.jump_tolerance:
                    log.warning("scheduler: the wall clock jumped %.1fs forward; fire times passed over are misfires", drift)
                    on_time_until = expected
                elif drift < -settings.jump_tolerance:
                    log.warning("scheduler: the wall clock jumped %.1fs back", -drift)
                    on_time_until = wall
                    if -drift > settings.backward_rebase:
                        self._rebase(wall)
                else:
                    on_time_until = wall
            first = False
            self._fire_due(wall, on_time_until)
            self._persist()
            last_wall, last_mono = wall, mono
            delay = settings.sleep_max
            if self._heap:
                delay = min(delay, (self._heap[0][0] - wall).total_seconds())
            with trio.CancelScope() as self._sleep:
                await trio.sleep_until(mono + max(delay, 0.0))
            self._sleep = None
            self.wakes += 1

    def _rebase(self, wall: datetime) -> None:
        """Reschedule every task from ``wall`` (after a long backward jump)."""
        entries = list(self._entries.values())
        self._entries.clear()
        self._heap.clear()
        for entry in entries:
            self._put(entry.spec, wall)

    def _fire_due(self, wall: datetime, on_time_until: datetime | None) -> None:
        """Run (or skip, by policy) every task whose next fire time is at or before ``wall``.

        One synchronous sweep: each run is started as it is popped (a trio task, no waiting),
        so every run due at this instant starts before anything else, the recorder's writes
        included, takes the loop.
        """
        heap, entries = self._heap, self._entries
        while heap and heap[0][0] <= wall:
            entry = heapq.heappop(heap)
            task_id = entry.spec.id
            if entries.get(task_id) is not entry:
                continue  # changed or removed since it was pushed
            schedule, due = entry.schedule, entry.next_fire
            following = schedule.next_after(due)
            if following > wall:
                latest = due  # the common case: exactly one fire time is due
            else:
                latest = schedule.latest_at_or_before(wall) or due
                following = schedule.next_after(latest)
            if on_time_until is not None and due <= on_time_until:
                on_time = latest if latest <= on_time_until else (schedule.latest_at_or_before(on_time_until) or due)
                self._fire(entry, on_time, None)
            else:
                self._misfire(entry, due, latest, wall)
            self._handled[task_id] = latest
            entry.next_fire = following
            heapq.heappush(heap, entry)

    def _fire(self, entry: _Entry, scheduled_for: datetime, note: str | None) -> None:
        spec = entry.spec
        control = self.runs.reserve(spec, RunTrigger.CRON, scheduled_for, note=note)
        if control is not None:
            try:
                self.runs.start(control)
            except VareonError as exc:  # the runs supervisor is stopping: so is the module
                log.warning("task %s (%s): the run due at %s not started: %s", spec.id, spec.name, isoformat(scheduled_for), exc)
            return
        if self.runs.closing:
            return
        busy = self.runs.live(spec.id)
        reason = (
            f"the previous run {busy[0].run_id if busy else ''} was still running at "
            f"{isoformat(scheduled_for)}; the task's overlap policy is skip"
        )
        self.nursery.start_soon(self.runs.skip, spec, scheduled_for, reason)

    def _misfire(self, entry: _Entry, first: datetime, latest: datetime, wall: datetime) -> None:
        spec = entry.spec
        late = (wall - latest).total_seconds()
        what = (
            f"the fire time {isoformat(latest)}"
            if first == latest
            else f"the fire times from {isoformat(first)} to {isoformat(latest)}"
        )
        if spec.misfire_policy is MisfirePolicy.RUN_ONCE and late <= spec.misfire_grace:
            note = (
                f"misfire: {what} passed while the runtime was down (or its clock jumped); running once now, "
                f"{late:.0f}s late, within the misfire grace of {spec.misfire_grace:g}s"
            )
            log.info("task %s (%s): %s", spec.id, spec.name, note)
            self._fire(entry, latest, note)
            return
        if spec.misfire_policy is MisfirePolicy.SKIP:
            why = "the task's misfire policy is skip"
        else:
            why = f"{late:.0f}s late is beyond the misfire grace of {spec.misfire_grace:g}s"
        reason = f"missed: {what} passed while the runtime was down (or its clock jumped); not run: {why}"
        self.nursery.start_soon(self.runs.skip, spec, latest, reason)

    def _persist(self) -> None:
        """Write the handled fire times back (one statement), off the clock loop's path."""
        if not self._handled:
            return
        handled, self._handled = self._handled, {}
        self.nursery.start_soon(self._write_handled, handled)

    async def _write_handled(self, handled: dict[str, datetime]) -> None:
        table = ScheduledTaskRecord.__table__
        statement = (
            update(table).where(table.c.id == bindparam("task_id")).values(last_fire_at=bindparam("fired"))
        )
        rows = [{"task_id": task_id, "fired": fired} for task_id, fired in handled.items()]

        def write(session: Session) -> None:
            session.connection().execute(statement, rows)

        try:
            await self.store.write(write)
        except VareonError as exc:
            # Next time the scheduler starts, these fire times count as missed: logged, not fatal.
            log.error("scheduler: the last fire times of %d tasks could not be saved: %s", len(rows), exc)
        finally:
            rows.clear()  # the store may keep its last write's function until its next write
