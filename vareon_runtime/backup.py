"""``vareon backup`` and ``vareon restore``: the box's state in one file (or directory), and back.

A backup holds:

- ``database/vareon.db``: a consistent copy of the SQLite store, made with SQLite's online
  backup API (``sqlite3.Connection.backup``) in one step, so it is one snapshot even while the
  runtime writes (WAL lets the copy read beside the writer); ``PRAGMA quick_check`` passes on it
  before it is kept;
- ``data/...``: the data directory's other files (``secrets/jwt.key``, so tokens stay valid),
  without ``uploads/`` (transient: a file waiting for its device) and the store's own files;
- ``config.toml``: the config file, for reference (a restore never rewrites it);
- ``manifest.json``: the format, the runtime's version, when, the store's schema revision per
  component (its Alembic branch: ``kernel``, ``myntrix``...), and each file's size and sha256.

``PATH`` ending in ``.tar.gz`` or ``.tgz`` is a gzipped tar, anything else a directory. A
backup never overwrites an existing one without ``force``.

PostgreSQL stores are not copied: ``pg_dump`` does that properly, and the command to run is
printed; the backup then holds the data directory's files and says the database is not in it.

A restore checks the backup (every file's sha256), refuses a store whose schema revision this
installation's migrations do not know (a backup of a newer version), refuses while the store is
open (a running runtime, or a ``vareon`` command: :class:`~vareon_runtime.store.lock.StoreLock`
held exclusively for the whole restore, which also keeps a runtime from starting meanwhile), and
refuses to replace an existing store or file without ``force``; with it, what was there is kept
beside it as ``<name>.before-restore`` (the store checkpointed first, so the file is whole). An
older revision is fine: the runtime migrates it when it starts.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sqlite3
import tarfile
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any

from .clock import isoformat, utcnow
from .errors import VareonError
from .version import __version__

if TYPE_CHECKING:
    from .config import Config

__all__ = [
    "BACKUP_FORMAT",
    "BackupError",
    "BackupResult",
    "RestoreResult",
    "backup",
    "pg_dump_command",
    "read_revisions",
    "restore",
    "unknown_revisions",
]

BACKUP_FORMAT = 1
MANIFEST = "manifest.json"
DATABASE = "database/vareon.db"
DATA = "data"
CONFIG = "config.toml"
SKIPPED = ("uploads",)
"""Data directory entries left out: transient files."""
BEFORE_RESTORE = ".before-restore"
_STORE_SUFFIXES = ("", "-wal", "-shm", "-journal", ".lock")
_CHUNK = 1024 * 1024


class BackupError(VareonError):
    """A backup or restore that cannot be done; the message says why and what to do."""


@dataclass
class BackupResult:
    """What :func:`backup` wrote."""

    path: Path
    manifest: dict[str, Any]
    database_included: bool
    advice: list[str] = field(default_factory=list)
    """Lines for the user: what is not in the backup and how to save it."""


@dataclass
class RestoreResult:
    """What :func:`restore` put in place."""

    database: Path
    files: list[Path]
    kept: list[Path]
    """What was there before, kept as ``*.before-restore``."""
    revisions: dict[str, str]
    pending: list[str]
    """Components whose migrations will run at the next start (an older backup)."""


# -- backup --------------------------------------------------------------------------------------


def backup(config: Config, target: Path, *, force: bool = False) -> BackupResult:
    """Write a backup of ``config``'s runtime to ``target`` (see the module docstring).

    Raises:
        BackupError: ``target`` exists (without ``force``), the store cannot be read, or the
            copy fails its check.
    """
    target = target.expanduser().resolve()
    archive = _is_archive(target)
    _check_target(target, archive, force)
    url = config.database_url
    data_dir = config.data_dir_path
    sqlite_path = _sqlite_path(url)
    advice: list[str] = []
    with tempfile.TemporaryDirectory(prefix=".vareon-backup-", dir=target.parent) as tmp:
        staging = Path(tmp) / "backup"
        staging.mkdir()
        revisions: dict[str, str] = {}
        database: dict[str, Any]
        if sqlite_path is not None:
            copy = staging / DATABASE
            copy.parent.mkdir(parents=True)
            database = _copy_sqlite(url, sqlite_path, copy, config.database.busy_timeout)
            revisions = read_revisions(copy)
            database["revisions"] = revisions
        else:
            database = {"backend": "postgresql", "included": False}
            advice.append(
                "the PostgreSQL database is NOT in this backup; save it with pg_dump, e.g.\n    "
                + pg_dump_command(url, target.parent / "vareon.pgdump")
            )
        store_files = _store_files(sqlite_path)
        for source in _data_files(data_dir, store_files):
            relative = source.relative_to(data_dir)
            destination = staging / DATA / relative
            destination.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, destination)
        if config.source_path is not None and config.source_path.is_file():
            shutil.copy2(config.source_path, staging / CONFIG)
        manifest = {
            "format": BACKUP_FORMAT,
            "kind": "vareon-backup",
            "version": __version__,
            "created_at": isoformat(utcnow()),
            "runtime": config.runtime.name,
            "database": database,
            "skipped": [f"{name}/" for name in SKIPPED],
            "files": [_describe(staging, path) for path in _walk(staging)],
        }
        (staging / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
        if archive:
            partial = target.with_name(target.name + ".partial")
            with tarfile.open(partial, "w:gz") as tar:
                for path in [staging / MANIFEST, *_walk(staging)]:
                    tar.add(path, arcname=path.relative_to(staging).as_posix(), recursive=False)
            _fsync(partial)
            os.replace(partial, target)
        else:
            if target.exists():
                shutil.rmtree(target)  # force, checked above
            shutil.copytree(staging, target)
    os.chmod(target, 0o600 if archive else 0o700)
    return BackupResult(target, manifest, sqlite_path is not None, advice)


def pg_dump_command(url: str, output: Path) -> str:
    """The ``pg_dump`` command that saves the PostgreSQL store ``url`` (password left out:
    libpq reads ``PGPASSWORD`` or ``~/.pgpass``)."""
    from sqlalchemy.engine import make_url

    parsed = make_url(url)
    parts = ["pg_dump", "--format=custom", f"--file={output}"]
    if parsed.host:
        parts.append(f"--host={parsed.host}")
    if parsed.port:
        parts.append(f"--port={parsed.port}")
    if parsed.username:
        parts.append(f"--username={parsed.username}")
    parts.append(parsed.database or "vareon")
    return " ".join(parts)


def _copy_sqlite(url: str, source: Path, copy: Path, busy_timeout: float) -> dict[str, Any]:
    from .store.lock import StoreLock

    if not source.is_file():
        raise BackupError(f"there is no store at {source}; start the runtime once (it creates it) or check [runtime] data_dir")
    with StoreLock(url) as lock:
        # Shared, as a running store holds it: a restore or a `vareon db copy` (exclusive)
        # cannot replace the store under the copy.
        lock.hold_shared(wait=busy_timeout)
        try:
            reader = sqlite3.connect(f"file:{source}?mode=ro", uri=True, timeout=busy_timeout)
        except sqlite3.Error as exc:
            raise BackupError(f"cannot open the store {source}: {exc}") from exc
        writer = sqlite3.connect(copy)
        try:
            # One step (pages=-1): a single read transaction, so the copy is one snapshot.
            reader.backup(writer)
            # A file standing alone (the store's WAL mode travels in the header): nothing
            # beside it to lose; the runtime turns WAL on again when it opens it.
            writer.execute("PRAGMA journal_mode=DELETE")
            check = writer.execute("PRAGMA quick_check").fetchone()[0]
            page_size = writer.execute("PRAGMA page_size").fetchone()[0]
            pages = writer.execute("PRAGMA page_count").fetchone()[0]
        except sqlite3.Error as exc:
            raise BackupError(f"copying the store {source} failed: {exc}") from exc
        finally:
            writer.close()
            reader.close()
    if check != "ok":
        raise BackupError(f"the copy of {source} fails SQLite's quick_check ({check}); the store itself may be damaged: run `vareon db check`")
    _fsync(copy)
    return {"backend": "sqlite", "included": True, "file": DATABASE, "page_size": page_size, "pages": pages, "quick_check": check}


# -- restore -------------------------------------------------------------------------------------


def restore(config: Config, source: Path, *, force: bool = False) -> RestoreResult:
    """Put the backup at ``source`` in place of ``config``'s store and data files.

    Raises:
        BackupError: the backup is damaged or not one; its schema is newer than this
            installation; the store is PostgreSQL; something would be replaced without
            ``force``.
        StoreInUseError: the runtime (or another ``vareon`` command) has the store open.
    """
    source = source.expanduser().resolve()
    url = config.database_url
    database = _sqlite_path(url)
    if database is None:
        raise BackupError(
            "the configured store is PostgreSQL: restore its pg_dump file with pg_restore (e.g."
            " `pg_restore --clean --dbname=<database> vareon.pgdump`) while the runtime is stopped;"
            " this command restores SQLite stores"
        )
    data_dir = config.data_dir_path
    with _opened(source) as root:
        manifest = _verify(root)
        if not manifest["database"].get("included"):
            raise BackupError(f"{source} holds no database (its store was PostgreSQL); restore that one with pg_restore")
        copy = root / DATABASE
        revisions = read_revisions(copy)
        unknown = unknown_revisions(revisions)
        if unknown:
            raise BackupError(
                f"the backup's store is at schema revision {', '.join(unknown)}, which this installation"
                f" (vareon-runtime {__version__}) does not know: it was made by a newer version"
                f" ({manifest.get('version', '?')}); install that version (or newer) and restore again"
            )
        from .store.lock import StoreLock

        data_dir.mkdir(parents=True, exist_ok=True)
        os.chmod(data_dir, 0o700)
        with StoreLock(url) as lock:
            lock.hold_exclusive()  # refuses while the runtime runs; keeps it from starting
            files = [path for path in _walk(root / DATA)] if (root / DATA).is_dir() else []
            targets = [data_dir / path.relative_to(root / DATA) for path in files]
            present = [path for path in [database, *targets] if path.exists()]
            if present and not force:
                raise BackupError(
                    f"{', '.join(str(p) for p in present)} already exist; pass --force to replace"
                    f" them (each is kept beside as <name>{BEFORE_RESTORE})"
                )
            kept: list[Path] = []
            if database.exists():
                kept.append(_set_aside_store(database))
            _put(copy, database)
            for file, target in zip(files, targets):
                target.parent.mkdir(parents=True, exist_ok=True)
                if target.exists():
                    kept.append(_set_aside(target))
                _put(file, target)
    return RestoreResult(database, targets, kept, revisions, pending_migrations(revisions))


def read_revisions(database: Path) -> dict[str, str]:
    """The schema revision of each component in a SQLite store, ``{branch: revision}``.

    Alembic's version table holds heads only (a branch another one depends on, such as
    ``myntrix`` under ``kit``, is not listed); the branches are read from the ancestry of those
    heads, each at its newest revision there. A revision this installation does not know stands
    for itself (``{"0099_x": "0099_x"}``).
    """
    try:
        connection = sqlite3.connect(f"file:{database}?mode=ro", uri=True)
        try:
            rows = [row[0] for row in connection.execute("SELECT version_num FROM alembic_version")]
        finally:
            connection.close()
    except sqlite3.Error as exc:
        raise BackupError(f"cannot read the schema revisions of {database}: {exc}") from exc
    script = _scripts()
    found: dict[str, str] = {revision: revision for revision in rows if _revision(script, revision) is None}
    ancestry = _ancestry(script, [revision for revision in rows if revision not in found])
    parents = {parent for revision in ancestry for parent in _parents(script, revision, dependencies=False)}
    for revision in sorted(ancestry - parents):
        for label in _labels(script, revision) or [revision]:
            found.setdefault(label, revision)
    return dict(sorted(found.items()))


def unknown_revisions(revisions: dict[str, str]) -> list[str]:
    """The revisions this installation's migrations do not know (made by a newer version, or by
    a component not installed here)."""
    script = _scripts()
    return sorted({revision for revision in revisions.values() if _revision(script, revision) is None})


def pending_migrations(revisions: dict[str, str]) -> list[str]:
    """The components whose store revision is behind this installation's head (or absent)."""
    script = _scripts()
    pending = []
    for head in script.get_heads():
        for label in _labels(script, head) or [head]:
            if revisions.get(label) != head:
                pending.append(label)
    return sorted(pending)


