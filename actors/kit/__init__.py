"""The domain kit: what every domain stands on, so that none copies another.

- :mod:`~actors.kit.resources`: a domain's persisted entities (:class:`Resources`: get, list into
  one :class:`~actors.kit.wire.Page`, per-id locks, announcements) and an actor per entity
  (:class:`EntityActors`).
- :mod:`~actors.kit.module`: the domain as a child of the root supervisor (:class:`DomainModule`:
  its supervisor, its services, its boot, its face in the registry, draining before it stops).
- :mod:`~actors.kit.states`: one set of run states (:class:`RunState`) and each domain's wire
  words for them (:class:`Words`).
- :mod:`~actors.kit.runs`, :mod:`~actors.kit.recorder`: runs booked, run under a timeout,
  cancelled with who asked, logged, and recorded in batches with their jobs, recovered after a
  crash.
- :mod:`~actors.kit.jobs`: the ``jobs`` table every domain reports into (:class:`Jobs`), each
  change published on ``job.<id>``.
- :mod:`~actors.kit.processes`: the checks before a user's program is allowed to run.
- :mod:`~actors.kit.parsing`, :mod:`~actors.kit.wire`: the checks at a domain's door and the wire
  shapes (camelCase or snake_case models, timestamps, pages).

The keyed registry every plug-in point uses is the kernel's (:class:`vareon_runtime.keyed.Keyed`:
drivers need it too), and the process runner is the drivers' (:mod:`drivers.process`).
``docs/domains.md`` is the recipe for a new domain.
"""

from actors.kit.jobs import JOB_LOG_MAX as JOB_LOG_MAX
from actors.kit.jobs import Jobs as Jobs
from actors.kit.jobs import JobTicket as JobTicket
from actors.kit.jobs import finished_job_row as finished_job_row
from actors.kit.jobs import job_row as job_row
from actors.kit.jobs import job_topic as job_topic
from actors.kit.models import JobRecord as JobRecord
from actors.kit.module import DomainModule as DomainModule
from actors.kit.parsing import LIST_LIMIT_MAX as LIST_LIMIT_MAX
from actors.kit.parsing import check_page as check_page
from actors.kit.parsing import enum_value as enum_value
from actors.kit.parsing import parse_id as parse_id
from actors.kit.parsing import parse_model as parse_model
from actors.kit.processes import check_command as check_command
from actors.kit.recorder import Interrupted as Interrupted
from actors.kit.recorder import Recorder as Recorder
from actors.kit.recorder import RunNote as RunNote
from actors.kit.recorder import RunTable as RunTable
from actors.kit.resources import EntityActors as EntityActors
from actors.kit.resources import Filter as Filter
from actors.kit.resources import KeyedLocks as KeyedLocks
from actors.kit.resources import Resources as Resources
from actors.kit.runs import Outcome as Outcome
from actors.kit.runs import RunBook as RunBook
from actors.kit.runs import RunControl as RunControl
from actors.kit.runs import RunLog as RunLog
from actors.kit.runs import RunWorker as RunWorker
from actors.kit.schemas import JOB_WORDS as JOB_WORDS
from actors.kit.schemas import Job as Job
from actors.kit.schemas import JobStatus as JobStatus
from actors.kit.states import RunState as RunState
from actors.kit.states import Words as Words
from actors.kit.wire import CamelModel as CamelModel
from actors.kit.wire import LocalTimestamp as LocalTimestamp
from actors.kit.wire import Page as Page
from actors.kit.wire import SnakeModel as SnakeModel
from actors.kit.wire import Timestamp as Timestamp

__all__ = [
    "JOB_LOG_MAX",
    "JOB_WORDS",
    "LIST_LIMIT_MAX",
    "CamelModel",
    "DomainModule",
    "EntityActors",
    "Filter",
    "Interrupted",
    "Job",
    "JobRecord",
    "JobStatus",
    "JobTicket",
    "Jobs",
    "KeyedLocks",
    "LocalTimestamp",
    "Outcome",
    "Page",
    "Recorder",
    "Resources",
    "RunBook",
    "RunControl",
    "RunLog",
    "RunNote",
    "RunState",
    "RunTable",
    "RunWorker",
    "SnakeModel",
    "Timestamp",
    "Words",
    "check_command",
    "check_page",
    "enum_value",
    "finished_job_row",
    "job_row",
    "job_topic",
    "parse_id",
    "parse_model",
]
