"""`vareon db check`, and every command that opens the store refusing, with the install command,
a PostgreSQL URL whose driver is missing."""

from __future__ import annotations

import os
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial
from pathlib import Path

import pytest
import trio
from sqlalchemy import create_engine, text
from sqlalchemy.orm import Session

from vareon_runtime.cli import main
from vareon_runtime.store import EventRecord, Store

TIMEOUT = 60.0
# psycopg as Python sees it when the postgres extra was not installed.
MISSING = 'raise ModuleNotFoundError("No module named \'psycopg\'", name="psycopg")\n'
POSTGRES = "postgresql+psycopg://vareon:s3cret-pw@127.0.0.1:5432/vareon"


async def vareon(*argv: str) -> int:
    """Run the command in a worker thread (it calls trio.run itself)."""
    return await trio.to_thread.run_sync(partial(main, list(argv)))


@pytest.fixture
def config_file(tmp_path: Path) -> Path:
    path = tmp_path / "box" / "config.toml"
    path.parent.mkdir()
    path.write_text('[runtime]\ndata_dir = "data"\n\n[server]\nport = 0\n')
    return path


@pytest.mark.parametrize(
    "argv",
    [
        ["run"],
        ["user", "create", "root", "--role", "admin", "--password-env", "ROOT_PW"],
        ["db", "check"],
        ["db", "copy", "--to", "postgresql+psycopg://postgres@127.0.0.1:5432/elsewhere"],
    ],
    ids=["run", "user-create", "db-check", "db-copy"],
)
async def test_a_postgresql_url_without_its_driver_says_what_to_install(
    argv: list[str], config_file: Path, tmp_path: Path
) -> None:
    hidden = tmp_path / "no-psycopg"
    hidden.mkdir()
    (hidden / "psycopg.py").write_text(MISSING)
    environ = {
        **os.environ,
        "PYTHONPATH": str(hidden),
        "ROOT_PW": "correct horse battery",
        # The copy's source is the configured store: SQLite for the copy, PostgreSQL otherwise.
        "VAREON_DATABASE_URL": "" if argv[:2] == ["db", "copy"] else POSTGRES,
    }
    if argv[:2] == ["db", "copy"]:
        (config_file.parent / "data").mkdir()
        (config_file.parent / "data" / "vareon.db").touch()
    with trio.fail_after(TIMEOUT):
        done = await trio.run_process(
            [sys.executable, "-m", "vareon_runtime.cli", *argv, "--config", str(config_file)],
            env=environ,
            cwd=tmp_path,
            capture_stdout=True,
            capture_stderr=True,
            check=False,
        )
    err = done.stderr.decode()
    assert done.returncode == 2, err
    assert "Traceback" not in err and "ExceptionGroup" not in err
    assert err.startswith("vareon: error: the database postgresql+psycopg://")
    assert "needs the Python driver 'psycopg', which is not installed (No module named 'psycopg')" in err
    assert err.rstrip().endswith(
        "install it with: pip install 'vareon-runtime[postgres]' (in a clone: pip install -e '.[postgres]')"
    )
    assert "s3cret-pw" not in err  # the URL is shown without its password
    if argv == ["run"]:  # refused before anything was made
        assert not (config_file.parent / "data" / "secrets").exists()


@asynccontextmanager
async def a_store(url: str) -> AsyncIterator[Store]:
    async with trio.open_nursery() as nursery:
        store: Store = await nursery.start(Store(url).run)
        try:
            yield store
        finally:
            await store.close()


def _events(session: Session) -> int:
    for n in range(3):
        session.add(EventRecord(source="test", kind="note", message=f"event {n}"))
    return 3


def _report(out: str) -> dict[str, str]:
    """The report's ``key   value`` lines (and each table's ``name   rows``)."""
    return {line.split(maxsplit=1)[0]: line.split(maxsplit=1)[1].strip() for line in out.splitlines() if line.strip()}


async def test_check_reports_revision_pending_rows_size_and_use_on_both_backends(
    database_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with trio.fail_after(TIMEOUT):
        async with a_store(database_url) as store:
            await store.write(_events)
            assert await vareon("db", "check", "--url", database_url) == 0
            running = _report(capsys.readouterr().out)
        assert await vareon("db", "check", "--url", database_url) == 0
        stopped = _report(capsys.readouterr().out)

    assert running["in"] == "use     yes: a runtime or a vareon command has it open"
    assert stopped["in"] == "use     no"
    assert stopped["pending"] == "none"
    assert "(kernel)" in stopped["revision"] and "(scheduler)" in stopped["revision"]
    assert stopped["events"] == "3" and stopped["telemetry"] == "0" and stopped["total"] == "3"
    assert stopped["backend"].startswith("SQLite" if database_url.startswith("sqlite") else "PostgreSQL")
    if database_url.startswith("sqlite"):
        path = Path(database_url.removeprefix("sqlite:///"))
        wal = path.with_name(path.name + "-wal")
        assert "(vareon.db " in stopped["size"] and " + WAL " in stopped["size"]
        assert os.path.getsize(path) + (os.path.getsize(wal) if wal.exists() else 0) > 0
    else:
        assert "pg_database_size of vareon_test_" in stopped["size"]


async def test_check_lists_the_migrations_a_store_has_not_applied(
    database_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with trio.fail_after(TIMEOUT):
        async with a_store(database_url):
            pass
        # As a store left by the version before the scheduler's second migration.
        engine = create_engine(database_url)
        try:
            with engine.begin() as connection:
                connection.execute(text(
                    "UPDATE alembic_version SET version_num = '0001_scheduler'"
                    " WHERE version_num = '0002_scheduler_run_process'"
                ))
        finally:
            engine.dispose()
        assert await vareon("db", "check", "--url", database_url) == 0
    report = _report(capsys.readouterr().out)
    assert report["pending"] == "1: 0002_scheduler_run_process (scheduler) (applied when the runtime next starts)"
    assert "0001_scheduler (scheduler)" in report["revision"]


async def test_check_reads_the_configured_store_and_refuses_one_that_is_not_there(
    config_file: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("VAREON_DATABASE_URL", raising=False)
    database = config_file.parent / "data" / "vareon.db"
    with trio.fail_after(TIMEOUT):
        assert await vareon("db", "check", "--config", str(config_file)) == 2
        assert f"there is no SQLite database at {database}" in capsys.readouterr().err
        assert not database.exists()  # looking did not create it

        async with a_store(f"sqlite:///{database}"):
            pass
        assert await vareon("db", "check", "--config", str(config_file)) == 0
    assert _report(capsys.readouterr().out)["store"] == f"sqlite:///{database}"


@pytest.mark.parametrize(
    ("url", "said"),
    [
        ("mysql://vareon:s3cret-pw@db/vareon", "the store runs on SQLite or PostgreSQL, not mysql://"),
        ("postgresql+asyncpg://vareon:s3cret-pw@db/vareon", "is an asyncio driver"),
        ("not a url s3cret-pw", "the database URL cannot be read; write it as sqlite:////"),
    ],
)
async def test_a_url_the_store_cannot_run_on_is_refused_without_its_password(
    url: str, said: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with trio.fail_after(TIMEOUT):
        assert await vareon("db", "check", "--url", url) == 2
    err = capsys.readouterr().err
    assert said in err and "s3cret-pw" not in err