def _scripts() -> Any:
    from alembic.script import ScriptDirectory

    from .store.migrate import alembic_config

    return ScriptDirectory.from_config(alembic_config())


def _revision(script: Any, revision: str) -> Any:
    from alembic.util import CommandError

    try:
        return script.get_revision(revision)
    except CommandError:
        return None


def _labels(script: Any, revision: str) -> list[str]:
    found = _revision(script, revision)
    return sorted(found.branch_labels) if found is not None else []


def _parents(script: Any, revision: str, *, dependencies: bool = True) -> list[str]:
    """A revision's down revisions and (``dependencies``) the revisions, not branch labels, it
    depends on."""
    found = _revision(script, revision)
    if found is None:
        return []
    parents = []
    for value in (found.down_revision, found.dependencies if dependencies else None):
        for parent in (value,) if isinstance(value, str) else (value or ()):
            resolved = _revision(script, parent)
            if resolved is not None and resolved.revision == parent:  # a label names a branch, not a revision
                parents.append(parent)
    return parents


def _ancestry(script: Any, revisions: list[str]) -> set[str]:
    seen: set[str] = set()
    pending = list(revisions)
    while pending:
        revision = pending.pop()
        if revision not in seen:
            seen.add(revision)
            pending.extend(_parents(script, revision))
    return seen


