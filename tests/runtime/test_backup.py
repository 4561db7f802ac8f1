"""``vareon backup`` / ``vareon restore``: a consistent copy while the store writes, and back."""

from __future__ import annotations

import hashlib
import json
import sqlite3
import tarfile
from collections.abc import Callable
from pathlib import Path

import pytest
import trio
from sqlalchemy.orm import Session

from vareon_runtime import load_config
from vareon_runtime.backup import BackupError, backup, read_revisions, restore
from vareon_runtime.cli import main
from vareon_runtime.config import Config
from vareon_runtime.runtime import store_for
from vareon_runtime.store import EventRecord
from vareon_runtime.store.lock import StoreInUseError

TIMEOUT = 30


def config_in(data_dir: Path, **extra: str) -> Config:
    return load_config(None, environ={"VAREON_RUNTIME_DATA_DIR": str(data_dir), **extra})


def insert(n: int) -> Callable[[Session], None]:
    def write(session: Session) -> None:
        session.add(EventRecord(source="test", kind="note", message=f"row {n}", details=None))

    return write


def count_events(database: Path) -> int:
    with sqlite3.connect(database) as connection:
        return int(connection.execute("SELECT count(*) FROM events WHERE source = 'test'").fetchone()[0])


async def test_a_backup_taken_while_the_store_writes_is_one_consistent_snapshot(tmp_path: Path) -> None:
    config = config_in(tmp_path / "data")
    (tmp_path / "data" / "secrets").mkdir(parents=True)
    (tmp_path / "data" / "secrets" / "jwt.key").write_text("k" * 64 + "\n")
    (tmp_path / "data" / "uploads").mkdir()
    (tmp_path / "data" / "uploads" / "part.gcode").write_text("G28\n")
    target = tmp_path / "box.tar.gz"
    async with trio.open_nursery() as nursery:
        store = await nursery.start(store_for(config).run)
        written = 0

        async def keep_writing() -> None:
            nonlocal written
            while True:
                await store.write(insert(written))
                written += 1

        async with trio.open_nursery() as writers:
            writers.start_soon(keep_writing)
            with trio.fail_after(TIMEOUT):
                while written < 20:
                    await trio.sleep(0.01)
                result = await trio.to_thread.run_sync(backup, config, target)
                at_least = written
                while written < at_least + 20:  # the store went on writing beside the copy
                    await trio.sleep(0.01)
            writers.cancel_scope.cancel()
        # While the store is open, a restore is refused: the runtime would lose its file.
        with pytest.raises(StoreInUseError, match="stop the runtime first"):
            restore(config, target, force=True)
        nursery.cancel_scope.cancel()

    manifest = result.manifest
    assert result.database_included and manifest["kind"] == "vareon-backup" and manifest["format"] == 1
    assert manifest["database"]["quick_check"] == "ok"
    assert manifest["database"]["revisions"]["kernel"].startswith("000")
    paths = {entry["path"] for entry in manifest["files"]}
    assert paths == {"database/vareon.db", "data/secrets/jwt.key"}, "uploads are transient; the store's files are the copy"
    with tarfile.open(target) as tar:
        names = set(tar.getnames())
        assert names == {"manifest.json", *paths}
        for entry in manifest["files"]:
            data = tar.extractfile(entry["path"]).read()  # type: ignore[union-attr]
            assert len(data) == entry["size"] and hashlib.sha256(data).hexdigest() == entry["sha256"]
        snapshot = tmp_path / "snapshot.db"
        snapshot.write_bytes(tar.extractfile("database/vareon.db").read())  # type: ignore[union-attr]
    rows = count_events(snapshot)
    assert 20 <= rows <= at_least
    # Row n exists for every n below the count: a snapshot, not a torn copy.
    with sqlite3.connect(snapshot) as connection:
        messages = {m for (m,) in connection.execute("SELECT message FROM events WHERE source = 'test'")}
    assert messages == {f"row {n}" for n in range(rows)}


