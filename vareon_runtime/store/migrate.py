"""Apply the Alembic migrations of the kernel and of every domain package at start.

The kernel's revisions live in ``vareon_runtime/store/migrations/versions``. A domain package
contributes its own directory through the entry point group ``vareon.migrations``: the entry
point's value is an importable package whose directory holds revision files, which start their
own branch (``branch_labels=("myntrix",)``, ``depends_on="kernel"`` where they refer to kernel
tables). The store upgrades to ``heads``, so every branch is brought up to date.

Alembic is imported inside the functions: importing it costs noticeable time on an edge box,
and a runtime started with ``migrate=False`` never needs it.
"""

from __future__ import annotations

import logging
import os
from importlib import import_module
from importlib.metadata import entry_points
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import Engine

from vareon_runtime.errors import StoreError

if TYPE_CHECKING:
    from alembic.config import Config

__all__ = ["ENTRY_POINT_GROUP", "MIGRATIONS_DIR", "alembic_config", "migrate", "version_locations"]

ENTRY_POINT_GROUP = "vareon.migrations"
MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"

logger = logging.getLogger("vareon.store")


def version_locations() -> list[Path]:
    """Return the kernel's revision directory followed by every contributed one.

    Raises:
        StoreError: two entry points share a name, or one does not name an importable package.
    """
    locations = [MIGRATIONS_DIR / "versions"]
    seen: dict[str, str] = {}
    for ep in sorted(entry_points(group=ENTRY_POINT_GROUP), key=lambda ep: ep.name):
        if ep.name in seen:
            raise StoreError(
                f"two {ENTRY_POINT_GROUP} entry points are named {ep.name!r} "
                f"({seen[ep.name]!r} and {ep.value!r}); rename one of them"
            )
        seen[ep.name] = ep.value
        if ep.attr:
            raise StoreError(
                f"{ENTRY_POINT_GROUP} entry point {ep.name!r} must name a package, "
                f"not an attribute ({ep.value!r}); use e.g. 'actors.myntrix.migrations'"
            )
        try:
            module = import_module(ep.module)
        except ImportError as exc:
            raise StoreError(
                f"{ENTRY_POINT_GROUP} entry point {ep.name!r} names {ep.value!r}, "
                f"which cannot be imported: {exc}"
            ) from exc
        paths = list(getattr(module, "__path__", ()))
        if len(paths) != 1:
            raise StoreError(
                f"{ENTRY_POINT_GROUP} entry point {ep.name!r} must name a regular package "
                f"(a directory with __init__.py) holding revision files, not {ep.value!r}"
            )
        locations.append(Path(paths[0]))
    return locations


def alembic_config(**attributes: Any) -> Config:
    """Return an Alembic ``Config`` for the runtime's migrations, without an ``alembic.ini``.

    Args:
        **attributes: put into ``config.attributes``; ``env.py`` reads ``connection`` there.
    """
    from alembic.config import Config

    config = Config()
    # ConfigParser interpolation treats '%' specially.
    config.set_main_option("script_location", str(MIGRATIONS_DIR).replace("%", "%%"))
    config.set_main_option("path_separator", "os")
    config.set_main_option(
        "version_locations",
        os.pathsep.join(str(path).replace("%", "%%") for path in version_locations()),
    )
    config.attributes.update(attributes)
    return config


def migrate(engine: Engine) -> None:
    """Upgrade the database behind ``engine`` (the store's writer engine) to ``heads``.

    Raises:
        StoreError: a migration failed (the upgrade is rolled back where the backend allows),
            or, on SQLite, it left rows that break a foreign key.
    """
    from alembic import command
    from alembic.util import CommandError
    from sqlalchemy.exc import SQLAlchemyError

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
                    command.upgrade(alembic_config(connection=connection), "heads")
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

