"""Alembic environment: runs the migrations on the connection the store hands over.

The store calls ``alembic.command.upgrade`` with ``config.attributes["connection"]`` set to its
writer connection (see ``vareon_runtime.store.migrate``); there is no ``alembic.ini`` and no
offline (SQL script) mode.
"""

from __future__ import annotations

from alembic import context

import vareon_runtime.auth.models  # noqa: F401  (registers the kernel's auth tables on Base)
from vareon_runtime.errors import StoreUsageError
from vareon_runtime.store.models import Base

config = context.config
connection = config.attributes.get("connection")
if context.is_offline_mode() or connection is None:
    raise StoreUsageError(
        "the runtime's migrations run on a connection passed as "
        "config.attributes['connection'] (offline mode is not supported); "
        "use vareon_runtime.store.migrate.migrate(engine) or "
        "alembic_config(connection=...)"
    )

context.configure(
    connection=connection,
    target_metadata=Base.metadata,
    # SQLite cannot ALTER most things: autogenerate writes batch (copy-and-move) operations.
    render_as_batch=connection.dialect.name == "sqlite",
)
with context.begin_transaction():
    context.run_migrations()
