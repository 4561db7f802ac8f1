"""The edge budget: a start with nothing to migrate loads no Alembic, and `vareon bench edge`
measures real starts (docs/decisions/0027-edge-budget.md)."""

from __future__ import annotations

import os
import sys
import textwrap
from pathlib import Path

import pytest
import trio
from sqlalchemy import create_engine, text

from vareon_runtime.bench.edge import LAZY_PACKAGES, import_times, start_runtime
from vareon_runtime.bench.processes import run_vareon
from vareon_runtime.runtime import return_free_memory
from vareon_runtime.store import Store
from vareon_runtime.store.heads import at_heads, expected_versions
from vareon_runtime.store.migrate import migrate, version_locations

TIMEOUT = 60


def revision_file(directory: Path, name: str, body: str) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / f"{name}.py").write_text(textwrap.dedent(body))


def test_the_heads_are_read_from_the_files_as_alembic_keeps_them(tmp_path: Path) -> None:
    # The shapes the runtime's revisions use: unpacked pairs, annotated names, a branch label
    # in depends_on (naming the revision that declares it), tuples.
    revision_file(tmp_path, "a", 'revision, down_revision = "a", None\nbranch_labels, depends_on = ("k",), None\n')
    revision_file(tmp_path, "b", 'revision: str = "b"\ndown_revision: str | None = "a"\n')
    revision_file(tmp_path, "c", 'revision = "c"\ndown_revision = None\ndepends_on = ("k",)\n')
    revision_file(tmp_path, "d", 'revision, down_revision = "d", None\nbranch_labels, depends_on = None, "c"\n')
    (tmp_path / "__init__.py").write_text("revision = 'not a revision file'\n")
    (tmp_path / "notes.txt").write_text("not python")
    # a is below b (down_revision) and c (the label k); c is below d (depends_on).
    assert expected_versions([tmp_path]) == {"b", "d"}


@pytest.mark.parametrize(
    "body",
    [
        'import uuid\nrevision = str(uuid.uuid4())\ndown_revision = None\n',  # computed
        'down_revision = None\n',  # no revision at all: Alembic says what is wrong
        'revision = "x"\ndown_revision = "nowhere"\n',  # builds on a revision no file has
        'revision, down_revision = names()\n',  # unpacked from a call
        'revision = "x"\ndown_revision = None\ndef broken(:\n',  # does not parse
    ],
)
def test_a_file_not_plain_enough_leaves_the_answer_to_alembic(tmp_path: Path, body: str) -> None:
    revision_file(tmp_path, "x", body)
    assert expected_versions([tmp_path]) is None


async def test_after_a_migration_the_database_is_at_the_heads_the_files_give(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'vareon.db'}"
    with trio.fail_after(TIMEOUT):
        async with trio.open_nursery() as nursery:
            store: Store = await nursery.start(Store(url).run)
            await store.close()
    engine = create_engine(url)
    try:
        with engine.connect() as connection:
            stored = set(connection.execute(text("SELECT version_num FROM alembic_version")).scalars())
        assert expected_versions(version_locations()) == stored
        assert at_heads(engine, version_locations())
    finally:
        engine.dispose()


def test_a_new_revision_is_pending_and_then_applied(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    package = tmp_path / "site" / "edge_demo" / "migrations"
    (tmp_path / "site" / "edge_demo").mkdir(parents=True)
    (tmp_path / "site" / "edge_demo" / "__init__.py").write_text("")
    revision_file(package, "__init__", "")
    revision_file(
        package,
        "0001_edge_demo",
        '''
        import sqlalchemy as sa
        from alembic import op

        revision, down_revision = "0001_edge_demo", None
        branch_labels, depends_on = ("edge_demo",), "kernel"


        def upgrade() -> None:
            op.create_table("edge_demo", sa.Column("id", sa.Integer(), primary_key=True))
        ''',
    )
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    engine = create_engine(f"sqlite:///{tmp_path / 'vareon.db'}")
    try:
        assert not at_heads(engine, version_locations())  # an empty database
        migrate(engine)
        assert at_heads(engine, version_locations())
        # A component's new revision: pending, so Alembic runs and applies it.
        assert not at_heads(engine, version_locations(["edge_demo.migrations"]))
        migrate(engine, ["edge_demo.migrations"])
        assert at_heads(engine, version_locations(["edge_demo.migrations"]))
        with engine.connect() as connection:
            assert connection.execute(text("SELECT count(*) FROM edge_demo")).scalar_one() == 0
    finally:
        engine.dispose()


WARM_START = """
import sys, trio
from vareon_runtime.store import Store

async def main():
    async with trio.open_nursery() as nursery:
        store = await nursery.start(Store(sys.argv[1]).run)
        await store.close()

trio.run(main)
print(sorted(m for m in sys.modules if m.split(".")[0] in ("alembic", "mako", "pygments")))
"""


async def test_a_start_with_nothing_to_migrate_does_not_import_alembic(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'vareon.db'}"

    async def start() -> str:
        done = await trio.run_process([sys.executable, "-c", WARM_START, url], capture_stdout=True)
        return done.stdout.decode().strip()

    with trio.fail_after(TIMEOUT):
        first = await start()  # a first boot: every migration runs, through Alembic
        second = await start()
    assert "alembic" in first
    assert second == "[]"


def test_free_memory_goes_back_where_the_c_library_can() -> None:
    glibc = os.confstr("CS_GNU_LIBC_VERSION") if hasattr(os, "confstr") else None
    assert return_free_memory() is bool(glibc)


def test_the_bench_times_a_real_start_and_finds_no_lazy_package_imported(tmp_path: Path) -> None:
    env = {**os.environ, "VAREON_RUNTIME_LOG_LEVEL": "warning"}
    config = tmp_path / "config.toml"
    run_vareon("init", "--config", str(config), env={**env, "VAREON_RUNTIME_DATA_DIR": str(tmp_path / "data")})
    first = start_runtime(config, tmp_path / "data", env=env, idle=0.5, log=tmp_path / "first.log")
    assert first.seconds > 0 and first.cpu_seconds > 0
    assert first.rss_mib is not None and first.rss_mib > 10
    imports = import_times(config, tmp_path / "data", env=env, log=tmp_path / "imports.log")
    assert {"trio", "sqlalchemy", "vareon_runtime", "web"} <= set(imports)
    assert [package for package in LAZY_PACKAGES if package in imports] == []


def test_the_edge_bench_is_installed() -> None:
    from importlib.metadata import entry_points

    (point,) = [p for p in entry_points(group="vareon.benchmarks") if p.name == "edge"]
    assert point.value == "vareon_runtime.bench.edge:main"
