"""Alembic environment of the runtime (a package so that it ships in the wheel)."""
