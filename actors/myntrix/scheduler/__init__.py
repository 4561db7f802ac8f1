"""Myntrix task scheduling: the cron scheduler actor, task actions, runs and their history.

The web front reaches it through its face, :class:`Tasks` (``registry.face(Tasks)``, provided by
:mod:`actors.myntrix.scheduler.component`). Action kinds are a registry (:data:`ACTIONS`):
``script``, ``api``, ``agent``.
"""

from actors.myntrix.scheduler.actions import ACTIONS as ACTIONS
from actors.myntrix.scheduler.actions import Action as Action
from actors.myntrix.scheduler.actions import ActionContext as ActionContext
from actors.myntrix.scheduler.actions import ActionOutcome as ActionOutcome
from actors.myntrix.scheduler.actions import ActionRegistry as ActionRegistry
from actors.myntrix.scheduler.actions import UnknownActionError as UnknownActionError
from actors.myntrix.scheduler.actor import TaskScheduler as TaskScheduler
from actors.myntrix.scheduler.component import SCHEDULER_NAME as SCHEDULER_NAME
from actors.myntrix.scheduler.component import SchedulerModule as SchedulerModule
from actors.myntrix.scheduler.component import component as component
from actors.myntrix.scheduler.cron import CronSchedule as CronSchedule
from actors.myntrix.scheduler.cron import next_fire_times as next_fire_times
from actors.myntrix.scheduler.cron import parse_cron as parse_cron
from actors.myntrix.scheduler.errors import InvalidCronError as InvalidCronError
from actors.myntrix.scheduler.errors import TaskBusyError as TaskBusyError
from actors.myntrix.scheduler.messages import GetSchedule as GetSchedule
from actors.myntrix.scheduler.messages import ScheduleTask as ScheduleTask
from actors.myntrix.scheduler.messages import ScheduleTasks as ScheduleTasks
from actors.myntrix.scheduler.messages import TaskSpec as TaskSpec
from actors.myntrix.scheduler.messages import UnscheduleTask as UnscheduleTask
from actors.myntrix.scheduler.models import ScheduledTaskRecord as ScheduledTaskRecord
from actors.myntrix.scheduler.models import TASK_RUNS as TASK_RUNS
from actors.myntrix.scheduler.models import TaskRunRecord as TaskRunRecord
from actors.myntrix.scheduler.run import TaskRunControl as TaskRunControl
from actors.myntrix.scheduler.run import TaskRunWorker as TaskRunWorker
from actors.myntrix.scheduler.run import run_topic as run_topic
from actors.myntrix.scheduler.runs import TaskRuns as TaskRuns
from actors.myntrix.scheduler.schemas import MisfirePolicy as MisfirePolicy
from actors.myntrix.scheduler.schemas import Overlap as Overlap
from actors.myntrix.scheduler.schemas import RunStatus as RunStatus
from actors.myntrix.scheduler.schemas import TASK_RUN_WORDS as TASK_RUN_WORDS
from actors.myntrix.scheduler.schemas import RunTrigger as RunTrigger
from actors.myntrix.scheduler.schemas import Task as Task
from actors.myntrix.scheduler.schemas import BULK_MAX as BULK_MAX
from actors.myntrix.scheduler.schemas import TaskBulkCreate as TaskBulkCreate
from actors.myntrix.scheduler.schemas import TaskBulkCreated as TaskBulkCreated
from actors.myntrix.scheduler.schemas import TaskCreate as TaskCreate
from actors.myntrix.scheduler.schemas import TaskRun as TaskRun
from actors.myntrix.scheduler.schemas import TaskUpdate as TaskUpdate
from actors.myntrix.scheduler.settings import SchedulerSettings as SchedulerSettings
from actors.myntrix.scheduler.service import Tasks as Tasks

__all__ = [
    "ACTIONS",
    "BULK_MAX",
    "SCHEDULER_NAME",
    "TASK_RUNS",
    "TASK_RUN_WORDS",
    "Action",
    "ActionContext",
    "ActionOutcome",
    "ActionRegistry",
    "CronSchedule",
    "GetSchedule",
    "InvalidCronError",
    "MisfirePolicy",
    "Overlap",
    "RunStatus",
    "RunTrigger",
    "ScheduleTask",
    "ScheduleTasks",
    "ScheduledTaskRecord",
    "SchedulerModule",
    "SchedulerSettings",
    "Task",
    "TaskBulkCreate",
    "TaskBulkCreated",
    "TaskBusyError",
    "TaskCreate",
    "TaskRun",
    "TaskRunControl",
    "TaskRunRecord",
    "TaskRunWorker",
    "TaskRuns",
    "TaskScheduler",
    "TaskSpec",
    "TaskUpdate",
    "Tasks",
    "UnknownActionError",
    "UnscheduleTask",
    "component",
    "next_fire_times",
    "parse_cron",
    "run_topic",
]
