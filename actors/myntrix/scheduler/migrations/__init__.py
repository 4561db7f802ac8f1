"""Alembic revisions of the Myntrix scheduler (entry point ``vareon.migrations: scheduler``; branch ``scheduler``)."""
