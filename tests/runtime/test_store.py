"""The store: group commit, acknowledge after commit, separate readers, migrations."""

from __future__ import annotations

import threading
import types
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest
import trio
import trio.testing
from sqlalchemy import event, func, inspect, select, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

import vareon_runtime.auth.models  # noqa: F401  (the kernel's auth tables belong to Base.metadata)
import vareon_runtime.store as store_package
from vareon_runtime.errors import NotFoundError, StoreClosedError, StoreError, StoreUsageError
from vareon_runtime.store import Base, EventRecord, Store
from vareon_runtime.store.engine import Engines

TIMEOUT = 30

# The newest revision of the kernel's migration branch.
KERNEL_HEAD = "0004_users_token_epoch"


def at_every_head(current: set[str]) -> bool:
    """Whether a database whose ``alembic_version`` holds ``current`` has every installed branch
    (the kernel's and the components') up to its head. A head another branch depends on (the
    kit's revisions depend on ``0002_myntrix_jobs``) is applied without being listed."""
    from alembic.script import ScriptDirectory

    from vareon_runtime.store.migrate import alembic_config

    script = ScriptDirectory.from_config(alembic_config())
    applied = {revision.revision for revision in script.revision_map.iterate_revisions(tuple(current), "base")}
    return set(script.get_heads()) <= applied


def modelled(obj: Any, name: str | None, type_: str, reflected: bool, compare_to: Any) -> bool:
    """Compare only tables this process has models for: installed domains add tables of their own."""
    return not (type_ == "table" and reflected and compare_to is None)


# An id far above what the sequence hands out, so PostgreSQL's sequence never collides with it.
TAKEN_ID = 1_000_000


@asynccontextmanager
async def running_store(url: str, **kwargs: Any) -> AsyncIterator[Store]:
    """Run a Store in a nursery for the duration of the block, closing it at the end."""
    async with trio.open_nursery() as nursery:
        store: Store = await nursery.start(Store(url, **kwargs).run)
        try:
            yield store
        finally:
            await store.close()


def add_event(message: str = "hello", *, id: int | None = None) -> Callable[[Session], int]:
    """Return a write function inserting one event and returning its id."""

    def fn(session: Session) -> int:
        event = EventRecord(id=id, source="test/store", kind="note", message=message)
        session.add(event)
        session.flush()
        return event.id

    return fn


def count_events(session: Session) -> int:
    return session.scalar(select(func.count()).select_from(EventRecord)) or 0


def event_ids(session: Session) -> set[int]:
    return set(session.scalars(select(EventRecord.id)).all())


def test_all_names_exported() -> None:
    public = {
        name
        for name, value in vars(store_package).items()
        if not name.startswith("_") and not isinstance(value, types.ModuleType)
    }
    assert set(store_package.__all__) == public


async def test_write_then_read(database_url: str) -> None:
    with trio.fail_after(TIMEOUT):
        async with running_store(database_url) as store:
            event_id = await store.write(add_event("first"))

            def fetch(session: Session) -> dict[str, Any]:
                event = session.get_one(EventRecord, event_id)
                return {"message": event.message, "time": event.time, "details": event.details}

            row = await store.read(fetch)
    assert row["message"] == "first"
    assert row["details"] is None
    # Stored as UTC and read back timezone-aware on both backends.
    assert row["time"].tzinfo is not None
    assert row["time"].utcoffset().total_seconds() == 0
    assert abs((datetime.now(timezone.utc) - row["time"]).total_seconds()) < 60


async def test_naive_datetime_is_refused(database_url: str) -> None:
    def naive(session: Session) -> int:
        event = EventRecord(time=datetime(2024, 1, 1), source="test", kind="note", message="m")
        session.add(event)
        session.flush()
        return event.id

    with trio.fail_after(TIMEOUT):
        async with running_store(database_url) as store:
            with pytest.raises(StoreError, match="expected a timezone-aware datetime"):
                await store.write(naive)


async def test_acknowledged_write_is_visible_to_readers(database_url: str) -> None:
    seen: list[bool] = []

    async def writer(index: int) -> None:
        event_id = await store.write(add_event(f"w{index}"))
        # The reader connections are not the writer's: seeing the row proves it was committed.
        seen.append(await store.read(lambda session: session.get(EventRecord, event_id) is not None))

    with trio.fail_after(TIMEOUT):
        async with running_store(database_url) as store:
            async with trio.open_nursery() as nursery:
                for index in range(50):
                    nursery.start_soon(writer, index)
    assert seen == [True] * 50


