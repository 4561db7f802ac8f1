"""``[myntrix]``: the section of ``config.toml`` the Myntrix components (agents, metrics, devices,
scheduler) share; each declares it (:data:`SECTION`) and reads its own keys."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, field_validator

from vareon_runtime.component import ConfigSection

__all__ = ["SECTION", "MyntrixConfig"]


class MyntrixConfig(BaseModel):
    """``[myntrix]``: agents, host monitoring, devices, telemetry and scheduled tasks."""

    model_config = ConfigDict(extra="forbid")

    metrics_interval: float = Field(
        5.0, gt=0, description="Seconds between two samples of the host's CPU, memory, disk and load."
    )
    metrics_history: int = Field(
        720,
        ge=1,
        description=(
            "Samples of host metrics kept in memory for the history (720 at 5 s is one hour);"
            " the oldest is dropped."
        ),
    )
    agent_log_lines: int = Field(
        5000,
        ge=1,
        description="Output lines kept in the database per agent; older lines are pruned.",
    )
    device_command_timeout: float = Field(
        5.0,
        gt=0,
        description=(
            "Seconds a device has to finish its reply to a command before the command fails with"
            " 504; a device's configuration can set its own (commandTimeout)."
        ),
    )
    device_reconnect_max: float = Field(
        30.0,
        gt=0,
        description=(
            "Longest wait in seconds between two attempts to reconnect a device whose link dropped"
            " (the wait starts short and doubles)."
        ),
    )
    telemetry_flush_interval: float = Field(
        0.25,
        gt=0,
        description="Seconds telemetry samples wait in memory, at most, before they are written together.",
    )
    telemetry_keep_days: float = Field(
        7.0,
        ge=0,
        description="Days of device telemetry kept in the database; older samples are pruned. 0 keeps everything.",
    )
    scheduler_timezone: str = Field(
        "UTC",
        min_length=1,
        description="IANA time zone (such as Europe/Berlin) of a scheduled task that names none.",
    )
    task_misfire_grace: float = Field(
        300.0,
        ge=0,
        description=(
            "Seconds after a missed fire time (the runtime was down) within which a task whose"
            " misfire policy is run_once still runs once; a task can set its own."
        ),
    )
    task_runs_keep: int = Field(
        1000,
        ge=1,
        description="Runs kept in the history per task; older runs are pruned.",
    )

    @field_validator("scheduler_timezone")
    @classmethod
    def _known_timezone(cls, value: str) -> str:
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"{value!r} is not an IANA time zone name (such as UTC or Europe/Berlin)") from None
        return value


SECTION = ConfigSection(
    "myntrix",
    MyntrixConfig,
    "Agents, host monitoring, devices, telemetry and scheduled tasks (Myntrix).",
)
"""The ``[myntrix]`` section, as each Myntrix component declares it."""
