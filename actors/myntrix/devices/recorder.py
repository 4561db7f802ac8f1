"""The telemetry recorder: samples from the bus into the ``telemetry`` table, in batches.

:class:`TelemetryRecorder` subscribes to ``telemetry.*``: devices publish on
``telemetry.device.<id>`` (see :class:`~actors.myntrix.devices.telemetry.DeviceStream`), and any
other source may publish on ``telemetry.<source>.<id>`` with the same ``{"time", "samples"}``
shape; the topic's second segment becomes the row's ``source``. Events without samples (log
lines, command echoes) are not recorded.

Why it is shaped this way:

- **One write per batch.** Samples wait in memory until ``flush_interval`` seconds have passed
  since the first of them, or ``batch_max`` are waiting; then one store write inserts them (at
  most ``batch_max``, so no transaction holds the single writer for long) with one
  ``executemany`` of row tuples (the timestamp converted once per event by its column
  type). The store's group commit then shares one commit between that write and whatever else is
  queued.
- **Receiving never waits for the database.** One task moves events from the bus subscription to
  the buffer while another writes; a write in flight holds up neither the bus nor the devices.
- **Memory is bounded, losses are counted, never silent.** The recorder keeps taking events
  even when the database falls behind, and holds ``max_pending`` samples at most: past that it
  sheds the oldest waiting events (``shed_samples``). It keeps taking rather than letting the bus
  queue fill because that queue is bounded in events, and one event of a fast device carries
  thousands of samples. Should the bus still drop events for it (``queue_size``, when the event
  loop could not run the recorder), an :class:`~vareon_runtime.bus.Overflow` says how many:
  ``lost_events``. Both are logged, at most every :data:`LOSS_LOG_INTERVAL` seconds. A write that
  fails is retried with the next flush, at most :data:`WRITE_ATTEMPTS` times, then dropped and
  counted in ``dropped_samples``. Samples that cannot be a row (a name that is not a string or too
  long, a value that is not a finite number) count in ``rejected_samples``. :attr:`stats` has it all.
- **Nothing held is lost on a clean stop**: stopping drains the subscription and writes what it
  holds (within the actor's ``stop_timeout``).
- **Old rows go in small batches**: every ``prune_interval`` seconds the rows older than
  ``keep_days`` are deleted ``prune_batch`` at a time, one store write each, so a large prune
  never holds the single writer for long (flushes are committed between its batches).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

import trio
from sqlalchemy import Dialect, delete, select
from sqlalchemy.orm import Session

from vareon_runtime.actor import Actor
from vareon_runtime.bus import Event, EventBus, Overflow, Subscription
from vareon_runtime.checks import check_counts, check_seconds
from vareon_runtime.clock import utcnow
from vareon_runtime.errors import StoreError
from vareon_runtime.store import Store, TelemetryRecord

from .telemetry import MAX_METRIC_NAME

__all__ = ["LOSS_LOG_INTERVAL", "TELEMETRY_PATTERN", "WRITE_ATTEMPTS", "TelemetryRecorder"]

log = logging.getLogger("vareon.devices.recorder")

TELEMETRY_PATTERN = "telemetry.*"
"""The bus pattern the recorder subscribes to."""

WRITE_ATTEMPTS = 3
"""Writes of one batch before its samples are dropped (and counted)."""

LOSS_LOG_INTERVAL = 10.0
"""Seconds between two warnings about lost events (the count is summed in between)."""

_RETRY_PAUSE_MAX = 5.0

# One buffered event: (time, source, device id, samples).
_Pending = tuple[datetime, str, "str | None", list[Any]]

_TABLE = TelemetryRecord.__table__


_COLUMNS = ("timestamp", "source", "device_id", "metric_name", "value")
_MARKERS = {"qmark": "?", "format": "%s", "pyformat": "%s"}


def _insert_sql(dialect: Dialect) -> str:
    """``INSERT INTO telemetry (...) VALUES (?, ...)`` in the driver's own parameter style.

    Raises:
        StoreError: a driver whose parameter style this does not speak (neither SQLite nor psycopg).
    """
    marker = _MARKERS.get(dialect.paramstyle)
    if marker is None:
        raise StoreError(
            f"the telemetry recorder cannot write through a driver with the {dialect.paramstyle!r}"
            f" parameter style; use SQLite or PostgreSQL (psycopg)"
        )
    quote = dialect.identifier_preparer
    columns = ", ".join(quote.format_column(_TABLE.c[name]) for name in _COLUMNS)
    return f"INSERT INTO {quote.format_table(_TABLE)} ({columns}) VALUES ({', '.join([marker] * len(_COLUMNS))})"


def _insert(batch: list[_Pending]) -> Callable[[Session], tuple[int, int]]:
    """A store write inserting the samples of ``batch``; it returns (rows written, rejected).

    The rows go to the driver's ``executemany`` as tuples (``exec_driver_sql``), with the
    timestamp converted once per event by the column's own type (what SQLAlchemy would do per
    row): at tens of thousands of rows a second, SQLAlchemy's per-row parameter processing cost
    more than SQLite itself (measured: 141k rows/s this way, about 65k with ``insert()`` over dicts).
    """

    def write(session: Session) -> tuple[int, int]:
        connection = session.connection()
        dialect = connection.dialect
        stamp = _TABLE.c.timestamp.type.bind_processor(dialect)
        rows: list[tuple[Any, str, str | None, str, float]] = []
        append = rows.append
        rejected = 0
        isfinite = math.isfinite
        for time, source, device_id, samples in batch:
            stored = stamp(time) if stamp is not None else time
            for sample in samples:
                try:
                    metric = sample["metric"]
                    value = sample["value"]
                except (TypeError, KeyError):
                    rejected += 1
                    continue
                kind = type(value)
                if kind is not float:
                    if kind is not int:
                        rejected += 1
                        continue
                    value = float(value)
                if type(metric) is not str or len(metric) > MAX_METRIC_NAME or not isfinite(value):
                    rejected += 1
                    continue
                append((stored, source, device_id, metric, value))
        if rows:
            connection.exec_driver_sql(_insert_sql(dialect), rows)
        return len(rows), rejected

    return write


def _prune(cutoff: datetime, limit: int) -> Callable[[Session], int]:
    """A store write deleting at most ``limit`` rows older than ``cutoff``; returns how many."""

    def write(session: Session) -> int:
        oldest = select(TelemetryRecord.id).where(TelemetryRecord.timestamp < cutoff).limit(limit)
        result = session.execute(delete(TelemetryRecord).where(TelemetryRecord.id.in_(oldest)))
        return int(result.rowcount or 0)  # type: ignore[attr-defined]

    return write


class TelemetryRecorder(Actor):
    """Write the samples published on ``telemetry.*`` to the ``telemetry`` table in batches.

    Start it with ``await nursery.start(recorder.run)``; stop it by cancelling that nursery or
    with :meth:`stop`: either way it writes what it holds first.

    Args:
        store: the runtime's store.
        bus: the runtime's event bus.
        flush_interval: seconds a sample waits in memory, at most, before it is written
            (``[myntrix] telemetry_flush_interval``).
        keep_days: days of samples kept; older rows are pruned. 0 keeps everything
            (``[myntrix] telemetry_keep_days``).
        batch_max: samples that make a write at once, without waiting for the interval, and the
            most one write takes.
        max_pending: samples held in memory at most while the database is behind (about 250
            bytes each); past it the oldest are shed.
        queue_size: events the bus subscription holds before it drops the oldest.
        prune_interval: seconds between two prunes (the first runs right after start).
        prune_batch: rows deleted by one write of a prune.

    Raises:
        ValueError: a number out of range (the message names it).
    """

    def __init__(
        self,
        store: Store,
        bus: EventBus,
        *,
        flush_interval: float,
        keep_days: float,
        batch_max: int = 2000,
        max_pending: int = 50_000,
        queue_size: int = 1024,
        prune_interval: float = 600.0,
        prune_batch: int = 5000,
    ) -> None:
        super().__init__()
        check_seconds({"flush_interval": flush_interval, "prune_interval": prune_interval})
        if not keep_days >= 0:
            raise ValueError(f"keep_days must be 0 (keep everything) or more, not {keep_days!r}")
        check_counts({"batch_max": batch_max, "queue_size": queue_size, "prune_batch": prune_batch})
        if max_pending < batch_max:
            raise ValueError(f"max_pending ({max_pending}) must be at least batch_max ({batch_max})")
        self.name = "telemetry-recorder"
        self.store = store
        self.bus = bus
        self.flush_interval = flush_interval
        self.keep_days = keep_days
        self.batch_max = batch_max
        self.max_pending = max_pending
        self.queue_size = queue_size
        self.prune_interval = prune_interval
        self.prune_batch = prune_batch
        self._subscription: Subscription | None = None
        self._buffer: list[_Pending] = []
        self._pending = 0  # samples in _buffer
        self._attempts = 0  # failed writes of the samples at the front of _buffer
        self._first_at: float | None = None  # trio time the oldest waiting sample came
        self._arrived = trio.Event()  # the buffer got its first sample
        self._full = trio.Event()  # the buffer reached batch_max
        self._unlogged_samples = 0
        self._unlogged_events = 0
        self._last_loss_log = -math.inf
        self._stats = {
            "events": 0,
            "samples": 0,
            "written": 0,
            "flushes": 0,
            "lost_events": 0,
            "shed_samples": 0,
            "dropped_samples": 0,
            "rejected_samples": 0,
            "write_failures": 0,
            "pruned": 0,
        }

    @property
    def stats(self) -> dict[str, int]:
        """Counters since start.

        ``events`` telemetry events taken from the bus, ``samples`` samples they carried,
        ``written`` rows committed, ``flushes`` writes that committed, ``shed_samples`` samples
        given up because ``max_pending`` were already waiting for the database, ``lost_events``
        events the bus dropped before the recorder took them, ``dropped_samples`` samples given up
        after :data:`WRITE_ATTEMPTS` failed writes (or at stop), ``rejected_samples`` samples
        that could not be a row, ``write_failures`` failed writes, ``pruned`` rows deleted as too
        old, ``pending`` samples waiting in memory now.
        """
        return {**self._stats, "pending": self._pending}

    async def on_start(self) -> None:
        self._subscription = self.bus.subscribe(TELEMETRY_PATTERN, queue_size=self.queue_size)
        self.nursery.start_soon(self._collect)
        self.nursery.start_soon(self._flush_loop)
        if self.keep_days > 0:
            self.nursery.start_soon(self._prune_loop)

    async def on_stop(self) -> None:
        subscription = self._subscription
        if subscription is None:
            return
        self._subscription = None
        # Whatever the bus still holds for us, then one last write.
        while True:
            try:
                self._take(subscription.receive_nowait())
            except (trio.WouldBlock, trio.ClosedResourceError):
                break
        subscription.close()
        self._log_losses(force=True)
        if not self._buffer:
            return
        try:
            while self._buffer:
                self._attempts = WRITE_ATTEMPTS - 1  # one last try: nobody will retry after this
                if not await self.flush():
                    break
        finally:
            if self._pending:  # the stop timeout cut the last write short
                self._stats["dropped_samples"] += self._pending
                log.error("telemetry recorder: %d samples not written before the stop timeout", self._pending)
                self._buffer, self._pending = [], 0

    # -- receiving ------------------------------------------------------------------------------

    def _take(self, item: Event | Overflow) -> None:
        if type(item) is Overflow:
            self._stats["lost_events"] += item.dropped
            self._unlogged_events += item.dropped
            self._log_losses()
            return
        assert isinstance(item, Event)
        data = item.data
        if type(data) is not dict:
            return
        samples = data.get("samples")
        if not samples or type(samples) is not list:
            return
        time = data.get("time")
        if type(time) is not datetime or time.tzinfo is None:
            time = item.time
        parts = item.topic.split(".", 3)
        source = parts[1][:32] if len(parts) > 2 else "unknown"
        device_id = data.get("deviceId") if source == "device" else None
        if device_id is not None and (type(device_id) is not str or len(device_id) > 36):
            device_id = None
        self._stats["events"] += 1
        self._stats["samples"] += len(samples)
        if not self._buffer:
            self._first_at = trio.current_time()
            self._arrived.set()
        self._buffer.append((time, source, device_id, samples))
        self._pending += len(samples)
        if self._pending >= self.batch_max:
            self._full.set()
            if self._pending > self.max_pending:
                self._shed()

    def _shed(self) -> None:
        """Drop the oldest waiting events until at most ``max_pending`` samples wait."""
        buffer = self._buffer
        shed = 0
        while self._pending > self.max_pending and len(buffer) > 1:
            count = len(buffer.pop(0)[3])
            self._pending -= count
            shed += count
        self._stats["shed_samples"] += shed
        self._unlogged_samples += shed
        self._log_losses()

    async def _collect(self) -> None:
        subscription = self._subscription
        assert subscription is not None, "on_start subscribes before collecting"
        while True:
            try:
                self._take(await subscription.receive())
                # Everything already queued, without a checkpoint per event.
                while True:
                    self._take(subscription.receive_nowait())
            except trio.WouldBlock:
                continue
            except trio.ClosedResourceError:
                return

    def _log_losses(self, *, force: bool = False) -> None:
        if not (self._unlogged_samples or self._unlogged_events):
            return
        now = trio.current_time()
        if not force and now - self._last_loss_log < LOSS_LOG_INTERVAL:
            return
        log.warning(
            "telemetry recorder: %d samples shed and %d events lost since the last report (%d and"
            " %d in all): the database does not keep up with the devices' telemetry (a slow disk?);"
            " lower the devices' reporting rate",
            self._unlogged_samples,
            self._unlogged_events,
            self._stats["shed_samples"],
            self._stats["lost_events"],
        )
        self._unlogged_samples = self._unlogged_events = 0
        self._last_loss_log = now

    # -- writing ------------------------------------------------------------------------------

    async def _flush_loop(self) -> None:
        failures = 0
        while True:
            if not self._buffer:
                self._arrived = trio.Event()
                await self._arrived.wait()
            if self._pending < self.batch_max:
                assert self._first_at is not None
                self._full = trio.Event()
                with trio.move_on_at(self._first_at + self.flush_interval):
                    await self._full.wait()
            if await self.flush():
                failures = 0
            else:
                failures += 1
                await trio.sleep(min(self.flush_interval * 2**failures, _RETRY_PAUSE_MAX))

    async def flush(self) -> bool:
        """Write the oldest waiting samples, ``batch_max`` at most, in one store write now.

        The cap keeps each transaction short: the store has one writer, and a recorder that fell
        behind must not hold it (nor the GIL) for seconds with one huge insert.

        Returns:
            False when the write failed (the samples wait for the next flush, or are dropped
            and counted after :data:`WRITE_ATTEMPTS` failures); True otherwise.
        """
        batch, count = self._take_batch()
        if not batch:
            return True
        try:
            written, rejected = await self.store.write(_insert(batch))
        except StoreError as exc:
            self._stats["write_failures"] += 1
            self._attempts += 1
            if self._attempts >= WRITE_ATTEMPTS:
                self._attempts = 0
                self._stats["dropped_samples"] += count
                log.error("telemetry recorder: %d samples dropped after %d failed writes: %s", count, WRITE_ATTEMPTS, exc)
            else:
                self._put_back(batch, count)
                log.warning("telemetry recorder: writing %d samples failed (will retry): %s", count, exc)
            return False
        except BaseException:
            # Cancelled before the writer took it: nothing was committed; on_stop writes it.
            self._put_back(batch, count)
            raise
        self._attempts = 0
        self._stats["flushes"] += 1
        self._stats["written"] += written
        self._stats["rejected_samples"] += rejected
        return True

    def _take_batch(self) -> tuple[list[_Pending], int]:
        """Remove and return the oldest ``batch_max`` samples (whole events, the last one cut)."""
        buffer, limit = self._buffer, self.batch_max
        if self._pending <= limit:
            batch, count = buffer, self._pending
            self._buffer, self._pending, self._first_at = [], 0, None
            return batch, count
        taken = 0
        index = 0
        while taken < limit:
            time, source, device_id, samples = buffer[index]
            room = limit - taken
            if len(samples) > room:
                buffer[index] = (time, source, device_id, samples[room:])
                buffer.insert(index, (time, source, device_id, samples[:room]))
            taken += len(buffer[index][3])
            index += 1
        batch = buffer[:index]
        del buffer[:index]
        self._pending -= taken
        return batch, taken

    def _put_back(self, batch: list[_Pending], count: int) -> None:
        self._buffer[:0] = batch
        self._pending += count
        if self._first_at is None:
            self._first_at = trio.current_time()

    # -- pruning ------------------------------------------------------------------------------

    async def _prune_loop(self) -> None:
        while True:
            try:
                await self.prune()
            except StoreError as exc:
                log.warning("telemetry recorder: pruning old samples failed (retried in %gs): %s", self.prune_interval, exc)
            await trio.sleep(self.prune_interval)

    async def prune(self, *, now: datetime | None = None) -> int:
        """Delete the rows older than ``keep_days``, ``prune_batch`` per write; return how many.

        Args:
            now: the moment ages are counted from (``utcnow()`` when omitted).

        Raises:
            StoreError: a delete failed (the rows deleted before it stay deleted).
        """
        if self.keep_days <= 0:
            return 0
        cutoff = (now or utcnow()) - timedelta(days=self.keep_days)
        total = 0
        while True:
            deleted = await self.store.write(_prune(cutoff, self.prune_batch))
            total += deleted
            self._stats["pruned"] += deleted
            if deleted < self.prune_batch:
                break
        if total:
            log.info("telemetry recorder: pruned %d samples older than %s", total, cutoff.isoformat())
        return total
