"""Alembic revisions of the Myntrix devices (entry point ``vareon.migrations: devices``; branch ``devices``)."""
