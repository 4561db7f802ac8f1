"""Wire shapes of Myntrix agents (seeds 001, 003: camelCase on the wire).

Every model reads both spellings (``lastRun`` and ``last_run``, ``stopTimeout`` and
``stop_timeout``) and the web front writes the camelCase aliases (``by_alias=True``). Times go
out as ISO 8601 in UTC with a ``Z``.

:class:`AgentConfig` is what an agent executes and how it is kept alive. It checks the shape
only; whether the command can run on this host (the executable exists, the directory is one)
is checked by :meth:`actors.myntrix.agents.Agents.create` with the reason.
"""

from __future__ import annotations

import enum
import re
from datetime import datetime
from typing import Annotated, Any, Literal, NamedTuple

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PlainSerializer,
    WithJsonSchema,
    field_validator,
    model_validator,
)
from pydantic.alias_generators import to_camel

from vareon_runtime.clock import isoformat

__all__ = [
    "MAX_STOP_TIMEOUT",
    "Agent",
    "AgentConfig",
    "AgentCreate",
    "AgentLogLine",
    "AgentPage",
    "AgentStatus",
    "AgentUpdate",
    "DesiredState",
    "DiskMetrics",
    "Heartbeat",
    "Job",
    "JobPage",
    "JobStatus",
    "MemoryMetrics",
    "RestartType",
    "SystemMetrics",
    "SystemSample",
    "Timestamp",
]

MAX_STOP_TIMEOUT = 300.0
"""Longest stop timeout an agent may configure, seconds."""

_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")

Timestamp = Annotated[
    datetime,
    PlainSerializer(isoformat, return_type=str, when_used="json"),
    WithJsonSchema({"type": "string", "format": "date-time"}),
]
"""A datetime sent as ISO 8601 UTC with a ``Z`` suffix."""


class _Wire(BaseModel):
    """camelCase aliases on the wire, either spelling accepted on input."""

    model_config = ConfigDict(
        alias_generator=to_camel, validate_by_name=True, validate_by_alias=True, extra="forbid"
    )


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
    TRANSIENT = "transient"  # restarted only after an abnormal exit (non-zero, signal, heartbeat)
    TEMPORARY = "temporary"  # never restarted


class Heartbeat(_Wire):
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


class AgentConfig(_Wire):
    """What an agent runs and how it is kept alive."""

    model_config = ConfigDict(frozen=True)

    command: list[Annotated[str, Field(max_length=4096)]] = Field(
        min_length=1,
        max_length=1024,
        description="The executable and its arguments, as a list; never a shell command line.",
        examples=[["python3", "agent.py", "--port", "8080"]],
    )
    cwd: str | None = Field(None, max_length=4096, description="Working directory; the runtime's when absent.")
    env: dict[str, Annotated[str, Field(max_length=32768)]] = Field(
        default_factory=dict,
        description=(
            "Variables added to the runtime's environment (without its VAREON_* variables)."
            " PYTHONUNBUFFERED=1 is set unless given here, so Python agents' output shows at once."
        ),
    )
    restart: RestartType = Field(RestartType.PERMANENT, description="permanent, transient or temporary.")
    max_restarts: int = Field(5, ge=0, le=10_000, description="Restarts allowed within period; one more and the agent is marked error.")
    period: float = Field(60.0, gt=0, le=86400, description="Seconds over which restarts are counted.")
    backoff_initial: float = Field(0.5, ge=0, le=3600, description="Seconds before the second restart within period (the first is immediate); doubles each time.")
    backoff_max: float = Field(30.0, ge=0, le=3600, description="Longest wait between restarts, seconds.")
    stop_timeout: float = Field(5.0, ge=0, le=MAX_STOP_TIMEOUT, description="Seconds between SIGTERM and SIGKILL when stopping.")
    heartbeat: Heartbeat | None = Field(None, description="Optional proof of life; a lost heartbeat restarts the process.")

    @field_validator("command", mode="before")
    @classmethod
    def _argv_list(cls, value: Any) -> Any:
        if isinstance(value, str):
            raise ValueError(
                f"must be a list of the executable and its arguments such as "
                f"{value.split() or ['python3', 'agent.py']!r}, not the shell command line {value!r}"
            )
        return value

    @field_validator("command")
    @classmethod
    def _executable_named(cls, value: list[str]) -> list[str]:
        if not value[0].strip():
            raise ValueError("the first item, the executable, must not be empty")
        if "\x00" in "".join(value):
            raise ValueError("must not contain NUL characters")
        return value

    @field_validator("env")
    @classmethod
    def _env_names(cls, value: dict[str, str]) -> dict[str, str]:
        for name in value:
            if not _ENV_NAME.match(name):
                raise ValueError(f"{name!r} is not a valid environment variable name")
            if name.upper().startswith("VAREON_"):
                raise ValueError(f"{name!r}: VAREON_* variables are the runtime's own, not an agent's")
        return value

    @model_validator(mode="after")
    def _backoff_order(self) -> AgentConfig:
        if self.backoff_max < self.backoff_initial:
            raise ValueError(
                f"backoffMax ({self.backoff_max:g}) must be at least backoffInitial ({self.backoff_initial:g})"
            )
        return self