async def test_restore_refuses_to_overwrite_then_keeps_the_old_store_aside(tmp_path: Path) -> None:
    config = config_in(tmp_path / "data")
    async with trio.open_nursery() as nursery:
        store = await nursery.start(store_for(config).run)
        for n in range(5):
            await store.write(insert(n))
        await store.close()
    target = tmp_path / "backup"
    backup(config, target)
    assert (target / "manifest.json").is_file()
    with pytest.raises(BackupError, match="already exists; choose another path or pass --force"):
        backup(config, target)

    # The box goes on, then the backup is wanted back.
    async with trio.open_nursery() as nursery:
        store = await nursery.start(store_for(config).run)
        for n in range(5, 9):
            await store.write(insert(n))
        await store.close()
    database = config.data_dir_path / "vareon.db"
    assert count_events(database) == 9
    with pytest.raises(BackupError, match=r"already exist; pass --force to replace them \(each is kept beside as <name>.before-restore\)"):
        restore(config, target)
    assert count_events(database) == 9

    done = restore(config, target, force=True)
    assert count_events(database) == 5
    kept = database.with_name("vareon.db.before-restore")
    assert done.kept == [kept] and count_events(kept) == 9, "the old store is whole beside it (its WAL checkpointed)"
    assert done.pending == [] and done.revisions == read_revisions(database)

    # A fresh box needs no --force.
    fresh = config_in(tmp_path / "fresh")
    restore(fresh, target)
    assert count_events(fresh.data_dir_path / "vareon.db") == 5


async def _one_row_backup(tmp_path: Path) -> tuple[Config, Path]:
    config = config_in(tmp_path / "data")
    async with trio.open_nursery() as nursery:
        store = await nursery.start(store_for(config).run)
        await store.write(insert(0))
        await store.close()
    target = tmp_path / "backup"
    backup(config, target)
    return config_in(tmp_path / "elsewhere"), target


def _rehash(target: Path) -> None:
    manifest = json.loads((target / "manifest.json").read_text())
    for entry in manifest["files"]:
        data = (target / entry["path"]).read_bytes()
        entry["size"], entry["sha256"] = len(data), hashlib.sha256(data).hexdigest()
    (target / "manifest.json").write_text(json.dumps(manifest))


async def test_restore_refuses_a_schema_newer_than_the_installed_migrations(tmp_path: Path) -> None:
    config, target = await _one_row_backup(tmp_path)
    with sqlite3.connect(target / "database" / "vareon.db") as connection:
        connection.execute("INSERT INTO alembic_version VALUES ('0099_from_the_future')")
    _rehash(target)
    with pytest.raises(BackupError, match=r"schema revision 0099_from_the_future, which this installation .* does not know"):
        restore(config, target)
    assert not (config.data_dir_path / "vareon.db").exists()


async def test_restore_refuses_a_damaged_backup(tmp_path: Path) -> None:
    config, target = await _one_row_backup(tmp_path)
    with (target / "database" / "vareon.db").open("r+b") as file:
        file.seek(200)
        file.write(b"\xff")
    with pytest.raises(BackupError, match="does not match its sha256 in the manifest; the backup is damaged"):
        restore(config, target)


def test_a_postgresql_store_is_left_to_pg_dump_and_said_so(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "data" / "secrets").mkdir(parents=True)
    (tmp_path / "data" / "secrets" / "jwt.key").write_text("k" * 64 + "\n")
    config = tmp_path / "config.toml"
    config.write_text(
        '[runtime]\ndata_dir = "data"\n[database]\nurl = "postgresql+psycopg://vareon@db.example:5433/vareon"\n'
    )
    assert main(["backup", str(tmp_path / "box.tgz"), "--config", str(config)]) == 0
    out = capsys.readouterr().out
    assert "the PostgreSQL database is NOT in this backup" in out
    assert f"pg_dump --format=custom --file={tmp_path / 'vareon.pgdump'} --host=db.example --port=5433 --username=vareon vareon" in out
    with tarfile.open(tmp_path / "box.tgz") as tar:
        manifest = json.loads(tar.extractfile("manifest.json").read())  # type: ignore[union-attr]
        assert set(tar.getnames()) == {"manifest.json", "data/secrets/jwt.key", "config.toml"}
    assert manifest["database"] == {"backend": "postgresql", "included": False}
    assert main(["restore", str(tmp_path / "box.tgz"), "--config", str(config)]) == 2
    assert "pg_restore" in capsys.readouterr().err


async def test_the_commands_back_up_and_restore(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config_file = tmp_path / "config.toml"
    config_file.write_text('[runtime]\ndata_dir = "data"\n')
    config = load_config(config_file)
    async with trio.open_nursery() as nursery:
        store = await nursery.start(store_for(config).run)
        await store.write(insert(0))
        await store.close()
    archive = tmp_path / "box.tar.gz"
    assert await trio.to_thread.run_sync(main, ["backup", str(archive), "--config", str(config_file)]) == 0
    out = capsys.readouterr().out
    assert f"wrote {archive}" in out and "kernel" in out
    assert await trio.to_thread.run_sync(main, ["restore", str(archive), "--config", str(config_file)]) == 2
    assert "pass --force" in capsys.readouterr().err
    assert await trio.to_thread.run_sync(main, ["restore", str(archive), "--config", str(config_file), "--force"]) == 0
    out = capsys.readouterr().out
    assert "vareon.db.before-restore" in out and "restored" in out
