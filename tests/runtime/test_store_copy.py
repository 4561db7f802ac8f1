"""`vareon db copy` and `vareon db verify`: a box's SQLite store, filled by the real runtime, moved
onto PostgreSQL and served from there; verification that catches a changed row; the refusals.

The PostgreSQL databases are fresh ones on 127.0.0.1:5432, dropped afterwards (skipped, with the
reason, when the server does not answer).
"""

from __future__ import annotations

import hashlib
import sys
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from datetime import timedelta
from functools import partial
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio
from postgres_support import fresh_database
from sqlalchemy import create_engine, func, insert, select, text
from sqlalchemy.orm import Session

from vareon_runtime.auth import Role
from vareon_runtime.cli import main
from vareon_runtime.clock import utcnow
from vareon_runtime.errors import StoreError
from vareon_runtime.store import EventRecord, Store, TelemetryRecord
from vareon_runtime.store.copy import copy_store, verify_stores
from vareon_runtime.store.lock import StoreInUseError, StoreLock

sys.path.append(str(Path(__file__).resolve().parents[1] / "web"))
from web_support import DOMAINS, PASSWORD, Front, start_front

TIMEOUT = 90.0
SAMPLES = 2_500  # more than a batch: the copy goes in several


@pytest.fixture
def postgres_url() -> Iterator[str]:
    yield from fresh_database()


async def vareon(*argv: str) -> int:
    """Run the command in a worker thread, as the shell would (it may call trio.run itself)."""
    return await trio.to_thread.run_sync(partial(main, list(argv)))


def file_digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def sqlite_url(path: Path) -> str:
    return f"sqlite:///{path}"


# -- a store filled by the runtime ---------------------------------------------------------


def _samples(device_id: str | None) -> Any:
    start = utcnow()

    def write(session: Session) -> int:
        rows = [
            {
                "timestamp": start + timedelta(milliseconds=10 * i),
                "source": "device",
                "device_id": device_id,
                "metric_name": "hotend" if i % 2 else "bed",
                "value": 20.0 + i / 7,  # not exact in binary: floats must survive as they are
            }
            for i in range(SAMPLES)
        ]
        session.execute(insert(TelemetryRecord), rows)
        return len(rows)

    return write


def _journal(session: Session) -> int:
    session.add(EventRecord(source="agent/x", kind="crashed", message="boom", details={"exit": 3, "b": [1, "ü"]}))
    session.add(EventRecord(source="scheduler", kind="note", message="no details", details=None))
    return 2


async def _until(client: httpx.AsyncClient, path: str, headers: dict[str, str], done: Any) -> Any:
    with trio.fail_after(TIMEOUT):
        while True:
            response = await client.get(path, headers=headers)
            assert response.status_code == 200, response.text
            if done(response.json()):
                return response.json()
            await trio.sleep(0.05)


async def _fill(front: Front, tmp_path: Path) -> dict[str, str]:
    """Users of each role, an agent with output and jobs, a device, a task with history,
    telemetry and journal rows: what months on a box leave behind. Returns each role's token."""
    tokens = {}
    for role in Role:
        name = f"{role.value}-user"
        await front.ctx.auth.create_user(name, f"{name}@example.com", PASSWORD, role)
        tokens[role.value] = (await front.ctx.auth.login(name, PASSWORD, None)).access_token
    admin = {"Authorization": f"Bearer {tokens['admin']}"}
    script = tmp_path / "agent.py"
    script.write_text("import time\nprint('hello', flush=True)\nprint('world', flush=True)\ntime.sleep(600)\n")
    async with httpx.AsyncClient(base_url=front.base_url, timeout=TIMEOUT) as client:
        agent = await client.post(
            "/api/myntrix/agents",
            json={"name": "greeter", "configuration": {"command": [sys.executable, str(script)], "stopTimeout": 2.0}},
            headers=admin,
        )
        assert agent.status_code == 201, agent.text
        path = f"/api/myntrix/agents/{agent.json()['id']}"
        assert (await client.post(f"{path}/start", headers=admin)).status_code == 200
        await _until(client, f"{path}/logs", admin, lambda lines: any(l["line"] == "world" for l in lines))
        assert (await client.post(f"{path}/stop", headers=admin)).status_code == 200

        device = await client.post(
            "/api/myntrix/devices",
            json={"name": "printer", "type": "printer", "connectionString": "tcp://127.0.0.1:9",
                  "configuration": {"commandTimeout": 2.5}},
            headers=admin,
        )
        assert device.status_code == 201, device.text

        task = await client.post(
            "/api/myntrix/tasks",
            json={"name": "tick", "schedule": "@yearly", "action": "script",
                  "parameters": {"argv": [sys.executable, "-c", "print('tick')"]}},
            headers=admin,
        )
        assert task.status_code == 201, task.text
        disabled = await client.post(
            "/api/myntrix/tasks",
            json={"name": "off", "schedule": "0 3 * * *", "action": "script", "enabled": False,
                  "parameters": {"argv": ["/bin/true"]}},
            headers=admin,
        )
        assert disabled.status_code == 201, disabled.text
        run = await client.post(f"/api/myntrix/tasks/{task.json()['id']}/run", headers=admin)
        assert run.status_code == 202, run.text
        await _until(
            client, "/api/myntrix/tasks/history", admin, lambda runs: runs and runs[0]["status"] == "success"
        )
    with trio.fail_after(TIMEOUT):
        await front.ctx.store.write(_samples(device.json()["id"]))
        await front.ctx.store.write(_journal)
    return tokens


