"""Tunables of the devices module that are not per device (timeouts, reconnection, queues).

The ones a user tunes come from ``config.toml``'s ``[myntrix]`` section
(:mod:`~actors.myntrix.devices.component` maps them); the rest keep these
defaults, and tests pass their own.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from vareon_runtime.checks import check_counts, check_seconds

__all__ = ["DeviceSettings"]


@dataclass(frozen=True)
class DeviceSettings:
    """Tunables of the devices module (``[myntrix]`` gives the first two; tests pass their own).

    Args:
        command_timeout: seconds a device has to finish a reply when neither the request nor
            the device's configuration says (``device_command_timeout``).
        reconnect_max: longest wait between two reconnection attempts (``device_reconnect_max``).
        reconnect_initial: the wait before the second attempt; doubles up to ``reconnect_max``.
        stable_after: seconds a link must have stayed up for the backoff to start afresh (a device
            that accepts and drops at once must not be retried in a tight loop).
        seen_interval: seconds between two writes of ``lastSeen`` while data flows.
        queue_max: commands waiting for one device at most; one more is refused (409).
        connect_wait: seconds ``connect`` waits for the link before answering the state as it is.
        max_line: characters of one received line; a longer one is cut there.
        receive_size: bytes asked of the link per read.
        actor_max_restarts, actor_period: how often a device's actor may crash within the period
            before the kernel supervisor marks it failed.
        shutdown_timeout: seconds the whole module may take to stop.
        telemetry_flush_interval, telemetry_keep_days: the telemetry recorder's (``[myntrix]``).
        uploads: where uploaded files wait for their job (``<data_dir>/uploads``); a file goes
            when its job ends, and what a crash left there goes at boot. None: no uploads.
    """

    command_timeout: float = 5.0
    reconnect_max: float = 30.0
    reconnect_initial: float = 0.5
    stable_after: float = 10.0
    seen_interval: float = 1.0
    queue_max: int = 32
    connect_wait: float = 10.0
    max_line: int = 65536
    receive_size: int = 65536
    actor_max_restarts: int = 5
    actor_period: float = 60.0
    shutdown_timeout: float = 15.0
    telemetry_flush_interval: float = 0.25
    telemetry_keep_days: float = 7.0
    uploads: Path | None = None

    def __post_init__(self) -> None:
        check_counts(vars(self), "queue_max", "max_line", "receive_size", "actor_max_restarts")
        check_seconds(
            vars(self), "command_timeout", "reconnect_max", "stable_after", "seen_interval", "connect_wait",
            "actor_period", "shutdown_timeout", "telemetry_flush_interval",
        )  # fmt: skip
        if not 0 <= self.reconnect_initial <= self.reconnect_max:
            raise ValueError(
                f"reconnect_initial ({self.reconnect_initial!r}) must be between 0 and reconnect_max"
                f" ({self.reconnect_max!r})"
            )
