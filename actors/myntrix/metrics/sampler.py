"""``HostMetrics``: the host's CPU, memory, disk and load, sampled into a bounded history.

The metrics module (:mod:`actors.myntrix.metrics.component`) takes a sample when it starts, so
the first request has a current value, then one every ``interval`` seconds (:meth:`run`),
keeping the last ``history`` in memory; a request reads them without waiting
(:meth:`HostMetrics.metrics`). Each sample is read in a worker thread through a
:class:`~drivers.metrics.SystemProbe`; :func:`~drivers.metrics.read_system` never raises, so a
host where psutil is refused (Android/Termux) gets mocked samples with the reason rather than a
crashing sampler.
"""

from __future__ import annotations

import dataclasses
import logging
from collections import deque
from collections.abc import Mapping
from pathlib import Path

import trio

from drivers.metrics import DiskUsage, HostSample, MemoryUsage, PsutilProbe, SystemProbe, fallback_sample, read_system
from vareon_runtime.checks import check_counts, check_seconds
from vareon_runtime.clock import utcnow

from .schemas import SystemMetrics, SystemSample

__all__ = ["HostMetrics"]

log = logging.getLogger("vareon.myntrix.metrics")


class HostMetrics:
    """The host's samples (the metrics module's face).

    Args:
        path: a path on the file system whose disk is reported (the runtime's data directory).
        interval: seconds between two samples.
        history: samples kept (the oldest is dropped); 720 at 5 s is an hour.
        probe: where the numbers come from (psutil unless a test passes another).
        environ: the environment read for ``VAREON_MOCK_SYSTEM_METRICS`` (``os.environ`` if None).
    """

    title = "host metrics module"
    """What the web front calls it when it is not running."""

    def __init__(
        self,
        path: Path,
        *,
        interval: float = 5.0,
        history: int = 720,
        probe: SystemProbe | None = None,
        environ: Mapping[str, str] | None = None,
    ) -> None:
        check_seconds({"interval": interval})
        check_counts({"history": history})
        self.path = path
        self.interval = interval
        self.probe: SystemProbe = probe if probe is not None else PsutilProbe()
        self.environ = environ
        self.history: deque[SystemSample] = deque(maxlen=history)
        self._mocked_reason: str | None = None

    def metrics(self) -> SystemMetrics:
        """The latest sample and the history, oldest first.

        Raises:
            RuntimeError: no sample was taken yet (the module samples before it offers this).
        """
        if not self.history:
            raise RuntimeError("no host sample yet: sample() runs before the face is offered")
        current = self.history[-1]
        return SystemMetrics(current=current, history=list(self.history), mocked=current.mocked, reason=current.reason)

    async def run(self) -> None:
        """Sample every ``interval`` seconds until cancelled."""
        while True:
            await trio.sleep(self.interval)
            await self.sample()

    async def sample(self) -> SystemSample:
        """Take one sample into the history."""
        try:
            host: HostSample = await trio.to_thread.run_sync(
                lambda: read_system(self.probe, self.path, environ=self.environ)
            )
            sample = SystemSample.model_validate(dataclasses.asdict(host))
        except Exception as exc:  # a sample that fails never brings the module down
            sample = _failed_sample(self.path, f"sampling failed ({type(exc).__name__}: {exc})")
        # Say it once when the fallback begins or its reason changes, not at every sample.
        if sample.reason != self._mocked_reason:
            if sample.mocked:
                log.warning("host metrics are mocked: %s", sample.reason)
            else:
                log.info("host metrics come from psutil again")
            self._mocked_reason = sample.reason
        self.history.append(sample)
        return sample


def _failed_sample(path: Path, reason: str) -> SystemSample:
    """The fallback sample with ``reason``; with no values at all if even the fallback fails."""
    try:
        host = fallback_sample(path, reason)
    except Exception as exc:
        reason = f"{reason}; the fallback failed too ({type(exc).__name__}: {exc})"
        host = HostSample(
            time=utcnow(),
            cpu_percent=None,
            cpu_count=None,
            memory=MemoryUsage(None, None, None, None),
            disk=DiskUsage(str(path), None, None, None, None),
            load_average=None,
            mocked=True,
            reason=reason,
        )
    return SystemSample.model_validate(dataclasses.asdict(host))
