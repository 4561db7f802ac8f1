"""Runs: one piece of work of a domain (a task run; workflow runs, pipeline executions and
training jobs to come), booked, run under a timeout, cancellable, logged and recorded.

- :class:`RunControl`: one booked run, and how others follow it (``done``) and stop it
  (:meth:`RunControl.cancel` with the reason and who asked).
- :class:`RunBook`: the live runs of a domain by owner (a task, a workflow), and how many an owner
  may have at once (``limit``: 1 is the scheduler's ``overlap: skip``).
- :class:`RunLog`: a run's captured log, bounded, each line also on the bus.
- :class:`RunWorker`: one run as a worker of the domain's
  :class:`~vareon_runtime.dynamic_supervisor.DynamicSupervisor` (a trio task, no mailbox:
  docs/decisions/0017-runs-as-workers.md). A domain subclasses it with what is its own: the work
  (:meth:`RunWorker.act`), the run's row and job, its events. The worker does the rest, the same
  way for every domain:

  1. :meth:`RunWorker.note_start` notes the run's row (``running``) and its job with the domain's
     :class:`~actors.kit.recorder.Recorder`, synchronously, so the runs due at one instant all
     start before the first is written;
  2. :meth:`RunWorker.run` publishes ``started``, runs :meth:`RunWorker.act` under the run's
     timeout: a timeout ends it ``timeout``, a cancel ``cancelled`` (with who asked and why);
     a refusal (a :class:`~vareon_runtime.errors.ServiceError`) or a bug (any other exception,
     logged with its traceback) ends it ``failed``, and the domain carries on;
  3. notes the end (row and job), waits until it is written, then publishes ``finished``. Noting
     is synchronous, so a run cancelled from outside (the runtime stopping) notes ``cancelled``
     on its way out, and the recorder, stopped after the runs, writes it.

  Events and log lines are made only for a topic someone listens to: ten thousand runs due at
  once publish nothing nobody reads.

When a burst of runs is over (the book empties after :data:`RELEASE_AFTER` runs or more), what
the burst freed is given back to the system (:func:`release_memory`): the collector's cycles, and
the C heap's free pages (decision 0029).
"""

from __future__ import annotations

import gc
import logging
import uuid
from abc import ABC, abstractmethod
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Generic, Protocol, TypeVar

import trio

from vareon_runtime.bus import EventBus
from vareon_runtime.errors import NotFoundError, ServiceError
from vareon_runtime.runtime import return_free_memory

from .jobs import JOB_LOG_MAX
from .recorder import LazyEvent, Recorder, RunNote
from .states import RunState, Words

__all__ = ["RELEASE_AFTER", "Outcome", "RunBook", "RunControl", "RunLog", "RunWorker", "release_memory"]

log = logging.getLogger("vareon.kit.runs")

RELEASE_AFTER = 1000
"""Runs booked since the book was last empty from which its emptying counts as the end of a burst."""

C = TypeVar("C", bound="RunControl")
O = TypeVar("O", bound="Outcome")  # noqa: E741 - the outcome type


class Outcome(Protocol):
    """How a run's work went, as the domain reports it."""

    @property
    def ok(self) -> bool: ...

    @property
    def error(self) -> str | None: ...


class RunLog:
    """A run's captured log: the tail of its lines, at most ``limit`` characters; each line is
    also published on ``topic`` with the run's id, but for a line :meth:`kept` only (what not
    every reader of the topic may see). Appending never blocks."""

    def __init__(self, limit: int, bus: EventBus, topic: str, run_id: str) -> None:
        self.limit = limit
        self._bus = bus
        self._topic = topic
        self._run_id = run_id
        self._lines: deque[str] | None = None  # made with the first line: most runs log none
        self._size = 0
        self.dropped = 0

    def __call__(self, line: str) -> None:
        kept = self.kept(line)
        if self._bus.wants(self._topic):
            self._bus.publish(self._topic, {"runId": self._run_id, "line": kept})

    def kept(self, line: str) -> str:
        """Append ``line`` to the run's record without publishing it; answer it as kept."""
        line = line.rstrip("\n")[: self.limit]
        lines = self._lines
        if lines is None:
            lines = self._lines = deque()
        lines.append(line)
        self._size += len(line) + 1
        while self._size > self.limit + 1 and len(lines) > 1:
            self._size -= len(lines.popleft()) + 1
            self.dropped += 1
        return line

    @property
    def text(self) -> str | None:
        """The kept lines, newline-separated (None when nothing was logged)."""
        if not self._lines:
            return None
        text = "\n".join(self._lines)
        if self.dropped:
            text = f"({self.dropped} earlier lines dropped)\n{text}"[-self.limit :]
        return text


