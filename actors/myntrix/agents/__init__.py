"""Myntrix agents: programs the runtime keeps running as supervised processes (seeds 001, 003).

The web front, the scheduler's ``agent`` action and the CLI reach the domain through its face,
:class:`Agents` (``registry.face(Agents)``); each agent is an :class:`AgentActor`.
"""

from actors.myntrix.agents.actor import AgentActor as AgentActor
from actors.myntrix.agents.actor import AgentServices as AgentServices
from actors.myntrix.agents.component import AGENTS_NAME as AGENTS_NAME
from actors.myntrix.agents.component import AgentsModule as AgentsModule
from actors.myntrix.agents.component import component as component
from actors.myntrix.agents.messages import GetAgentLogs as GetAgentLogs
from actors.myntrix.agents.messages import GetAgentState as GetAgentState
from actors.myntrix.agents.messages import ReleaseAgent as ReleaseAgent
from actors.myntrix.agents.messages import RenameAgent as RenameAgent
from actors.myntrix.agents.messages import RestartAgent as RestartAgent
from actors.myntrix.agents.messages import StartAgent as StartAgent
from actors.myntrix.agents.messages import StopAgent as StopAgent
from actors.myntrix.agents.models import AgentLogRecord as AgentLogRecord
from actors.myntrix.agents.models import AgentRecord as AgentRecord
from actors.myntrix.agents.processes import ProcessTable as ProcessTable
from actors.myntrix.agents.schemas import Agent as Agent
from actors.myntrix.agents.schemas import AgentConfig as AgentConfig
from actors.myntrix.agents.schemas import AgentCreate as AgentCreate
from actors.myntrix.agents.schemas import AgentLogLine as AgentLogLine
from actors.myntrix.agents.schemas import AgentStatus as AgentStatus
from actors.myntrix.agents.schemas import AgentUpdate as AgentUpdate
from actors.myntrix.agents.schemas import DesiredState as DesiredState
from actors.myntrix.agents.schemas import Heartbeat as Heartbeat
from actors.myntrix.agents.schemas import RestartType as RestartType
from actors.myntrix.agents.service import Agents as Agents
from actors.myntrix.agents.service import check_runnable as check_runnable
from actors.myntrix.agents.settings import AgentSettings as AgentSettings

__all__ = [
    "AGENTS_NAME",
    "Agent",
    "AgentActor",
    "AgentConfig",
    "AgentCreate",
    "AgentLogLine",
    "AgentLogRecord",
    "AgentRecord",
    "AgentServices",
    "AgentSettings",
    "AgentStatus",
    "AgentUpdate",
    "Agents",
    "AgentsModule",
    "DesiredState",
    "GetAgentLogs",
    "GetAgentState",
    "Heartbeat",
    "ProcessTable",
    "ReleaseAgent",
    "RenameAgent",
    "RestartAgent",
    "RestartType",
    "StartAgent",
    "StopAgent",
    "check_runnable",
    "component",
]