SELF_WRITTEN = ("/api/myntrix/agents", "/api/myntrix/devices")
READS = (
    "/api/myntrix/agents",
    "/api/myntrix/devices",
    "/api/myntrix/tasks",
    "/api/myntrix/tasks/history",
    "/api/myntrix/jobs?limit=100",
)


async def _served(front: Front, tokens: dict[str, str]) -> dict[str, Any]:
    """What the API answers about the data (fields worked out from the clock left out)."""
    seen: dict[str, Any] = {}
    async with httpx.AsyncClient(base_url=front.base_url, timeout=TIMEOUT) as client:
        admin = {"Authorization": f"Bearer {tokens['admin']}"}
        for path in READS:
            response = await client.get(path, headers=admin)
            assert response.status_code == 200, response.text
            # An agent's and a device's row is written again when the runtime stops and boots.
            seen[path] = _timeless(response.json(), "updatedAt" if path in SELF_WRITTEN else None)
        agent_id = seen["/api/myntrix/agents"][0]["id"]
        logs = await client.get(f"/api/myntrix/agents/{agent_id}/logs", headers=admin)
        seen["logs"] = logs.json()
        for role, token in tokens.items():  # each account, signed in with its old token
            me = await client.get("/api/users/me", headers={"Authorization": f"Bearer {token}"})
            assert me.status_code == 200, me.text
            seen[role] = me.json()
    seen["telemetry"] = await front.ctx.store.read(
        lambda s: tuple(s.execute(select(func.count(), func.sum(TelemetryRecord.value))).one())
    )
    return seen


def _timeless(body: Any, also: str | None = None) -> Any:
    # A task's next fire times count from now; everything else is data and must be equal.
    dropped = {"nextRuns", "nextRunTimes", "nextRun", also}
    if isinstance(body, list):
        return [_timeless(item, also) for item in body]
    if isinstance(body, dict):
        return {k: _timeless(v, also) for k, v in body.items() if k not in dropped}
    return body


def _differences(before: Any, after: Any, where: str = "") -> list[str]:
    """Where two answers differ, as paths with both values (empty when they are equal)."""
    if isinstance(before, dict) and isinstance(after, dict):
        return [d for key in sorted(set(before) | set(after), key=str)
                for d in _differences(before.get(key), after.get(key), f"{where}/{key}")]
    if isinstance(before, list) and isinstance(after, list) and len(before) == len(after):
        return [d for i, (b, a) in enumerate(zip(before, after)) for d in _differences(b, a, f"{where}[{i}]")]
    return [] if before == after else [f"{where}: {before!r} != {after!r}"]


@asynccontextmanager
async def running(nursery: trio.Nursery, data: Path, url: str | None) -> AsyncIterator[Front]:
    environ = {"VAREON_DATABASE_URL": url} if url else {}
    front = await start_front(nursery, data, environ, components=DOMAINS)
    try:
        yield front
    finally:
        await front.stop()