@dataclass(eq=False, kw_only=True, slots=True)
class RunControl:
    """One booked run: whose it is, and how others follow and stop it.

    A domain derives its own (keyword-only fields) to carry what its worker needs.
    """

    owner_id: str
    run_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    user: str | None = None
    done: LazyEvent = field(default_factory=LazyEvent)
    # Set as the run is started: its rows on their way to the database.
    record: RunNote | None = None
    error: BaseException | None = None
    cancel_reason: str | None = None
    cancelled_by: str | None = None
    scope: trio.CancelScope | None = None

    def cancel(self, reason: str, *, by: str | None = None) -> None:
        """Stop the run's work: it ends ``cancelled`` with ``reason`` (the first one given) and
        who asked (None: the runtime itself)."""
        if self.cancel_reason is None:
            self.cancel_reason = reason
            self.cancelled_by = by
        if self.scope is not None:
            self.scope.cancel()

    @property
    def cancel_note(self) -> str | None:
        """Why the run was cancelled, and by whom, for its log."""
        if self.cancel_reason is None:
            return None
        return self.cancel_reason + (f" (cancelled by {self.cancelled_by})" if self.cancelled_by else "")


class RunBook(Generic[C]):
    """The live runs of one domain, by owner (see the module docstring).

    Args:
        release_after: when the book empties after this many runs or more were booked, the
            burst is over and its memory is released (:func:`release_memory`); None: never.
    """

    def __init__(self, *, release_after: int | None = RELEASE_AFTER) -> None:
        self._live: dict[str, dict[str, C]] = {}
        self.closing = False  # set when the domain stops: nothing new is booked
        self.release_after = release_after
        self.releases = 0  # bursts whose memory was released
        self._burst = 0  # runs booked since the book was last empty

    def live(self, owner_id: str | None = None) -> list[C]:
        """The booked runs of an owner (every owner's when None), oldest first."""
        if owner_id is not None:
            return list(self._live.get(owner_id, {}).values())
        return [control for runs in self._live.values() for control in runs.values()]

    def book(self, control: C, *, limit: int | None = None) -> bool:
        """Book ``control`` unless the domain is stopping or its owner already has ``limit``
        runs (None: no limit); False when it was not booked."""
        booked = self._live.get(control.owner_id)
        if self.closing or (limit is not None and booked is not None and len(booked) >= limit):
            return False
        self._live.setdefault(control.owner_id, {})[control.run_id] = control
        self._burst += 1
        return True

    def release(self, control: C) -> None:
        """Take an ended (or never started) run out of the book and set its ``done``."""
        runs = self._live.get(control.owner_id)
        if runs is not None:
            runs.pop(control.run_id, None)
            if not runs:
                del self._live[control.owner_id]
        control.done.set()
        if not self._live and self._burst:
            burst, self._burst = self._burst, 0
            if self.release_after is not None and burst >= self.release_after:
                self.releases += 1
                release_memory()

    async def cancel(self, controls: list[C], reason: str, *, by: str | None = None, timeout: float) -> list[C]:
        """Cancel ``controls`` at once and wait up to ``timeout`` seconds for them to end.

        Returns:
            The runs that had not ended by then.
        """
        for control in controls:
            control.cancel(reason, by=by)
        with trio.move_on_after(timeout):
            for control in controls:
                await control.done.wait()
        return [control for control in controls if not control.done.is_set()]


