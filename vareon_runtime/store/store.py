"""The store: the single writer of the database, committing queued writes in groups.

Every write is a plain function ``fn(session) -> result`` that runs in the writer's worker
thread. The writer loop takes everything queued, runs the whole batch in one thread hop and one
transaction, commits once, and only then hands each caller its result: an acknowledged write is
durable. One commit (one fsync on SQLite) is shared by every write of the batch, which is what
makes many small durable writes cheap (group commit).

Reads run on their own pool of connections, beside the writer (SQLite's WAL allows this), and
are grouped the same way: each of ``read_pool_size`` reader loops takes every read queued while
it was busy and runs them in one thread hop and one read-only transaction. Under load a thread
hop (and a BEGIN, and a GIL hand-over) is paid once per batch instead of once per read.
ORM objects never leave the worker thread: a function returns plain data (a pydantic model, a
dict, a tuple of scalars).
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import outcome
import trio
from sqlalchemy.engine import MappingResult, Result, Row, RowMapping, ScalarResult
from sqlalchemy.exc import DBAPIError, OperationalError, SQLAlchemyError
from sqlalchemy.orm import Session

from vareon_runtime.checks import check_counts
from vareon_runtime.errors import StoreClosedError, StoreError, StoreUsageError, VareonError
from vareon_runtime.latency import STORE_BUCKETS, LatencyHistogram
from vareon_runtime.store.engine import Engines, create_engines
from vareon_runtime.store.lock import StoreLock
from vareon_runtime.store.models import Base

__all__ = ["Store"]

T = TypeVar("T")

logger = logging.getLogger("vareon.store")

# Lifecycle of a Store.
_NEW, _STARTING, _RUNNING, _CLOSING, _CLOSED = range(5)

# Lifecycle of one queued write or read.
_QUEUED, _IN_FLIGHT, _CANCELLED = range(3)

# How a batch is committed. The first pass runs every write and flushes once, at COMMIT: the
# unit of work then inserts the batch's rows together (three to four times cheaper per write
# than a flush after each one). If anything fails, that pass cannot tell whose fault it was (an
# autoflush inside write 7 may be flushing write 3's rows), so the batch is rolled back and run
# "carefully": a flush after every write pins a failure on the write that caused it; that write
# gets its error and the batch is re-run without it, still as one transaction, since the writes
# before it had just succeeded. Careful passes go on as long as each pins a failing write: a
# failed pass costs a rollback, not an fsync. Only when a careful pass cannot pin the failure
# (the COMMIT itself failed) is the rest re-run one write per transaction: doing that at the
# first failure would stall every writer for up to 512 fsyncs (seconds on an SD card) because of
# one caller's unique violation.

# Where a write transaction was when it failed, and what _transaction says when the database,
# not a write, is at fault: _UNREACHABLE (it could not begin, or broke at COMMIT, where whether
# it committed is unknown: never re-run) and _LOST (it broke before COMMIT: nothing committed).
_BEGIN, _WRITE, _COMMIT = range(3)
_UNREACHABLE, _LOST = -2, -3
_BROKE = "the connection to the database broke"
_BROKE_AT_COMMIT = (
    "the connection to the database broke during COMMIT, so whether it was committed is unknown"
)

# The most reads one reader loop runs in one hop: enough to amortise the hop, small enough that
# a batch never keeps a read snapshot open for long.
_READ_BATCH_MAX = 64


class _Job:
    """One queued write or read: the function, the waiting task, and, once done, its outcome."""

    __slots__ = ("fn", "outcome", "state", "task")

    def __init__(self, fn: Callable[[Session], Any], task: trio.lowlevel.Task) -> None:
        self.fn = fn
        self.task = task
        self.state = _QUEUED
        self.outcome: outcome.Outcome[Any] | None = None


class Store:
    """The single-writer store actor: group commit, acknowledge after commit, separate readers.

    Start it with ``store = await nursery.start(Store(url).run)``; stop it with
    ``await store.close()`` or by cancelling its nursery: both commit every write already
    queued before ``run()`` returns.

    Args:
        url: ``sqlite:///path/to/vareon.db`` or ``postgresql+psycopg://user@host/db``.
        sqlite_synchronous: ``"full"`` (an acknowledged write survives power loss) or
            ``"normal"`` (it survives a crash or ``kill -9`` of the process).
        write_batch_max: the most writes committed in one transaction.
        read_pool_size: reader connections, and so the most reads running at once.
        busy_timeout: seconds SQLite waits for a lock held by another process.
        migrate: apply the Alembic migrations before accepting work: the kernel's, every
            installed component's (``vareon.components``) and ``migrations``.
        migrations: packages of revisions to apply besides those (a component given to the
            runtime in code rather than installed).
    """

    def __init__(
        self,
        url: str,
        *,
        sqlite_synchronous: str = "full",
        write_batch_max: int = 512,
        read_pool_size: int = 4,
        busy_timeout: float = 5.0,
        migrate: bool = True,
        migrations: Sequence[str] = (),
    ) -> None:
        check_counts({"write_batch_max": write_batch_max, "read_pool_size": read_pool_size})
        self._url = url
        self._sqlite_synchronous = sqlite_synchronous
        self._write_batch_max = write_batch_max
        self._read_pool_size = read_pool_size
        self._busy_timeout = busy_timeout
        self._migrate = migrate
        self._migrations = tuple(migrations)
        self._engines: Engines | None = None
        self._lock: StoreLock | None = None
        self._state = _NEW
        self._queue: deque[_Job] = deque()
        self._cancelled_in_queue = 0
        self._wakeup = trio.Event()
        self._stopped = trio.Event()
        self._hop_started = False
        # Set once the reader loops have ended: a read queued after that would wait forever.
        self._readers_done = False
        # Created here rather than in run() so that read() can be called from any task once the
        # store runs; CapacityLimiter needs no running trio loop to be constructed.
        self._writer_limiter = trio.CapacityLimiter(1)
        self._read_limiter = trio.CapacityLimiter(read_pool_size)
        self._reads: deque[_Job] = deque()
        self._read_lot = trio.lowlevel.ParkingLot()
        self._stats = {
            "batches": 0,
            "transactions": 0,
            "committed": 0,
            "failed": 0,
            "cancelled": 0,
            "reads": 0,
            "read_batches": 0,
        }
        self.commit_latency = LatencyHistogram(STORE_BUCKETS)
        """Seconds each batch took from the writer taking it to its acknowledgement: the thread
        hop, the transaction and its COMMIT (its fsync); what ``GET /metrics`` shows."""

    @property
    def queue_depth(self) -> int:
        """Writes queued and not yet taken by the writer."""
        return len(self._queue) - self._cancelled_in_queue

    @property
    def threads_working(self) -> int:
        """Worker threads running for the store right now (the writer, readers, opening).

        Tests on trio's ``MockClock`` hold simulated time still while this is not 0, so that a
        write in flight is not overtaken by time it does not take (see the scheduler's tests).
        """
        return self._writer_limiter.borrowed_tokens + self._read_limiter.borrowed_tokens

    @property
    def stats(self) -> dict[str, int]:
        """Counters since start.

        ``batches`` groups taken from the queue, ``transactions`` transactions run (more than
        batches when failed writes forced re-runs), ``committed`` writes acknowledged as
        committed, ``failed`` writes whose caller got an error, ``cancelled`` writes dropped
        from the queue because their caller was cancelled before the writer took them,
        ``reads`` reads finished, ``read_batches`` thread hops they took.
        """
        return dict(self._stats)

    async def run(self, *, task_status: trio.TaskStatus[Store] = trio.TASK_STATUS_IGNORED) -> None:
        """Open the database, apply migrations, then commit queued writes until closed.

        Returns after ``close()``; when cancelled, it still commits every write already queued
        (shielded) and then re-raises the cancellation.

        Raises:
            StoreError: the database could not be opened or migrated.
            StoreUsageError: ``run()`` was called a second time.
        """
        if self._state != _NEW:
            raise StoreUsageError(
                "Store.run() was called twice; a Store runs once, create a new one"
            )
        self._state = _STARTING
        try:
            engines = await trio.to_thread.run_sync(self._open, limiter=self._writer_limiter)
        except BaseException:
            self._state = _CLOSED
            self._stopped.set()
            raise
        self._engines = engines
        if self._state == _STARTING:  # close() may have come while we were opening
            self._state = _RUNNING
        logger.info("store ready: %s", engines.writer.url.render_as_string(hide_password=True))
        task_status.started(self)
        try:
            async with trio.open_nursery() as readers:
                for _ in range(self._read_pool_size):
                    readers.start_soon(self._reader_loop)
                try:
                    await self._writer_loop()
                finally:
                    if self._state == _RUNNING:
                        self._state = _CLOSING
                    with trio.CancelScope(shield=True):
                        # Flush: the loop drains the queue and returns, since no write can join.
                        await self._writer_loop()
                    # Reads queued by now still run; then the reader loops end.
                    readers.cancel_scope.cancel()
        finally:
            self._readers_done = True
            with trio.CancelScope(shield=True):
                self._fail_queued("the store stopped before this write was committed")
                self._fail_reads("the store stopped before this read ran")
                await trio.to_thread.run_sync(self._dispose, engines)
                self._state = _CLOSED
                self._stopped.set()
                logger.info("store closed: %s", self._stats)

    async def write(self, fn: Callable[[Session], T]) -> T:
        """Run ``fn(session)`` in the writer's transaction; return its result once committed.

        ``fn`` runs in the writer thread, batched with other writes in one transaction. It may
        run more than once (a batch is re-run without a write that failed), so it must do
        nothing but database work on ``session``. Its result must be plain data.

        Cancelling the caller before the writer took the write drops it; once taken, the write's
        outcome is awaited (the caller learns whether it committed) and the cancellation is
        delivered at the caller's next checkpoint.

        Raises:
            StoreClosedError: the store is not running (closed, or not started yet).
            StoreError: the database refused the write (the SQLAlchemy error is the cause).
            StoreUsageError: ``fn`` returned an ORM object (the write was rolled back).
            VareonError: whatever ``fn`` raised, unchanged; so is any other exception of
                ``fn`` (a bug in it). Either way nothing of ``fn`` was committed.
        """
        if self._state != _RUNNING:
            raise StoreClosedError(self._not_running("write"))
        slot = _Job(fn, trio.lowlevel.current_task())
        self._queue.append(slot)
        self._wakeup.set()

        def abort(raise_cancel: Any) -> trio.lowlevel.Abort:
            if slot.state == _QUEUED:
                slot.state = _CANCELLED
                self._cancelled_in_queue += 1
                return trio.lowlevel.Abort.SUCCEEDED
            # In flight: its commit is under way; keep waiting so the caller learns the outcome.
            return trio.lowlevel.Abort.FAILED

        result: T = await trio.lowlevel.wait_task_rescheduled(abort)
        return result

    async def read(self, fn: Callable[[Session], T]) -> T:
        """Run ``fn(session)`` on a reader connection in a worker thread; return its result.

        The readers see every acknowledged write. A read cannot write (the connection is
        read-only), and its result must be plain data.

        Raises:
            StoreClosedError: the store is not running.
            StoreError: the database failed the read (the SQLAlchemy error is the cause).
            StoreUsageError: ``fn`` returned an ORM object.
        """
        if self._state not in (_RUNNING, _CLOSING) or self._readers_done:
            raise StoreClosedError(self._not_running("read"))
        slot = _Job(fn, trio.lowlevel.current_task())
        self._reads.append(slot)
        self._read_lot.unpark()

        def abort(raise_cancel: Any) -> trio.lowlevel.Abort:
            if slot.state == _QUEUED:
                slot.state = _CANCELLED
                return trio.lowlevel.Abort.SUCCEEDED
            return trio.lowlevel.Abort.FAILED  # running in a batch: wait for it

        result: T = await trio.lowlevel.wait_task_rescheduled(abort)
        return result

    async def close(self) -> None:
        """Stop accepting writes, commit the writes already queued, wait for ``run()`` to end."""
        if self._state == _NEW:
            self._state = _CLOSED
            self._stopped.set()
            return
        if self._state in (_STARTING, _RUNNING):
            self._state = _CLOSING
            self._wakeup.set()
        await self._stopped.wait()

    # -- trio side ------------------------------------------------------------------------

    async def _writer_loop(self) -> None:
        """Commit batches until the queue is empty and the store is closing."""
        queue = self._queue
        while True:
            if not queue:
                if self._state != _RUNNING:
                    return
                self._wakeup = trio.Event()
                await self._wakeup.wait()
                continue
            batch = self._take_batch()
            if not batch:
                continue
            self._hop_started = False
            taken = trio.current_time()
            try:
                transactions = await trio.to_thread.run_sync(
                    self._commit, batch, limiter=self._writer_limiter
                )
            except BaseException as exc:
                if not self._hop_started:
                    # Cancelled before the thread started: nothing ran, the flush will.
                    for slot in reversed(batch):
                        slot.state = _QUEUED
                        queue.appendleft(slot)
                else:
                    for slot in batch:
                        if slot.outcome is None:
                            error = StoreError(f"the store's writer failed: {exc!r}")
                            error.__cause__ = exc
                            slot.outcome = outcome.Error(error)
                    self._acknowledge(batch, 0)
                raise
            self._acknowledge(batch, transactions)
            self.commit_latency.observe(trio.current_time() - taken)

    async def _reader_loop(self) -> None:
        """Run queued reads in batches, one thread hop per batch, until cancelled."""
        reads = self._reads
        while True:
            if not reads:
                await self._read_lot.park()
                continue
            batch: list[_Job] = []
            while reads and len(batch) < _READ_BATCH_MAX:
                slot = reads.popleft()
                if slot.state == _CANCELLED:
                    continue
                slot.state = _IN_FLIGHT
                batch.append(slot)
            if not batch:
                continue
            try:
                await trio.to_thread.run_sync(self._read_batch, batch, limiter=self._read_limiter)
            finally:
                # A batch is never abandoned mid-hop (the thread is waited for), so each slot
                # has its outcome; one cancelled before the hop started gets StoreClosedError.
                for slot in batch:
                    result = slot.outcome or outcome.Error(StoreClosedError("the store stopped before this read ran"))
                    trio.lowlevel.reschedule(slot.task, result)
                self._stats["reads"] += len(batch)
                self._stats["read_batches"] += 1

    def _fail_reads(self, message: str) -> None:
        while self._reads:
            slot = self._reads.popleft()
            if slot.state != _CANCELLED:
                trio.lowlevel.reschedule(slot.task, outcome.Error(StoreClosedError(message)))

    def _take_batch(self) -> list[_Job]:
        queue = self._queue
        batch: list[_Job] = []
        limit = self._write_batch_max
        while queue and len(batch) < limit:
            slot = queue.popleft()
            if slot.state == _CANCELLED:
                self._cancelled_in_queue -= 1
                self._stats["cancelled"] += 1
                continue
            slot.state = _IN_FLIGHT
            batch.append(slot)
        return batch

    def _acknowledge(self, batch: list[_Job], transactions: int) -> None:
        stats = self._stats
        stats["batches"] += 1
        stats["transactions"] += transactions
        reschedule = trio.lowlevel.reschedule
        failed = 0
        for slot in batch:
            result = slot.outcome
            assert result is not None, "the writer thread decides every write's outcome"
            if type(result) is outcome.Error:
                failed += 1
            reschedule(slot.task, result)
        stats["failed"] += failed
        stats["committed"] += len(batch) - failed

    def _fail_queued(self, message: str) -> None:
        while self._queue:
            slot = self._queue.popleft()
            if slot.state == _CANCELLED:
                self._cancelled_in_queue -= 1
                continue
            self._stats["failed"] += 1
            # One exception object per caller: each raise writes its own traceback into it.
            trio.lowlevel.reschedule(slot.task, outcome.Error(StoreClosedError(message)))

    def _not_running(self, what: str) -> str:
        if self._state in (_NEW, _STARTING):
            return (
                f"cannot {what}: the store is not started; "
                "use `await nursery.start(store.run)` first"
            )
        return f"cannot {what}: the store is closed"

    # -- worker threads -------------------------------------------------------------------

    def _open(self) -> Engines:
        """Create the engines, hold the database shared, apply the migrations (writer thread)."""
        engines = create_engines(
            self._url,
            sqlite_synchronous=self._sqlite_synchronous,
            read_pool_size=self._read_pool_size,
            busy_timeout=self._busy_timeout,
        )
        lock = self._lock = StoreLock(self._url)
        try:
            # Held until the store closes: `vareon db copy` refuses to move a database a store
            # has open, and a store refuses to open one a copy is moving.
            lock.hold_shared(wait=self._busy_timeout)
            if self._migrate:
                from vareon_runtime.store.migrate import migrate

                migrate(engines.writer, self._migrations)
            else:
                # Fail at start, not at the first write, when the database is unreachable.
                try:
                    with engines.writer.connect():
                        pass
                except SQLAlchemyError as exc:
                    raise StoreError(f"cannot open the database: {exc}") from exc
        except BaseException:
            engines.dispose()
            lock.release()
            raise
        return engines

    def _dispose(self, engines: Engines) -> None:
        """Close the engines' connections and let go of the database (a worker thread)."""
        engines.dispose()
        if self._lock is not None:
            self._lock.release()

    def _commit(self, batch: list[_Job]) -> int:
        """Commit ``batch``, deciding every write's outcome (writer thread).

        Returns:
            The number of transactions it took (1 unless a write failed).
        """
        self._hop_started = True
        pending = batch
        careful = False
        retried = False
        transactions = 0
        # Ends: after the first pass every pass is careful, and each either commits, pins a
        # write (pending shrinks) or cannot pin the failure (break); a database that cannot be
        # reached ends it at once, after one retry when the connection broke mid-transaction.
        while True:
            transactions += 1
            failed_at = self._transaction(pending, careful=careful)
            if failed_at is None:
                return transactions
            if failed_at == _LOST and not retried:
                # Nothing of the batch was committed (the connection broke before COMMIT); the
                # pool reconnects, so a server that restarted takes the batch on the next try.
                retried = True
                logger.warning(
                    "the database connection broke during a batch of %d writes; retrying it once", len(pending)
                )
                continue
            if failed_at in (_LOST, _UNREACHABLE):
                return transactions  # every write has the error: no re-run can pin it on one
            if failed_at >= 0:
                pending = pending[:failed_at] + pending[failed_at + 1 :]
                if not pending:
                    return transactions
            elif careful:
                break
            careful = True
        logger.debug("re-running %d writes one per transaction", len(pending))
        for position, slot in enumerate(pending):
            transactions += 1
            if self._transaction([slot], careful=True) in (_LOST, _UNREACHABLE):
                for rest in pending[position + 1 :]:
                    rest.outcome = slot.outcome
                break
        return transactions

    def _transaction(self, slots: list[_Job], *, careful: bool) -> int | None:
        """Run ``slots`` in one transaction (writer thread).

        Args:
            careful: flush after every write, so that a failure is pinned on its write.

        Returns:
            None when all committed (each slot's outcome is its result); the index of the write
            that failed (its outcome is the error, the others are undecided); -1 when the
            failure cannot be pinned on one write (every outcome is set to the error, which
            stands only if no later pass decides otherwise); ``_UNREACHABLE`` when the
            transaction could not begin (the server is down, or SQLite stayed locked past
            ``busy_timeout``) or the connection broke at COMMIT, and ``_LOST`` when it broke
            before COMMIT: every outcome is set to the error.
        """
        assert self._engines is not None
        results: list[Any] = []
        index = -1
        phase = _BEGIN
        try:
            with Session(self._engines.writer, expire_on_commit=False) as session:
                # Begin now, so a lock timeout or a lost connection is not blamed on a write.
                session.connection()
                phase = _WRITE
                for index, slot in enumerate(slots):
                    result = slot.fn(session)
                    if careful:
                        session.flush()
                    _check_result(result, slot.fn)
                    results.append(result)
                index = -1
                phase = _COMMIT
                session.commit()
        except Exception as exc:
            unavailable = _unavailable(exc, phase)
            if unavailable is not None:
                logger.warning("%d writes refused: %s", len(slots), unavailable)
                for slot in slots:
                    slot.outcome = outcome.Error(_translate(exc, "write", slot.fn, unavailable))
                return _LOST if phase == _WRITE else _UNREACHABLE
            if len(slots) == 1:
                index = 0
            elif not careful and index > 0:
                # Earlier writes may still have had unflushed rows: whose fault is unknown.
                index = -1
            if index >= 0:
                slot = slots[index]
                slot.outcome = outcome.Error(_translate(exc, "write", slot.fn))
                logger.debug("write %s failed (batch of %d): %r", _name(slot.fn), len(slots), exc)
                return index
            if careful:
                logger.warning("a transaction of %d writes failed: %r", len(slots), exc)
            for slot in slots:
                slot.outcome = outcome.Error(_translate(exc, "commit", None))
            return -1
        for slot, result in zip(slots, results, strict=True):
            slot.outcome = outcome.Value(result)
        return None

    def _read_batch(self, batch: list[_Job]) -> None:
        """Run a batch of reads in one read-only transaction, deciding each outcome (reader thread).

        The reads share a snapshot; each starts with an empty identity map, and a failed read
        rolls the transaction back so the next one starts clean (PostgreSQL refuses statements
        in a failed transaction).
        """
        assert self._engines is not None
        with Session(self._engines.reader) as session:
            for slot in batch:
                for attempt in (1, 2):
                    try:
                        result = slot.fn(session)
                        _check_result(result, slot.fn)
                    except Exception as exc:
                        session.rollback()
                        unavailable = _unavailable(exc, _WRITE)
                        if unavailable == _BROKE and attempt == 1:
                            continue  # a read is safe to run again: once, on a new connection
                        slot.outcome = outcome.Error(_translate(exc, "read", slot.fn, unavailable))
                    else:
                        slot.outcome = outcome.Value(result)
                    break
                session.expunge_all()


def _name(fn: Callable[..., Any]) -> str:
    return getattr(fn, "__qualname__", None) or repr(fn)


def _unavailable(exc: Exception, phase: int) -> str | None:
    """Why no write of the transaction could succeed now, or None when a write may be at fault.

    The transaction could not begin (the server is down or refuses connections, SQLite stayed
    locked past ``busy_timeout``), or its connection broke (a server restart, a network cut):
    the pool replaces a broken connection, so the next transaction reconnects by itself.
    """
    if not isinstance(exc, DBAPIError):
        return None
    if exc.connection_invalidated:
        return _BROKE_AT_COMMIT if phase == _COMMIT else _BROKE
    if phase == _BEGIN and isinstance(exc, OperationalError):
        return "no transaction could begin: the database is unreachable, or locked past busy_timeout"
    return None


def _translate(
    exc: Exception, what: str, fn: Callable[..., Any] | None, unavailable: str | None = None
) -> Exception:
    """Map an exception from the worker thread to what the caller gets."""
    if isinstance(exc, VareonError) or not isinstance(exc, SQLAlchemyError):
        # Our own refusals pass through; anything else is a bug in fn, which its author
        # should see as it is.
        return exc
    if isinstance(exc, DBAPIError) and exc.orig is not None:
        detail = f"{type(exc.orig).__name__}: {exc.orig}"
    else:
        detail = f"{type(exc).__name__}: {exc}"
    where = f"{what} {_name(fn)}" if fn is not None else what
    if unavailable is not None:
        message = f"the {where} was not done ({unavailable}): {detail}"
    else:
        message = f"the database refused the {where}: {detail}"
    error = StoreError(message)
    error.__cause__ = exc
    return error


def _check_result(result: Any, fn: Callable[..., Any]) -> None:
    """Raise StoreUsageError if ``result`` is or holds an ORM object or a live Result."""
    found = _find_leak(result)
    if found is not None:
        raise StoreUsageError(
            f"{_name(fn)} returned {type(found).__name__} object {found!r}"
            f"{'' if found is result else ' inside its result'}; ORM objects and results must not "
            "leave the store's worker thread: convert to a pydantic model or a dict inside the "
            "function (for a Result, call .all() or .scalars().all() there)"
        )


_ATOMS = (str, int, float, bytes, type(None))
_LIVE = (Base, Result, ScalarResult, MappingResult)


def _find_leak(value: Any) -> Any:
    if isinstance(value, _ATOMS):
        return None
    if isinstance(value, _LIVE):
        return value
    if isinstance(value, (dict, RowMapping)):
        for key, item in value.items():
            found = _find_leak(key)
            if found is None:
                found = _find_leak(item)
            if found is not None:
                return found
    elif isinstance(value, (list, tuple, set, frozenset, Row)):
        for item in value:
            found = _find_leak(item)
            if found is not None:
                return found
    return None
