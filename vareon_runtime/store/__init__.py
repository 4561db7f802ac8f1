"""The store: SQLAlchemy tables, engines, migrations and the single-writer ``Store`` actor.

``vareon_runtime.store.migrate`` (Alembic, imported lazily) is deliberately not re-exported: the
Store applies the migrations itself, and importing it here would shadow the module's name.
"""

from vareon_runtime.store.engine import Engines as Engines
from vareon_runtime.store.engine import create_engines as create_engines
from vareon_runtime.store.models import Base as Base
from vareon_runtime.store.models import EventRecord as EventRecord
from vareon_runtime.store.models import UTCDateTime as UTCDateTime
from vareon_runtime.store.store import Store as Store
from vareon_runtime.store.telemetry import TelemetryRecord as TelemetryRecord

__all__ = ["Base", "Engines", "EventRecord", "Store", "TelemetryRecord", "UTCDateTime", "create_engines"]