@pytest.mark.postgres
async def test_a_box_store_moves_to_postgresql_and_the_runtime_serves_the_same_data_from_it(
    nursery: trio.Nursery, tmp_path: Path, postgres_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    data = tmp_path / "data"
    source = sqlite_url(data / "vareon.db")
    async with running(nursery, data, None) as front:
        tokens = await _fill(front, tmp_path)
        before = await _served(front, tokens)
    assert before["telemetry"][0] == SAMPLES
    untouched = file_digest(data / "vareon.db")

    with trio.fail_after(TIMEOUT):
        status = await vareon("db", "copy", "--from", source, "--to", postgres_url, "--batch-size", "1000")
    out, err = capsys.readouterr()
    assert status == 0, err
    assert f"telemetry: 1000/{SAMPLES} rows" in out and f"telemetry: {SAMPLES}/{SAMPLES} rows" in out
    report = {line.split()[0]: line.split() for line in out.splitlines() if line.endswith("  ok")}
    assert report["telemetry"][1:3] == [str(SAMPLES), str(SAMPLES)]
    assert report["users"][1:3] == ["3", "3"]
    assert {"agents", "agent_logs", "devices", "scheduled_tasks", "task_runs", "jobs", "events",
            "refresh_tokens", "alembic_version"} <= set(report)
    assert "every table's row count and checksum match" in out
    assert file_digest(data / "vareon.db") == untouched  # the source was only read

    # The same box, its config now naming PostgreSQL: same data, same accounts, same tokens.
    async with running(nursery, data, postgres_url) as front:
        after = await _served(front, tokens)
        assert _differences(before, after) == []
        # The sequences went past the copied ids: new rows get new ids, no collision.
        with trio.fail_after(TIMEOUT):
            await front.ctx.store.write(_samples(None))
            highest = await front.ctx.store.read(lambda s: s.scalar(select(func.max(TelemetryRecord.id))))
        assert highest == 2 * SAMPLES

    # And back, to take the box offline: PostgreSQL to a new SQLite file, verified the same way.
    offline = tmp_path / "offline" / "vareon.db"
    with trio.fail_after(TIMEOUT):
        status = await vareon("db", "copy", "--from", postgres_url, "--to", sqlite_url(offline))
        assert status == 0, capsys.readouterr().err
        status = await vareon("db", "verify", "--from", postgres_url, "--to", sqlite_url(offline))
    out, err = capsys.readouterr()
    assert status == 0, err
    report = {line.split()[0]: line.split() for line in out.splitlines() if line.endswith("  ok")}
    assert report["telemetry"][1:3] == [str(2 * SAMPLES), str(2 * SAMPLES)]
    assert out.rstrip().endswith("the same in both")


# -- verification and refusals -------------------------------------------------------------


@asynccontextmanager
async def a_store(url: str) -> AsyncIterator[Store]:
    async with trio.open_nursery() as nursery:
        store: Store = await nursery.start(Store(url).run)
        try:
            yield store
        finally:
            await store.close()


async def small_store(path: Path) -> str:
    """A SQLite store (every installed migration) with journal and telemetry rows."""
    url = sqlite_url(path)
    with trio.fail_after(TIMEOUT):
        async with a_store(url) as store:
            await store.write(_journal)
            await store.write(_samples(None))
    return url


@pytest.mark.postgres
async def test_verify_names_the_table_row_and_column_of_a_changed_row(
    tmp_path: Path, postgres_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    source = await small_store(tmp_path / "box" / "vareon.db")
    with trio.fail_after(TIMEOUT):
        copied = await trio.to_thread.run_sync(partial(copy_store, source, postgres_url, batch_size=300))
    assert copied.ok and copied.rows == SAMPLES + 2

    engine = create_engine(postgres_url)
    try:
        with engine.begin() as connection:  # someone edits the copy by hand
            connection.execute(text("UPDATE telemetry SET value = value + 0.5 WHERE id = 77"))
    finally:
        engine.dispose()

    with trio.fail_after(TIMEOUT):
        status = await vareon("db", "verify", "--from", source, "--to", postgres_url)
    out, err = capsys.readouterr()
    assert status == 1
    assert "telemetry differ" in err
    line = next(line for line in out.splitlines() if line.startswith("telemetry"))
    assert "DIFFERS: the row id=77 differs in value" in line
    assert all(line.endswith("  ok") for line in out.splitlines()[1:] if not line.startswith("telemetry"))


@pytest.mark.postgres
async def test_a_copy_that_does_not_verify_is_rolled_back_and_the_source_is_untouched(
    tmp_path: Path, postgres_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    source_file = tmp_path / "box" / "vareon.db"
    source = await small_store(source_file)
    untouched = file_digest(source_file)
    # The target has the store's tables, empty (a runtime started on it once), and a trigger that
    # changes what it is given: the kind of fault only reading the rows back can find.
    with trio.fail_after(TIMEOUT):
        async with a_store(postgres_url):
            pass
    engine = create_engine(postgres_url)
    try:
        with engine.begin() as connection:
            connection.execute(text(
                "CREATE FUNCTION skew() RETURNS trigger AS $$ BEGIN"
                " IF NEW.id = 1234 THEN NEW.metric_name := 'skewed'; END IF; RETURN NEW; END $$"
                " LANGUAGE plpgsql"
            ))
            connection.execute(
                text("CREATE TRIGGER skew BEFORE INSERT ON telemetry FOR EACH ROW EXECUTE FUNCTION skew()")
            )

        with trio.fail_after(TIMEOUT):
            status = await vareon("db", "copy", "--from", source, "--to", postgres_url, "--batch-size", "500")
        out, err = capsys.readouterr()
        assert status == 1
        assert "DIFFERS: the row id=1234 differs in metric_name" in out
        assert "verification failed for telemetry" in err and "rolled back" in err
        with engine.connect() as connection:  # nothing of the copy was kept
            assert connection.scalar(text("SELECT count(*) FROM telemetry")) == 0
            assert connection.scalar(text("SELECT count(*) FROM events")) == 0
    finally:
        engine.dispose()
    assert file_digest(source_file) == untouched


@pytest.mark.postgres
async def test_a_target_with_rows_is_refused_naming_the_tables(
    tmp_path: Path, postgres_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    source = await small_store(tmp_path / "box" / "vareon.db")
    with trio.fail_after(TIMEOUT):
        async with a_store(postgres_url) as store:
            await store.write(_journal)
        status = await vareon("db", "copy", "--from", source, "--to", postgres_url)
    err = capsys.readouterr().err
    assert status == 2
    assert "is not empty: events (2 rows); copy into an empty database" in err


async def test_no_copy_while_a_store_has_the_source_open_and_no_store_opens_during_a_copy(tmp_path: Path) -> None:
    source = await small_store(tmp_path / "box" / "vareon.db")
    target = sqlite_url(tmp_path / "copy" / "vareon.db")
    with trio.fail_after(TIMEOUT):
        async with a_store(source):  # the runtime, still running
            refused = r"is open in a running runtime or another `vareon` command.*stop the runtime first"
            with pytest.raises(StoreInUseError, match=refused):
                await trio.to_thread.run_sync(copy_store, source, target)
        assert not (tmp_path / "copy" / "vareon.db").exists()

        with StoreLock(source) as moving:  # what a copy holds while it runs
            moving.hold_exclusive()
            with pytest.raises(StoreInUseError, match="is being moved or verified by a `vareon db` command"):
                await Store(source, busy_timeout=0.2).run()

        # Stopped: the copy goes through, SQLite to SQLite as well.
        copied = await trio.to_thread.run_sync(copy_store, source, target)
        assert copied.ok
        assert (await trio.to_thread.run_sync(verify_stores, source, target)).ok


async def test_a_source_that_is_not_a_store_or_the_same_database_is_refused(tmp_path: Path) -> None:
    source = await small_store(tmp_path / "box" / "vareon.db")
    with pytest.raises(StoreError, match="the source and the target are the same database"):
        copy_store(source, sqlite_url(tmp_path / "box" / ".." / "box" / "vareon.db"))
    with pytest.raises(StoreError, match="there is no SQLite database at"):
        copy_store(sqlite_url(tmp_path / "nowhere.db"), sqlite_url(tmp_path / "copy.db"))
    assert not (tmp_path / "nowhere.db").exists()  # looking did not create it
