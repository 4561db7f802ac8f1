"""Task actions: what a scheduled task does when it fires, in a registry keyed by kind.

A task names its action's ``kind`` and carries the kind's ``parameters``. :data:`ACTIONS` holds
the kinds this runtime knows. A kind is an :class:`Action`: a pydantic model for its parameters
(an :class:`ActionParameters`: ``extra="forbid"``, camelCase aliases and snake_case names both
accepted), whether only an admin may define it, a :meth:`~Action.check` of the parameters against
this host (no network), and :meth:`~Action.run`, which does the work once and says how it went in
an :class:`ActionOutcome`.

The modules:

- :mod:`~actors.myntrix.scheduler.actions.action`: the contract (:class:`Action`,
  :class:`ActionContext`, :class:`ActionOutcome`, :class:`ActionParameters`) and
  :class:`BaseAction`, which the kinds build on; :class:`Outbound`, the ``[outbound]`` rule with
  the roles that count (decision 0024).
- :mod:`~actors.myntrix.scheduler.actions.registry`: :class:`ActionRegistry`, the kinds by name.
- :mod:`~actors.myntrix.scheduler.actions.masking`: secrets; values whose names look secret are
  never written to a log and go out as :data:`MASK`, and a :data:`MASK` sent back keeps the
  stored secret.
- a module per kind: ``script`` (:mod:`~actors.myntrix.scheduler.actions.script`, admin only: it
  executes on the host), ``api`` (:mod:`~actors.myntrix.scheduler.actions.api`: one HTTP
  request), ``agent`` (:mod:`~actors.myntrix.scheduler.actions.agent`: start, stop or restart an
  agent).

``workflow`` and ``pipeline`` register here when their modules exist, one call each
(``ACTIONS.register("workflow", WorkflowAction())``).
"""

from actors.myntrix.scheduler.actions.action import Action as Action
from actors.myntrix.scheduler.actions.action import ActionContext as ActionContext
from actors.myntrix.scheduler.actions.action import ActionOutcome as ActionOutcome
from actors.myntrix.scheduler.actions.action import ActionParameters as ActionParameters
from actors.myntrix.scheduler.actions.action import BaseAction as BaseAction
from actors.myntrix.scheduler.actions.action import Outbound as Outbound
from actors.myntrix.scheduler.actions.action import RoleOf as RoleOf
from actors.myntrix.scheduler.actions.agent import AgentAction as AgentAction
from actors.myntrix.scheduler.actions.agent import AgentParameters as AgentParameters
from actors.myntrix.scheduler.actions.api import BODY_LOG_LIMIT as BODY_LOG_LIMIT
from actors.myntrix.scheduler.actions.api import ApiAction as ApiAction
from actors.myntrix.scheduler.actions.api import ApiParameters as ApiParameters
from actors.myntrix.scheduler.actions.masking import MASK as MASK
from actors.myntrix.scheduler.actions.masking import looks_secret as looks_secret
from actors.myntrix.scheduler.actions.masking import mask_map as mask_map
from actors.myntrix.scheduler.actions.masking import mask_url as mask_url
from actors.myntrix.scheduler.actions.masking import unmask_map as unmask_map
from actors.myntrix.scheduler.actions.masking import unmask_url as unmask_url
from actors.myntrix.scheduler.actions.registry import ActionRegistry as ActionRegistry
from actors.myntrix.scheduler.actions.registry import UnknownActionError as UnknownActionError
from actors.myntrix.scheduler.actions.script import SAFE_ENV_NAMES as SAFE_ENV_NAMES
from actors.myntrix.scheduler.actions.script import ScriptAction as ScriptAction
from actors.myntrix.scheduler.actions.script import ScriptParameters as ScriptParameters
from actors.myntrix.scheduler.actions.script import script_env as script_env

__all__ = [
    "ACTIONS",
    "BODY_LOG_LIMIT",
    "MASK",
    "SAFE_ENV_NAMES",
    "Action",
    "ActionContext",
    "ActionOutcome",
    "ActionParameters",
    "ActionRegistry",
    "AgentAction",
    "AgentParameters",
    "ApiAction",
    "ApiParameters",
    "BaseAction",
    "Outbound",
    "RoleOf",
    "ScriptAction",
    "ScriptParameters",
    "UnknownActionError",
    "looks_secret",
    "mask_map",
    "mask_url",
    "script_env",
    "unmask_map",
    "unmask_url",
]

ACTIONS = ActionRegistry()
"""The task actions of this runtime: ``agent``, ``api``, ``script`` (more register later)."""
ACTIONS.register("script", ScriptAction())
ACTIONS.register("api", ApiAction())
ACTIONS.register("agent", AgentAction())