# -- the backup's files ---------------------------------------------------------------------------


@contextmanager
def _opened(source: Path) -> Iterator[Path]:
    """The backup's root directory: ``source`` itself, or a gzipped tar unpacked beside it."""
    if not source.exists():
        raise BackupError(f"there is no backup at {source}")
    if source.is_dir():
        yield source
        return
    try:
        tar = tarfile.open(source, "r:gz")
    except (tarfile.TarError, OSError) as exc:
        raise BackupError(f"{source} is not a backup (a .tar.gz or a directory made by `vareon backup`): {exc}") from exc
    with tar, tempfile.TemporaryDirectory(prefix=".vareon-restore-", dir=source.parent) as tmp:
        root = Path(tmp)
        for member in tar.getmembers():
            name = PurePosixPath(member.name)
            if name.is_absolute() or ".." in name.parts or not (member.isfile() or member.isdir()):
                raise BackupError(f"{source} holds {member.name!r}, which no backup holds (an absolute path, '..', a link or a device); it was not unpacked")
        try:
            tar.extractall(root, **({"filter": "data"} if hasattr(tarfile, "data_filter") else {}))
        except (tarfile.TarError, OSError) as exc:
            raise BackupError(f"{source} could not be unpacked: {exc}") from exc
        yield root


def _verify(root: Path) -> dict[str, Any]:
    """The manifest of the backup at ``root``, once every file it lists matches its sha256."""
    try:
        manifest = json.loads((root / MANIFEST).read_text())
    except (OSError, ValueError) as exc:
        raise BackupError(f"{root} has no readable {MANIFEST}; it is not a backup made by `vareon backup`: {exc}") from exc
    if not isinstance(manifest, dict) or manifest.get("kind") != "vareon-backup":
        raise BackupError(f"{root / MANIFEST} is not the manifest of a Vareon backup")
    if manifest.get("format") != BACKUP_FORMAT:
        raise BackupError(
            f"the backup's format is {manifest.get('format')!r}, this installation reads format {BACKUP_FORMAT};"
            f" restore it with vareon-runtime {manifest.get('version', '?')}"
        )
    listed = {entry["path"]: entry for entry in manifest.get("files", [])}
    present = {path.relative_to(root).as_posix() for path in _walk(root)}
    if present - set(listed) or set(listed) - present:
        raise BackupError(
            f"the backup's files differ from its manifest (missing: {sorted(set(listed) - present) or 'none'};"
            f" not listed: {sorted(present - set(listed)) or 'none'}); it is damaged"
        )
    for name, entry in listed.items():
        path = root / name
        if path.stat().st_size != entry["size"] or _sha256(path) != entry["sha256"]:
            raise BackupError(f"{name} in the backup does not match its sha256 in the manifest; the backup is damaged")
    if not isinstance(manifest.get("database"), dict):
        raise BackupError(f"{root / MANIFEST} says nothing of the database; it is damaged")
    return manifest


