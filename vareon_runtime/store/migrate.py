"""Apply the Alembic migrations of the kernel and of every domain package at start.

The kernel's revisions live in ``vareon_runtime/store/migrations/versions``. A component
contributes its own directory through its declaration (``Component.migrations``, see
:mod:`vareon_runtime.component`): an importable package whose directory holds revision files,
which start their own branch (``branch_labels=("myntrix",)``, ``depends_on="kernel"`` where they
refer to kernel tables). Every installed component's revisions are applied, whether or not this
runtime starts it (a database must never hold a revision its runtime cannot find). The store
upgrades to ``heads``, so every branch is brought up to date.

Alembic is imported only when a migration is pending: importing it (with Mako, Pygments and
every SQL dialect it knows) costs about 11 MiB and 0.3 s of CPU on an edge box. At each start
:func:`migrate` first compares the revisions the database holds (``alembic_version``, read with
the engine) with those the revision files lead to (their ``revision``, ``down_revision`` and
``depends_on``, read without running them: :mod:`vareon_runtime.store.heads`); only when they
differ, or a file is not plain enough to read so, does Alembic run
(docs/decisions/0027-edge-budget.md).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from importlib import import_module
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import Engine

from vareon_runtime.errors import StoreError

if TYPE_CHECKING:
    from alembic.config import Config

__all__ = ["MIGRATIONS_DIR", "alembic_config", "migrate", "version_locations"]

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"

logger = logging.getLogger("vareon.store")


def version_locations(extra: Sequence[str] = ()) -> list[Path]:
    """Return the kernel's revision directory followed by every component's.

    Args:
        extra: packages of revisions besides the installed components' (a component given to
            the runtime in code).

    Raises:
        StoreError: a component's migrations do not name an importable regular package.
    """
    from vareon_runtime.component import discover_components
    from vareon_runtime.errors import ConfigError

    try:
        declared = [(c.name, c.migrations) for c in discover_components() if c.migrations]
    except ConfigError as exc:
        raise StoreError(f"cannot find the components' migrations: {exc}") from exc
    declared += [(package, package) for package in extra]
    locations = [MIGRATIONS_DIR / "versions"]
    for name, package in declared:
        try:
            module = import_module(package)
        except ImportError as exc:
            raise StoreError(
                f"the migrations of component {name!r} name {package!r}, which cannot be imported: {exc}"
            ) from exc
        paths = list(getattr(module, "__path__", ()))
        if len(paths) != 1:
            raise StoreError(
                f"the migrations of component {name!r} must name a regular package (a directory"
                f" with __init__.py) holding revision files, not {package!r}"
            )
        path = Path(paths[0])
        if path not in locations:
            locations.append(path)
    return locations


def alembic_config(extra: Sequence[str] = (), **attributes: Any) -> Config:
    """Return an Alembic ``Config`` for the runtime's migrations, without an ``alembic.ini``.

    Args:
        extra: packages of revisions besides the installed components' (see
            :func:`version_locations`).
        **attributes: put into ``config.attributes``; ``env.py`` reads ``connection`` there.
    """
    from alembic.config import Config

    config = Config()
    # ConfigParser interpolation treats '%' specially.
    config.set_main_option("script_location", str(MIGRATIONS_DIR).replace("%", "%%"))
    config.set_main_option("path_separator", "os")
    config.set_main_option(
        "version_locations",
        os.pathsep.join(str(path).replace("%", "%%") for path in version_locations(extra)),
    )
    config.attributes.update(attributes)
    return config


def migrate(engine: Engine, extra: Sequence[str] = ()) -> None:
    """Upgrade the database behind ``engine`` (the store's writer engine) to ``heads``.

    A database already there is left alone without loading Alembic.

    Args:
        extra: packages of revisions besides the kernel's and the installed components'.

    Raises:
        StoreError: a migration failed (the upgrade is rolled back where the backend allows),
            or, on SQLite, it left rows that break a foreign key.
    """
    from sqlalchemy.exc import SQLAlchemyError

    from vareon_runtime.store.heads import at_heads

    try:
        if at_heads(engine, version_locations(extra)):
            logger.debug("the database is at every head; no migration to apply")
            return
    except SQLAlchemyError as exc:
        raise StoreError(f"reading the database's revisions failed: {exc}") from exc

    from alembic import command
    from alembic.util import CommandError

    sqlite = engine.dialect.name == "sqlite"
    try:
        with engine.connect() as connection:
            raw = connection.connection.dbapi_connection
            assert raw is not None, "a checked-out connection has its DBAPI connection"
            if sqlite:
                # SQLite's recipe for schema changes: batch migrations recreate tables, and with
                # foreign keys on, dropping the old table would cascade. The PRAGMA only works
                # outside a transaction, so it goes to the driver before the BEGIN.
                raw.execute("PRAGMA foreign_keys=OFF")
            try:
                with connection.begin():
                    command.upgrade(alembic_config(extra, connection=connection), "heads")
                    if sqlite:
                        broken = connection.exec_driver_sql("PRAGMA foreign_key_check").all()
                        if broken:
                            raise StoreError(
                                "the migrations left rows that break foreign keys: "
                                f"{broken[:10]!r}; the upgrade was rolled back, "
                                "fix the migration's data step"
                            )
            finally:
                if sqlite:
                    raw.execute("PRAGMA foreign_keys=ON")
    except (CommandError, SQLAlchemyError) as exc:
        raise StoreError(f"applying the database migrations failed: {exc}") from exc
    logger.debug("migrations applied up to heads")