async def test_concurrent_writers_are_group_committed(database_url: str) -> None:
    writers = 200
    acked: list[int] = []

    async def writer(index: int) -> None:
        acked.append(await store.write(add_event(f"w{index}")))

    with trio.fail_after(TIMEOUT):
        async with running_store(database_url) as store:
            async with trio.open_nursery() as nursery:
                for index in range(writers):
                    nursery.start_soon(writer, index)
            present = await store.read(event_ids)
            stats = store.stats
    assert len(set(acked)) == writers
    assert set(acked) == present
    assert stats["committed"] == writers
    assert stats["failed"] == 0
    # Group commit really happened: many writes shared each transaction.
    assert stats["batches"] < writers // 4
    assert stats["transactions"] == stats["batches"]


async def test_write_batch_max_bounds_a_batch(database_url: str) -> None:
    with trio.fail_after(TIMEOUT):
        async with running_store(database_url, write_batch_max=8) as store:
            async with trio.open_nursery() as nursery:
                for index in range(40):
                    nursery.start_soon(store.write, add_event(f"w{index}"))
            assert await store.read(count_events) == 40
            assert store.stats["batches"] >= 5


async def test_failing_write_does_not_lose_the_others(database_url: str) -> None:
    outcomes: dict[int, int | Exception] = {}

    async def writer(index: int, fn: Callable[[Session], int]) -> None:
        try:
            outcomes[index] = await store.write(fn)
        except StoreError as exc:
            outcomes[index] = exc

    with trio.fail_after(TIMEOUT):
        async with running_store(database_url) as store:
            await store.write(add_event("taken", id=TAKEN_ID))
            async with trio.open_nursery() as nursery:
                for index in range(30):
                    duplicate = index == 10
                    fn = add_event("dup", id=TAKEN_ID) if duplicate else add_event(f"w{index}")
                    nursery.start_soon(writer, index, fn)
            present = await store.read(event_ids)
            stats = store.stats

    error = outcomes.pop(10)
    assert isinstance(error, StoreError)
    assert "the database refused the write" in str(error)
    assert isinstance(error.__cause__, IntegrityError)
    assert all(isinstance(value, int) for value in outcomes.values())
    assert set(outcomes.values()) | {TAKEN_ID} == present
    assert stats["failed"] == 1
    assert stats["committed"] == 30
    # The failing write shared a batch with the others, which was re-run without it.
    assert stats["transactions"] > stats["batches"]


async def test_many_failing_writes_in_one_batch_take_few_transactions(database_url: str) -> None:
    outcomes: dict[int, int | Exception] = {}

    async def writer(index: int, fn: Callable[[Session], int]) -> None:
        try:
            outcomes[index] = await store.write(fn)
        except StoreError as exc:
            outcomes[index] = exc

    with trio.fail_after(TIMEOUT):
        async with running_store(database_url) as store:
            await store.write(add_event("taken", id=TAKEN_ID))
            async with trio.open_nursery() as nursery:
                for index in range(40):
                    failing = index % 4 == 0
                    fn = add_event("dup", id=TAKEN_ID) if failing else add_event(f"w{index}")
                    nursery.start_soon(writer, index, fn)
            present = await store.read(event_ids)
            stats = store.stats

    failed = {index for index, value in outcomes.items() if isinstance(value, Exception)}
    assert failed == {index for index in range(40) if index % 4 == 0}
    committed = {value for value in outcomes.values() if isinstance(value, int)}
    assert len(committed) == 30
    assert committed | {TAKEN_ID} == present
    # Each careful pass pinned one failing write (a rollback, not an fsync): per batch one fast
    # pass, one careful pass per failure and the committing pass; never one commit per write.
    assert stats["transactions"] <= stats["failed"] + 2 * stats["batches"]
    assert stats["transactions"] < 20


def fails_at_commit(session: Session) -> int:
    """A write whose failure shows only at COMMIT, so no flush can pin it on its write."""

    def refuse(session: Session) -> None:
        raise RuntimeError("refused at commit")

    event.listen(session, "before_commit", refuse)
    return 0