def _set_aside_store(database: Path) -> Path:
    """Checkpoint the store (its WAL into the file) and rename it ``*.before-restore``."""
    try:
        connection = sqlite3.connect(database)
        try:
            connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        finally:
            connection.close()
    except sqlite3.Error as exc:
        raise BackupError(f"cannot checkpoint the store {database} before setting it aside: {exc}") from exc
    kept = _set_aside(database)
    for suffix in ("-wal", "-shm", "-journal"):
        leftover = database.with_name(database.name + suffix)
        if leftover.exists():
            os.replace(leftover, kept.with_name(kept.name + suffix))
    return kept


def _set_aside(path: Path) -> Path:
    """Rename ``path`` to ``<name>.before-restore`` (``.before-restore.2``... when taken)."""
    kept = path.with_name(path.name + BEFORE_RESTORE)
    number = 1
    while kept.exists():
        number += 1
        kept = path.with_name(f"{path.name}{BEFORE_RESTORE}.{number}")
    os.replace(path, kept)
    return kept


def _put(source: Path, target: Path) -> None:
    """Copy ``source`` to ``target`` through a temporary file and a rename (mode 0600)."""
    partial = target.with_name(f".{target.name}.restoring")
    shutil.copyfile(source, partial)
    os.chmod(partial, 0o600)
    _fsync(partial)
    os.replace(partial, target)