class AgentCreate(_Wire):
    """``POST /api/myntrix/agents``."""

    name: str = Field(min_length=1, max_length=255)
    type: str = Field("process", min_length=1, max_length=64)
    configuration: AgentConfig


class AgentUpdate(_Wire):
    """``PUT /api/myntrix/agents/{id}``: the fields given are changed."""

    name: str | None = Field(None, min_length=1, max_length=255)
    type: str | None = Field(None, min_length=1, max_length=64)
    configuration: AgentConfig | None = None


class Agent(_Wire):
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


class AgentLogLine(_Wire):
    """One captured line: ``stdout``, ``stderr``, or ``system`` (noted by the runtime)."""

    model_config = ConfigDict(frozen=True)

    time: Timestamp
    stream: Literal["stdout", "stderr", "system"]
    line: str


class AgentPage(NamedTuple):
    """A page of agents and how many there are in all (for ``X-Total-Count``)."""

    items: list[Agent]
    total: int


class MemoryMetrics(_Wire):
    """Physical memory in bytes; ``null`` where no source gave a value."""

    model_config = ConfigDict(frozen=True)

    total: int | None
    available: int | None
    used: int | None
    percent: float | None


class DiskMetrics(_Wire):
    """The file system of the runtime's data directory, in bytes."""

    model_config = ConfigDict(frozen=True)

    path: str
    total: int | None
    used: int | None
    free: int | None
    percent: float | None


class SystemSample(_Wire):
    """One reading of the host. ``mocked``: psutil was skipped or failed (``reason`` says why)
    and the values come from other sources; CPU use is then estimated from the load average."""

    model_config = ConfigDict(frozen=True)

    time: Timestamp
    cpu_percent: float | None = Field(description="CPU use of the host, 0-100.")
    cpu_count: int | None
    memory: MemoryMetrics
    disk: DiskMetrics
    load_average: tuple[float, float, float] | None = Field(description="1, 5 and 15 minutes; null where the OS has none.")
    mocked: bool
    reason: str | None


class SystemMetrics(_Wire):
    """``GET /api/myntrix/system-metrics``: the latest sample, the history (oldest first), and
    whether the latest is mocked and why."""

    current: SystemSample
    history: list[SystemSample]
    mocked: bool
    reason: str | None


class JobStatus(str, enum.Enum):
    """Where a job is (seed 001's values)."""

    PENDING = "pending"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"


class Job(_Wire):
    """One job as ``GET /api/myntrix/jobs`` shows it."""

    model_config = ConfigDict(frozen=True)

    id: str
    name: str
    type: str = Field(description="What reported it, such as agent.start.")
    status: JobStatus
    progress: int = Field(ge=0, le=100)
    created_at: Timestamp
    updated_at: Timestamp
    logs: str | None = Field(description="Lines the job noted, newline-separated.")
    details: dict[str, Any] | None


class JobPage(NamedTuple):
    """A page of jobs and how many match in all (for ``X-Total-Count``)."""

    items: list[Job]
    total: int