async def test_a_failure_no_pass_can_pin_falls_back_to_one_transaction_per_write(database_url: str) -> None:
    outcomes: dict[int, int | Exception] = {}

    async def writer(index: int, fn: Callable[[Session], int]) -> None:
        try:
            outcomes[index] = await store.write(fn)
        except RuntimeError as exc:
            outcomes[index] = exc

    with trio.fail_after(TIMEOUT):
        async with running_store(database_url) as store:
            async with trio.open_nursery() as nursery:
                for index in range(40):
                    nursery.start_soon(writer, index, fails_at_commit if index == 20 else add_event(f"w{index}"))
            present = await store.read(event_ids)
            stats = store.stats

    assert str(outcomes.pop(20)) == "refused at commit"
    assert all(isinstance(value, int) for value in outcomes.values())
    assert set(outcomes.values()) == present
    # The careful pass failed at COMMIT too: the batch was re-run one write per transaction.
    assert stats["transactions"] >= 40


async def test_failure_is_pinned_on_the_write_that_caused_it(database_url: str) -> None:
    """A write that leaves a bad row unflushed must get the error, not the write that flushed it."""
    release = threading.Event()
    outcomes: dict[str, int | Exception] = {}

    def blocks(session: Session) -> int:
        assert release.wait(TIMEOUT), "the test never released the writer"
        return add_event("blocker")(session)

    def lazy_duplicate(session: Session) -> int:
        session.add(EventRecord(id=TAKEN_ID, source="test", kind="note", message="dup"))
        return 0

    def counts(session: Session) -> int:
        session.add(EventRecord(source="test", kind="note", message="counted"))
        # The query autoflushes everything pending, lazy_duplicate's row included.
        return count_events(session)

    async def writer(name: str, fn: Callable[[Session], int]) -> None:
        try:
            outcomes[name] = await store.write(fn)
        except StoreError as exc:
            outcomes[name] = exc

    with trio.fail_after(TIMEOUT):
        async with running_store(database_url) as store:
            await store.write(add_event("taken", id=TAKEN_ID))
            async with trio.open_nursery() as nursery:
                nursery.start_soon(writer, "blocker", blocks)
                await trio.testing.wait_all_tasks_blocked()
                # Queued in this order behind the blocker, so they share the next batch.
                nursery.start_soon(writer, "lazy_duplicate", lazy_duplicate)
                await trio.testing.wait_all_tasks_blocked()
                nursery.start_soon(writer, "counts", counts)
                await trio.testing.wait_all_tasks_blocked()
                release.set()
            messages = await store.read(
                lambda session: sorted(session.scalars(select(EventRecord.message)).all())
            )
    assert isinstance(outcomes["lazy_duplicate"], StoreError)
    assert "lazy_duplicate" in str(outcomes["lazy_duplicate"])
    assert outcomes["counts"] == 3
    assert messages == ["blocker", "counted", "taken"]


async def test_errors_of_the_function_pass_through_and_roll_back(database_url: str) -> None:
    def refuses(session: Session) -> int:
        add_event("refused")(session)
        raise NotFoundError("no such device")

    def buggy(session: Session) -> int:
        add_event("buggy")(session)
        raise ValueError("a bug in the write function")

    with trio.fail_after(TIMEOUT):
        async with running_store(database_url) as store:
            with pytest.raises(NotFoundError, match="no such device"):
                await store.write(refuses)
            with pytest.raises(ValueError, match="a bug in the write function"):
                await store.write(buggy)
            assert await store.read(count_events) == 0
            assert await store.write(add_event("after")) > 0


async def test_orm_objects_do_not_leave_the_worker_thread(database_url: str) -> None:
    def returns_event(session: Session) -> EventRecord:
        event = EventRecord(source="test", kind="note", message="leak")
        session.add(event)
        session.flush()
        return event

    def returns_nested(session: Session) -> dict[str, Any]:
        return {"events": list(session.scalars(select(EventRecord)).all())}

    with trio.fail_after(TIMEOUT):
        async with running_store(database_url) as store:
            leak = r"returned EventRecord object .* pydantic model or a dict"
            with pytest.raises(StoreUsageError, match=leak):
                await store.write(returns_event)
            # The broken write was rolled back, not committed.
            assert await store.read(count_events) == 0
            await store.write(add_event("one"))
            with pytest.raises(StoreUsageError, match="inside its result"):
                await store.read(returns_nested)
            with pytest.raises(StoreUsageError, match=r"returned .*Result"):
                await store.read(lambda session: session.execute(select(EventRecord.id)))
            # Plain data is fine, including rows of scalars.
            rows = await store.read(
                lambda session: session.execute(select(EventRecord.id, EventRecord.message)).all()
            )
            assert [tuple(row)[1] for row in rows] == ["one"]


async def test_reads_cannot_write(database_url: str) -> None:
    with trio.fail_after(TIMEOUT):
        async with running_store(database_url) as store:
            with pytest.raises(StoreError, match="the database refused the read"):
                await store.read(add_event("sneaky"))
            assert await store.read(count_events) == 0


