"""The store: SQLAlchemy tables, engines, migrations and the single-writer ``Store`` actor.

``vareon_runtime.store.migrate`` (Alembic, imported lazily) is deliberately not re-exported: the
Store applies the migrations itself, and importing it here would shadow the module's name. Nor
are the modules of ``vareon db`` (``copy``, ``check`` and what they stand on: ``schema``,
``digest``, ``revisions``): they are maintenance, imported by the command that runs them, not
at every start.
"""

from vareon_runtime.store.engine import Engines as Engines
from vareon_runtime.store.engine import create_engines as create_engines
from vareon_runtime.store.models import Base as Base
from vareon_runtime.store.models import EventRecord as EventRecord
from vareon_runtime.store.models import UTCDateTime as UTCDateTime
from vareon_runtime.store.store import Store as Store
from vareon_runtime.store.telemetry import TelemetryRecord as TelemetryRecord

__all__ = ["Base", "Engines", "EventRecord", "Store", "TelemetryRecord", "UTCDateTime", "create_engines"]
