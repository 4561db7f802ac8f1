"""Where a database stands against the installed migrations, and bringing one to given revisions.

What ``vareon db check`` reports (:func:`revisions`: current, pending, unknown) and how ``vareon
db copy`` makes its target's tables (:func:`upgrade_to`: exactly the source's revisions, in the
copy's transaction). The revisions are the store's own: the kernel's and every installed
component's (:func:`vareon_runtime.store.migrate.alembic_config`). Alembic is imported inside the
functions, as in :mod:`vareon_runtime.store.migrate`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import Connection

from vareon_runtime.errors import StoreError
from vareon_runtime.store.migrate import alembic_config

__all__ = ["Revisions", "current_revisions", "revisions", "upgrade_to"]


@dataclass(frozen=True)
class Revisions:
    """Where a database stands against this installation's migrations.

    Attributes:
        current: the revisions its ``alembic_version`` holds (a head of each branch), sorted;
            empty for a database the runtime never started on.
        pending: the revisions this installation has and the database has not applied, in
            the order they would be applied (the store applies them at its next start).
        unknown: revisions of the database this installation does not know (a newer
            vareon-runtime migrated it).
        branches: each known revision's branch label (``kernel``, ``myntrix``, ...).
    """

    current: tuple[str, ...]
    pending: tuple[str, ...]
    unknown: tuple[str, ...]
    branches: dict[str, str]

    def named(self, revisions: Sequence[str]) -> str:
        """``revisions`` with their branches, for a message: ``0003_telemetry (kernel), ...``."""
        return ", ".join(f"{r} ({self.branches[r]})" if r in self.branches else r for r in revisions)


def current_revisions(connection: Connection) -> tuple[str, ...]:
    """The revisions the database behind ``connection`` is at (read only; sorted)."""
    from alembic.runtime.migration import MigrationContext

    return tuple(sorted(MigrationContext.configure(connection).get_current_heads()))


def revisions(connection: Connection, extra: Sequence[str] = ()) -> Revisions:
    """Compare the database behind ``connection`` with the installed migrations (read only).

    Args:
        extra: packages of revisions besides the kernel's and the installed components'.
    """
    from alembic.script import ScriptDirectory

    script = ScriptDirectory.from_config(alembic_config(extra))
    known = list(script.walk_revisions())  # newest first, across every branch
    branches = {r.revision: min(r.branch_labels) for r in known if r.branch_labels}
    current = current_revisions(connection)
    names = {r.revision for r in known}
    unknown = tuple(r for r in current if r not in names)
    found = tuple(r for r in current if r in names)
    applied = (
        {r.revision for r in script.revision_map.iterate_revisions(found, "base", inclusive=True)}
        if found
        else set()
    )
    pending = tuple(r.revision for r in reversed(known) if r.revision not in applied)
    return Revisions(current=current, pending=pending, unknown=unknown, branches=branches)


def upgrade_to(connection: Connection, targets: Sequence[str], extra: Sequence[str] = ()) -> None:
    """Upgrade the database behind ``connection`` to exactly ``targets``, in the caller's transaction.

    ``vareon db copy`` brings an empty target to its source's revisions (not to ``heads``: the
    rows it copies have the source's shape). On SQLite the caller turns foreign keys off first,
    as :func:`vareon_runtime.store.migrate.migrate` does.

    Raises:
        StoreError: a target is not a revision this installation knows, or a migration failed.
    """
    from alembic import command
    from alembic.script.revision import RevisionError
    from alembic.util import CommandError
    from sqlalchemy.exc import SQLAlchemyError

    config = alembic_config(extra, connection=connection)
    for target in targets:
        try:
            command.upgrade(config, target)
        except (CommandError, RevisionError) as exc:
            raise StoreError(
                f"cannot bring the database to revision {target!r}: {exc}; is this vareon-runtime"
                " older than the one that migrated the source? Upgrade it, then try again"
            ) from exc
        except SQLAlchemyError as exc:
            raise StoreError(f"applying the database migrations failed: {exc}") from exc