class RunWorker(ABC, Generic[C, O]):
    """One run (see the module docstring); a domain implements the abstract methods.

    Args:
        control: the booked run.
        book: the domain's book (the run leaves it when it ends).
        recorder: where its row and job are written.
        bus: where its events and log lines are published.
        words: the domain's words for the run states (events and job details carry them).
        now: wall-clock time (aware UTC) for the records.
        log_topic: the bus topic of its log lines.
        log_max: characters of its log kept.
    """

    noun = "run"
    """What the domain calls a run, for the log."""

    def __init__(
        self,
        control: C,
        *,
        book: RunBook[C],
        recorder: Recorder,
        bus: EventBus,
        words: Words[Any],
        now: Callable[[], datetime],
        log_topic: str,
        log_max: int = JOB_LOG_MAX,
    ) -> None:
        self.control = control
        self.book = book
        self.recorder = recorder
        self.bus = bus
        self.words = words
        self.now = now
        self.log = RunLog(log_max, bus, log_topic, control.run_id)
        self.start = now()  # when the run started
        self.end = self.start  # when it ended, once it has
        self.error: str | None = None  # why it did not succeed, once it has ended

    # ------------------------------------------------------------------ the domain's part

    timeout: float | None = None
    """Seconds the work may take (None: no limit); a domain sets it per run."""

    topic: str | None = None
    """The bus topic of the run's ``started`` and ``finished`` events (None: none)."""

    whose_timeout = "its"
    """Whose timeout a run ran out of, for the message (``the task's``)."""

    @abstractmethod
    async def act(self) -> O:
        """Do the run's work once. Cancelled (timeout, cancel), it cleans up before it returns.

        Raises:
            ServiceError: the work cannot be done as asked (the run fails with the message).
        """

    @abstractmethod
    def start_rows(self) -> tuple[dict[str, Any], dict[str, Any] | None]:
        """The run's row as it starts (``running``) and its job row (None: no job)."""

    def end_changes(self, state: RunState, outcome: O | None) -> dict[str, Any]:
        """The domain's columns of the final row, besides status, end time, error and logs."""
        return {}

    def event(self, name: str, state: RunState, outcome: O | None) -> dict[str, Any]:
        """The payload published on :attr:`topic` when the run ``started`` or ``finished``."""
        return {"event": name, "runId": self.control.run_id, "status": self.words.wire(state).value}

    def failed(self, error: str) -> O:
        """The outcome of a run whose work did not get to answer one (a refusal, a bug)."""
        raise NotImplementedError(f"{type(self).__name__} must say how a failed {self.noun} ends")

    # ------------------------------------------------------------------ the kit's part

    def note_start(self) -> RunNote:
        """Note the ``running`` row and the job with the recorder (written in its next batch)."""
        row, job = self.start_rows()
        self.control.record = self.recorder.started({**row, "logs": self.log.text}, job)
        return self.control.record

    async def run(self) -> None:
        """Run the work and record how it ended; a bug of ours here is the supervisor's to log."""
        try:
            await self._run()
        finally:
            self.book.release(self.control)

    async def _run(self) -> None:
        self._publish("started", RunState.RUNNING, None)
        try:
            state, outcome = await self._act()
        except BaseException:
            # Cancelled from outside (the runtime stopping): note how it ended, then go.
            self._note_end(RunState.CANCELLED, self.failed("the runtime stopped while it ran"))
            raise
        self._note_end(state, outcome)
        await self._report(state, outcome)

    async def _act(self) -> tuple[RunState, O]:
        """Run the work under the timeout; never raises but for a cancellation from outside."""
        control = self.control
        outcome: O | None = None
        try:
            with trio.CancelScope() as scope:
                control.scope = scope
                if control.cancel_reason is not None:
                    scope.cancel()
                if self.timeout is not None:
                    scope.deadline = trio.current_time() + self.timeout
                outcome = await self.act()
        except ServiceError as exc:
            self.log(f"cannot run: {exc.message}")
            return RunState.FAILED, self.failed(exc.message)
        except Exception as exc:
            # A bug in the work: the run fails with it, the domain carries on.
            log.exception("%s %s of %s: the work raised", self.noun, control.run_id, control.owner_id)
            error = f"{self._what()} raised {type(exc).__name__}: {exc}"
            self.log(error)
            return RunState.FAILED, self.failed(error)
        finally:
            control.scope = None
        if outcome is None or scope.cancelled_caught:
            note = control.cancel_note
            if note is not None:
                self.log(f"cancelled: {note}")
                return RunState.CANCELLED, self.failed(note)
            error = f"the {self.noun} took longer than {self.whose_timeout} timeout of {self.timeout:g}s and was cancelled"
            self.log(error)
            return RunState.TIMEOUT, self.failed(error)
        return (RunState.SUCCEEDED if outcome.ok else RunState.FAILED), outcome

    def _what(self) -> str:
        return f"the {self.noun}'s work"

    def _note_end(self, state: RunState, outcome: O) -> None:
        """Note the final row and the job's end with the recorder."""
        control = self.control
        record = control.record
        assert record is not None, "noted when the run was started"
        self.end = self.now()
        self.error = error = outcome.error if state is not RunState.SUCCEEDED else None
        word = self.words.wire(state).value
        summary = f"{self.noun} {control.run_id} {word}" + (f": {error}" if error else "")
        changes = {
            **self.end_changes(state, outcome),
            self.recorder.runs.end: self.end,
            "status": state.value,
            self.recorder.runs.error: error,
            "logs": self.log.text,
        }
        details: dict[str, Any] = {"status": word}
        if control.cancelled_by is not None and state is RunState.CANCELLED:
            details["cancelledBy"] = control.cancelled_by
        self.recorder.finished(record, changes, job_log=summary[:4096], job_details=details)

    async def _report(self, state: RunState, outcome: O) -> None:
        """Once the end is written, log it and publish ``finished``."""
        control = self.control
        record = control.record
        assert record is not None, "noted when the run was started"
        await record.written.wait()
        word = self.words.wire(state).value
        if record.error is not None and not isinstance(record.error, NotFoundError):  # not: deleted meanwhile
            log.error("%s %s of %s ended %s but could not be recorded: %s", self.noun, control.run_id, control.owner_id, word, record.error)
        seconds = (self.end - self.start).total_seconds()
        log.info("%s %s of %s %s in %.3fs", self.noun, control.run_id, control.owner_id, word, seconds)
        self._publish("finished", state, outcome)

    def _publish(self, name: str, state: RunState, outcome: O | None) -> None:
        if self.topic is not None and self.bus.wants(self.topic):
            self.bus.publish(self.topic, self.event(name, state, outcome))


def release_memory() -> bool:
    """Give back to the system what a burst freed: collect the cycles the burst left (young
    collections are rare once the runtime is booted, decision 0008), then hand the C heap's free
    pages back (:func:`~vareon_runtime.runtime.return_free_memory`, glibc's ``malloc_trim``);
    Python's own arenas go back by themselves once empty.

    Returns:
        Whether the C heap could be trimmed (False where the C library has no ``malloc_trim``:
        musl, Android's bionic, macOS).
    """
    gc.collect()
    return return_free_memory()