def _is_archive(path: Path) -> bool:
    return path.name.endswith((".tar.gz", ".tgz"))


def _check_target(target: Path, archive: bool, force: bool) -> None:
    if not target.parent.is_dir():
        raise BackupError(f"{target.parent} does not exist; create it first")
    if not target.exists() or force:
        if target.exists() and archive != target.is_file():
            raise BackupError(f"{target} exists and is a {'directory' if target.is_dir() else 'file'}; choose another path")
        return
    if target.is_dir() and not any(target.iterdir()):
        return
    raise BackupError(f"{target} already exists; choose another path or pass --force to replace it")


def _sqlite_path(url: str) -> Path | None:
    """The file of a SQLite store URL, or None for another backend."""
    from sqlalchemy.engine import make_url

    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite":
        return None
    database = parsed.database or ""
    if parsed.query.get("uri") == "true":
        database = database.removeprefix("file:").split("?", 1)[0]
    if not database or database == ":memory:":
        raise BackupError(f"the store {url} is not a file; there is nothing to back up")
    return Path(database).expanduser().resolve()


def _store_files(database: Path | None) -> set[Path]:
    if database is None:
        return set()
    return {database.with_name(database.name + suffix) for suffix in _STORE_SUFFIXES}


def _data_files(data_dir: Path, store_files: set[Path]) -> list[Path]:
    """The data directory's files worth keeping: not the store's own, not transient ones."""
    if not data_dir.is_dir():
        return []
    kept = []
    for path in _walk(data_dir):
        relative = path.relative_to(data_dir)
        if relative.parts[0] in SKIPPED or path in store_files or BEFORE_RESTORE in path.name:
            continue
        kept.append(path)
    return kept


def _walk(root: Path) -> list[Path]:
    """Every regular file below ``root``, sorted, without ``manifest.json`` at the top."""
    return sorted(
        path for path in root.rglob("*") if path.is_file() and not path.is_symlink() and path != root / MANIFEST
    )


def _describe(root: Path, path: Path) -> dict[str, Any]:
    return {"path": path.relative_to(root).as_posix(), "size": path.stat().st_size, "sha256": _sha256(path)}


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as file:
        while chunk := file.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _fsync(path: Path) -> None:
    with path.open("rb") as file:
        os.fsync(file.fileno())
