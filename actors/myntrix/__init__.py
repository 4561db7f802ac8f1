"""Myntrix: agents (programs the runtime keeps alive as supervised OS processes), host metrics,
jobs.

The web front reaches the domain through the registry: ``await agents_of(ctx.registry)`` answers
the :class:`Agents` face of the running module (see :mod:`actors.myntrix.component`), and
``await jobs_of(ctx.registry)`` the :class:`Jobs` face, ``await sampler_of(ctx.registry)`` its
host metrics sampler.
"""

from actors.myntrix.agent import AgentActor as AgentActor
from actors.myntrix.agent import ProcessTable as ProcessTable
from actors.myntrix.agents import Agents as Agents
from actors.myntrix.agents import check_runnable as check_runnable
from actors.myntrix.component import MYNTRIX_NAME as MYNTRIX_NAME
from actors.myntrix.component import Myntrix as Myntrix
from actors.myntrix.component import agents_of as agents_of
from actors.myntrix.component import jobs_of as jobs_of
from actors.myntrix.component import myntrix_component as myntrix_component
from actors.myntrix.component import sampler_of as sampler_of
from actors.myntrix.jobs import Jobs as Jobs
from actors.myntrix.messages import GetAgentLogs as GetAgentLogs
from actors.myntrix.messages import GetAgents as GetAgents
from actors.myntrix.messages import GetAgentState as GetAgentState
from actors.myntrix.messages import GetJobs as GetJobs
from actors.myntrix.messages import GetMetricsSampler as GetMetricsSampler
from actors.myntrix.messages import GetSystemMetrics as GetSystemMetrics
from actors.myntrix.messages import ReleaseAgent as ReleaseAgent
from actors.myntrix.messages import RenameAgent as RenameAgent
from actors.myntrix.messages import RestartAgent as RestartAgent
from actors.myntrix.messages import StartAgent as StartAgent
from actors.myntrix.messages import StopAgent as StopAgent
from actors.myntrix.models import AgentLogRecord as AgentLogRecord
from actors.myntrix.models import AgentRecord as AgentRecord
from actors.myntrix.models import JobRecord as JobRecord
from actors.myntrix.schemas import Agent as Agent
from actors.myntrix.schemas import AgentConfig as AgentConfig
from actors.myntrix.schemas import AgentCreate as AgentCreate
from actors.myntrix.schemas import AgentLogLine as AgentLogLine
from actors.myntrix.schemas import AgentPage as AgentPage
from actors.myntrix.schemas import AgentStatus as AgentStatus
from actors.myntrix.schemas import AgentUpdate as AgentUpdate
from actors.myntrix.schemas import DesiredState as DesiredState
from actors.myntrix.sampler import MetricsSampler as MetricsSampler
from actors.myntrix.schemas import DiskMetrics as DiskMetrics
from actors.myntrix.schemas import Heartbeat as Heartbeat
from actors.myntrix.schemas import Job as Job
from actors.myntrix.schemas import JobPage as JobPage
from actors.myntrix.schemas import JobStatus as JobStatus
from actors.myntrix.schemas import MemoryMetrics as MemoryMetrics
from actors.myntrix.schemas import RestartType as RestartType
from actors.myntrix.schemas import SystemMetrics as SystemMetrics
from actors.myntrix.schemas import SystemSample as SystemSample
from actors.myntrix.settings import MyntrixSettings as MyntrixSettings
from actors.myntrix.visualization import SceneLink as SceneLink
from actors.myntrix.visualization import SceneNode as SceneNode
from actors.myntrix.visualization import Vector3 as Vector3
from actors.myntrix.visualization import VisualizationData as VisualizationData
from actors.myntrix.visualization import VisualizationFeed as VisualizationFeed
from actors.myntrix.visualization import visualization_data as visualization_data

__all__ = [
    "MYNTRIX_NAME",
    "Agent",
    "AgentActor",
    "AgentConfig",
    "AgentCreate",
    "AgentLogLine",
    "AgentLogRecord",
    "AgentPage",
    "AgentRecord",
    "AgentStatus",
    "AgentUpdate",
    "Agents",
    "DesiredState",
    "DiskMetrics",
    "GetAgentLogs",
    "GetAgentState",
    "GetAgents",
    "GetJobs",
    "GetMetricsSampler",
    "GetSystemMetrics",
    "Heartbeat",
    "Job",
    "JobPage",
    "JobRecord",
    "JobStatus",
    "Jobs",
    "MemoryMetrics",
    "MetricsSampler",
    "Myntrix",
    "MyntrixSettings",
    "ProcessTable",
    "ReleaseAgent",
    "RenameAgent",
    "RestartAgent",
    "RestartType",
    "SceneLink",
    "SceneNode",
    "StartAgent",
    "StopAgent",
    "SystemMetrics",
    "SystemSample",
    "Vector3",
    "VisualizationData",
    "VisualizationFeed",
    "agents_of",
    "check_runnable",
    "jobs_of",
    "myntrix_component",
    "sampler_of",
    "visualization_data",
]
