"""Wire shapes of Myntrix agents (seeds 001, 003: camelCase on the wire).

Every model reads both spellings (``lastRun`` and ``last_run``, ``stopTimeout`` and
``stop_timeout``) and the web front writes the camelCase aliases (``by_alias=True``). Times go
out as ISO 8601 in UTC with a ``Z``.

:class:`AgentConfig` is what an agent executes and how it is kept alive. Its program is ``argv``,
as a script task's and a workflow step's is (``command``, its first name, is still read). It
checks the shape only; whether the program can run on this host (the executable exists, the
directory is one) is checked by :meth:`actors.myntrix.agents.Agents.create` with the reason.
"""

from __future__ import annotations

import enum
import re
from typing import Any, Literal

from pydantic import AliasChoices, ConfigDict, Field, field_validator, model_validator

from actors.kit.processes import Argv, Environment
from actors.kit.wire import CamelModel, Name, Timestamp

__all__ = [
    "MAX_STOP_TIMEOUT",
    "Agent",
    "AgentConfig",
    "AgentCreate",
    "AgentLogLine",
    "AgentStatus",
    "AgentUpdate",
    "DesiredState",
    "Heartbeat",
    "RestartType",
]

MAX_STOP_TIMEOUT = 300.0
"""Longest stop timeout an agent may configure, seconds."""


class AgentStatus(str, enum.Enum):
    """What the agent's process is doing. ``running`` if and only if a process is alive."""

    STOPPED = "stopped"
    STARTING = "starting"
    RUNNING = "running"
    STOPPING = "stopping"
    BACKOFF = "backoff"
    ERROR = "error"


class DesiredState(str, enum.Enum):
    """What the user asked for; brought back when the runtime starts."""

    RUNNING = "running"
    STOPPED = "stopped"


class RestartType(str, enum.Enum):
    """OTP's restart types, for the agent's process."""

    PERMANENT = "permanent"  # restarted whenever it exits
    TRANSIENT = "transient"  # restarted only after an abnormal exit (non-zero, signal, heartbeat); the default
    TEMPORARY = "temporary"  # never restarted


class Heartbeat(CamelModel):
    """Proof of life beyond "the pid exists": an HTTP probe or an expected output line, checked
    every ``interval`` seconds (see :mod:`actors.myntrix.heartbeat`)."""

    model_config = ConfigDict(frozen=True)

    url: str | None = Field(
        None, max_length=2048, description="http:// or https:// URL probed with GET.", examples=["http://127.0.0.1:8080/health"]
    )
    expect_line: str | None = Field(
        None, max_length=1024, description="Regular expression an output line must match.", examples=["^alive$"]
    )
    interval: float = Field(10.0, gt=0, le=86400, description="Seconds between checks.")
    timeout: float = Field(2.0, gt=0, le=300, description="Seconds an HTTP probe may take.")
    grace: float | None = Field(
        None, ge=0, le=86400, description="Seconds after start before the first check; default interval."
    )
    misses: int = Field(1, ge=1, le=100, description="Failed checks in a row that restart the process.")

    @field_validator("url")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        if value is not None and not re.match(r"^https?://[^/\s]+", value):
            raise ValueError(f"must be an http:// or https:// URL, not {value!r}")
        return value

    @field_validator("expect_line")
    @classmethod
    def _regex(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                re.compile(value)
            except re.error as exc:
                raise ValueError(f"is not a valid regular expression ({exc}): {value!r}") from None
        return value

    @model_validator(mode="after")
    def _one_kind(self) -> Heartbeat:
        if (self.url is None) == (self.expect_line is None):
            raise ValueError("give either url (an HTTP probe) or expectLine (an output line), exactly one")
        return self

    @property
    def first_check(self) -> float:
        """Seconds after start of the first check."""
        return self.interval if self.grace is None else self.grace


class AgentConfig(CamelModel):
    """What an agent runs and how it is kept alive."""

    model_config = ConfigDict(frozen=True)

    argv: Argv = Field(
        validation_alias=AliasChoices("argv", "command"),
        description=(
            "The executable and its arguments, as a list; never a shell command line. `command`, its"
            " former name, is read too."
        ),
        examples=[["python3", "agent.py", "--port", "8080"]],
    )
    cwd: str | None = Field(None, max_length=4096, description="Working directory; the runtime's when absent.")
    env: Environment = Field(
        default_factory=dict,
        description=(
            "Variables added to the runtime's environment (without its VAREON_* variables)."
            " PYTHONUNBUFFERED=1 is set unless given here, so Python agents' output shows at once."
        ),
    )
    # transient by default, as supervisord's autorestart=unexpected: an exit 0 means done. A stored
    # configuration holds its restart as written (every field is stored), so the agents made when
    # the default was permanent stay permanent.
    restart: RestartType = Field(
        RestartType.TRANSIENT,
        description=(
            "transient (the default): restarted after an unexpected exit (non-zero, a signal, a lost"
            " heartbeat), an exit 0 is done; permanent: restarted whenever it exits; temporary: never."
        ),
    )
    max_restarts: int = Field(5, ge=0, le=10_000, description="Restarts allowed within period; one more and the agent is marked error.")
    period: float = Field(60.0, gt=0, le=86400, description="Seconds over which restarts are counted.")
    backoff_initial: float = Field(0.5, ge=0, le=3600, description="Seconds before the second restart within period (the first is immediate); doubles each time.")
    backoff_max: float = Field(30.0, ge=0, le=3600, description="Longest wait between restarts, seconds.")
    stop_timeout: float = Field(5.0, ge=0, le=MAX_STOP_TIMEOUT, description="Seconds between SIGTERM and SIGKILL when stopping.")
    heartbeat: Heartbeat | None = Field(None, description="Optional proof of life; a lost heartbeat restarts the process.")

    @model_validator(mode="before")
    @classmethod
    def _one_name(cls, data: Any) -> Any:
        if isinstance(data, dict) and "argv" in data and "command" in data:
            if data["argv"] != data["command"]:
                raise ValueError("give argv (command is its former name), not both with different values")
            data = {key: value for key, value in data.items() if key != "command"}
        return data

    @model_validator(mode="after")
    def _backoff_order(self) -> AgentConfig:
        if self.backoff_max < self.backoff_initial:
            raise ValueError(
                f"backoffMax ({self.backoff_max:g}) must be at least backoffInitial ({self.backoff_initial:g})"
            )
        return self


class AgentCreate(CamelModel):
    """``POST /api/myntrix/agents``."""

    name: Name
    type: str = Field("process", min_length=1, max_length=64)
    configuration: AgentConfig


class AgentUpdate(CamelModel):
    """``PUT /api/myntrix/agents/{id}``: the fields given are changed."""

    name: Name | None = None
    type: str | None = Field(None, min_length=1, max_length=64)
    configuration: AgentConfig | None = None


class Agent(CamelModel):
    """One agent as the API shows it."""

    model_config = ConfigDict(frozen=True)

    id: str
    name: str
    type: str
    status: AgentStatus
    health: int = Field(ge=0, le=100)
    last_run: Timestamp | None
    configuration: AgentConfig
    desired_state: DesiredState
    pid: int | None
    restarts: int
    exit_code: int | None
    last_error: str | None
    created_at: Timestamp
    updated_at: Timestamp


class AgentLogLine(CamelModel):
    """One captured line: ``stdout``, ``stderr``, or ``system`` (noted by the runtime)."""

    model_config = ConfigDict(frozen=True)

    time: Timestamp
    stream: Literal["stdout", "stderr", "system"]
    line: str