async def test_write_after_close_is_refused(database_url: str) -> None:
    with trio.fail_after(TIMEOUT):
        async with trio.open_nursery() as nursery:
            store: Store = await nursery.start(Store(database_url).run)
            await store.write(add_event())
            await store.close()
        with pytest.raises(StoreClosedError, match="the store is closed"):
            await store.write(add_event())
        with pytest.raises(StoreClosedError, match="the store is closed"):
            await store.read(count_events)
        await store.close()  # closing twice is harmless


async def test_a_read_during_close_is_refused_not_left_waiting(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    disposing = threading.Event()
    release = threading.Event()
    dispose = Engines.dispose

    def slow_dispose(self: Engines) -> None:
        disposing.set()
        assert release.wait(TIMEOUT), "the test never released dispose"
        dispose(self)

    # Holds the store in its last step, after the reader loops have ended.
    monkeypatch.setattr(Engines, "dispose", slow_dispose)
    with trio.fail_after(TIMEOUT):
        async with trio.open_nursery() as nursery:
            store: Store = await nursery.start(Store(database_url, migrate=False).run)
            nursery.start_soon(store.close)
            try:
                assert await trio.to_thread.run_sync(disposing.wait, TIMEOUT)
                with trio.fail_after(5), pytest.raises(StoreClosedError, match="the store is closed"):
                    await store.read(lambda session: session.execute(text("SELECT 1")).scalar())
            finally:
                release.set()


async def test_write_before_start_is_refused(database_url: str) -> None:
    store = Store(database_url)
    with pytest.raises(StoreClosedError, match="not started"):
        await store.write(add_event())


async def test_run_twice_is_refused(database_url: str) -> None:
    with trio.fail_after(TIMEOUT):
        async with running_store(database_url) as store:
            with pytest.raises(StoreUsageError, match="called twice"):
                await store.run()


async def test_close_flushes_queued_writes(database_url: str) -> None:
    acked: list[int] = []
    release = threading.Event()

    def blocks(session: Session) -> int:
        # Holds the writer thread so the next writes pile up in the queue.
        assert release.wait(TIMEOUT), "the test never released the writer"
        return add_event("blocker")(session)

    async def writer(fn: Callable[[Session], int]) -> None:
        acked.append(await store.write(fn))

    with trio.fail_after(TIMEOUT):
        async with trio.open_nursery() as nursery:
            store: Store = await nursery.start(Store(database_url).run)
            nursery.start_soon(writer, blocks)
            await trio.testing.wait_all_tasks_blocked()
            for index in range(100):
                nursery.start_soon(writer, add_event(f"queued {index}"))
            await trio.testing.wait_all_tasks_blocked()
            assert store.queue_depth == 100
            nursery.start_soon(store.close)
            await trio.testing.wait_all_tasks_blocked()
            release.set()
        assert len(acked) == 101
        async with running_store(database_url) as reopened:
            assert await reopened.read(event_ids) == set(acked)


async def test_cancelling_run_flushes_queued_writes(database_url: str) -> None:
    acked: list[int] = []
    release = threading.Event()

    def blocks(session: Session) -> int:
        assert release.wait(TIMEOUT), "the test never released the writer"
        return add_event("blocker")(session)

    async def writer(fn: Callable[[Session], int]) -> None:
        acked.append(await store.write(fn))

    with trio.fail_after(TIMEOUT):
        async with trio.open_nursery() as writers:
            async with trio.open_nursery() as store_nursery:
                store: Store = await store_nursery.start(Store(database_url).run)
                writers.start_soon(writer, blocks)
                await trio.testing.wait_all_tasks_blocked()
                for index in range(50):
                    writers.start_soon(writer, add_event(f"queued {index}"))
                await trio.testing.wait_all_tasks_blocked()
                store_nursery.cancel_scope.cancel()
                release.set()
        assert len(acked) == 51
        async with running_store(database_url) as reopened:
            assert await reopened.read(event_ids) == set(acked)


async def test_cancelled_callers_do_not_break_the_writer(database_url: str) -> None:
    release = threading.Event()
    in_flight_result: list[int] = []

    def blocks(session: Session) -> int:
        assert release.wait(TIMEOUT), "the test never released the writer"
        return add_event("in flight")(session)

    async def in_flight_writer(scope: trio.CancelScope) -> None:
        with scope:
            in_flight_result.append(await store.write(blocks))
            await trio.sleep(0)  # the cancellation is delivered at the next checkpoint

    async def queued_writer(scope: trio.CancelScope) -> None:
        with scope:
            await store.write(add_event("dropped"))

    with trio.fail_after(TIMEOUT):
        async with running_store(database_url) as store:
            in_flight_scope, queued_scope = trio.CancelScope(), trio.CancelScope()
            async with trio.open_nursery() as nursery:
                nursery.start_soon(in_flight_writer, in_flight_scope)
                await trio.testing.wait_all_tasks_blocked()
                nursery.start_soon(queued_writer, queued_scope)
                await trio.testing.wait_all_tasks_blocked()
                assert store.queue_depth == 1
                queued_scope.cancel()
                in_flight_scope.cancel()
                await trio.testing.wait_all_tasks_blocked()
                assert store.queue_depth == 0
                release.set()
            # A write already taken by the writer is committed and its caller told so.
            assert in_flight_scope.cancelled_caught
            assert len(in_flight_result) == 1
            # A write still queued when its caller was cancelled is dropped, visibly.
            assert queued_scope.cancelled_caught
            assert store.stats["cancelled"] == 1
            messages = await store.read(
                lambda session: session.scalars(select(EventRecord.message)).all()
            )
            assert messages == ["in flight"]
            # The writer lives on.
            assert await store.write(add_event("after")) > 0


async def test_migrations_match_the_models(database_url: str) -> None:
    def schema(session: Session) -> dict[str, Any]:
        from alembic.autogenerate import compare_metadata
        from alembic.migration import MigrationContext

        connection = session.connection()
        context = MigrationContext.configure(connection, opts={"include_object": modelled})
        inspector = inspect(connection)
        return {
            "tables": set(inspector.get_table_names()),
            "indexes": {index["name"] for index in inspector.get_indexes("events")},
            "heads": set(context.get_current_heads()),
            "diff": [repr(diff) for diff in compare_metadata(context, Base.metadata)],
        }

    with trio.fail_after(TIMEOUT):
        async with running_store(database_url) as store:
            first_id = await store.write(add_event("before restart"))
            first = await store.read(schema)
        # Starting again on the same database: the migrations are a no-op, the data is kept.
        async with running_store(database_url) as store:
            second = await store.read(schema)
            assert await store.read(event_ids) == {first_id}
    assert {"events", "users", "refresh_tokens", "alembic_version"} <= first["tables"]
    assert "ix_events_source_time" in first["indexes"]
    assert KERNEL_HEAD in first["heads"] and at_every_head(first["heads"])
    assert first["diff"] == []
    assert second == first


DOMAIN_REVISION = '''
import sqlalchemy as sa
from alembic import op

revision = "0001_demo"
down_revision = None
branch_labels = ("demo",)
depends_on = "kernel"


def upgrade() -> None:
    op.create_table(
        "demo_things",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("event_id", sa.Integer(), sa.ForeignKey("events.id"), nullable=True),
    )
'''


DOMAIN_COMPONENT = """
from vareon_runtime.component import Component

component = Component(name="demo", build=lambda ctx: None, migrations="demo_domain.migrations")
"""


def install_domain_migrations(root: Path, *entry_points: str) -> None:
    """Make an installed-looking distribution whose components contribute migrations.

    Each entry point is ``name = value`` in ``vareon.components``; the component
    ``demo_domain.component:component`` declares the package ``demo_domain.migrations``, which
    holds one revision, starting the branch ``demo``.
    """
    package = root / "demo_domain" / "migrations"
    package.mkdir(parents=True)
    (root / "demo_domain" / "__init__.py").write_text("")
    (root / "demo_domain" / "component.py").write_text(DOMAIN_COMPONENT)
    (package / "__init__.py").write_text("")
    (package / "0001_demo.py").write_text(DOMAIN_REVISION)
    dist_info = root / "demo_domain-0.1.dist-info"
    dist_info.mkdir()
    (dist_info / "METADATA").write_text("Metadata-Version: 2.1\nName: demo-domain\nVersion: 0.1\n")
    lines = "\n".join(entry_points)
    (dist_info / "entry_points.txt").write_text(f"[vareon.components]\n{lines}\n")


async def test_domain_migrations_come_from_the_components(
    database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    install_domain_migrations(tmp_path / "site", "demo = demo_domain.component:component")
    monkeypatch.syspath_prepend(str(tmp_path / "site"))

    def schema(session: Session) -> tuple[set[str], set[str]]:
        from alembic.migration import MigrationContext

        connection = session.connection()
        heads = set(MigrationContext.configure(connection).get_current_heads())
        return set(inspect(connection).get_table_names()), heads

    with trio.fail_after(TIMEOUT):
        async with running_store(database_url) as store:
            tables, heads = await store.read(schema)
    assert {"events", "demo_things"} <= tables
    # The demo branch depends on the kernel's first revision: the kernel's head stays a head.
    assert {"0001_demo", KERNEL_HEAD} <= heads and at_every_head(heads)


async def test_duplicate_components_are_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    install_domain_migrations(
        tmp_path / "site", "demo = demo_domain.component:component", "demo = demo_domain.component:component"
    )
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    with trio.fail_after(TIMEOUT):
        async with trio.open_nursery() as nursery:
            duplicate = "two components are named 'demo'"
            with pytest.raises(StoreError, match=duplicate):
                await nursery.start(Store(f"sqlite:///{tmp_path / 'x.db'}").run)


async def test_without_migrate_the_schema_is_left_alone(database_url: str) -> None:
    with trio.fail_after(TIMEOUT):
        async with running_store(database_url, migrate=False) as store:
            tables = await store.read(
                lambda session: inspect(session.connection()).get_table_names()
            )
    assert tables == []


@pytest.mark.parametrize(("synchronous", "expected"), [("full", 2), ("normal", 1)])
async def test_sqlite_connections_use_wal(tmp_path: Path, synchronous: str, expected: int) -> None:
    def pragmas(session: Session) -> tuple[Any, ...]:
        return tuple(
            session.execute(text(f"PRAGMA {name}")).scalar_one()
            for name in ("journal_mode", "synchronous", "foreign_keys", "busy_timeout")
        )

    url = f"sqlite:///{tmp_path / 'wal.db'}"
    with trio.fail_after(TIMEOUT):
        async with running_store(url, sqlite_synchronous=synchronous, busy_timeout=2.5) as store:
            assert await store.read(pragmas) == ("wal", expected, 1, 2500)
            assert await store.write(pragmas) == ("wal", expected, 1, 2500)


def test_bad_arguments_are_refused(tmp_path: Path) -> None:
    from vareon_runtime.store import create_engines

    with pytest.raises(ValueError, match="sqlite_synchronous must be one of"):
        create_engines(f"sqlite:///{tmp_path / 'x.db'}", sqlite_synchronous="off")
    with pytest.raises(ValueError, match="needs a SQLite file"):
        create_engines("sqlite://")
    with pytest.raises(ValueError, match="not mysql"):
        create_engines("mysql://localhost/db")
    with pytest.raises(ValueError, match="write_batch_max must be at least 1"):
        Store("sqlite:///x.db", write_batch_max=0)


async def test_concurrent_reads_share_thread_hops(database_url: str) -> None:
    readers = 200
    with trio.fail_after(TIMEOUT):
        async with running_store(database_url, read_pool_size=2) as store:
            ids = [await store.write(add_event(f"r{i}")) for i in range(5)]
            seen: list[int] = []

            async def reader() -> None:
                seen.append(await store.read(count_events))

            async with trio.open_nursery() as nursery:
                for _ in range(readers):
                    nursery.start_soon(reader)
            stats = store.stats
    assert seen == [len(ids)] * readers
    assert stats["reads"] == readers
    assert stats["read_batches"] < readers // 4, "queued reads were grouped into few hops"


async def test_a_failing_read_does_not_spoil_its_batch(database_url: str) -> None:
    def broken(session: Session) -> int:
        return session.scalar(text("SELECT no_such_column FROM events")) or 0

    outcomes: dict[int, object] = {}
    with trio.fail_after(TIMEOUT):
        async with running_store(database_url, read_pool_size=1) as store:
            await store.write(add_event("x"))

            async def reader(index: int) -> None:
                try:
                    outcomes[index] = await store.read(broken if index == 3 else count_events)
                except StoreError as exc:
                    outcomes[index] = exc

            async with trio.open_nursery() as nursery:
                for index in range(8):
                    nursery.start_soon(reader, index)
    assert isinstance(outcomes.pop(3), StoreError)
    assert set(outcomes.values()) == {1}


async def test_a_cancelled_read_is_dropped_and_the_readers_carry_on(database_url: str) -> None:
    with trio.fail_after(TIMEOUT):
        async with running_store(database_url, read_pool_size=1) as store:
            with trio.move_on_after(0):
                await store.read(count_events)
            assert await store.read(count_events) == 0
