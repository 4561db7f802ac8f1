"""``MetricsSampler``: the actor that samples the host's CPU, memory, disk and load.

A child of the Myntrix module (started in its nursery). It takes a sample when it starts, so the
first request has a current value, then one every ``metrics_interval`` seconds, keeping the last
``metrics_history`` in memory. Each sample is read in a worker thread through a
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
from vareon_runtime.clock import utcnow
from vareon_runtime.actor import Actor, handles

from .messages import GetSystemMetrics
from .schemas import SystemMetrics, SystemSample
from .settings import MyntrixSettings

__all__ = ["MetricsSampler"]

log = logging.getLogger("vareon.myntrix.metrics")


class MetricsSampler(Actor):
    """Samples the host at an interval into a bounded history.

    Args:
        path: a path on the file system whose disk is reported (the runtime's data directory).
        settings: ``metrics_interval`` and ``metrics_history``.
        probe: where the numbers come from (psutil unless a test passes another).
        environ: the environment read for ``VAREON_MOCK_SYSTEM_METRICS`` (``os.environ`` if None).
    """

    def __init__(
        self,
        path: Path,
        *,
        settings: MyntrixSettings | None = None,
        probe: SystemProbe | None = None,
        environ: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__()
        self.name = "myntrix/metrics"
        self.path = path
        self.settings = settings or MyntrixSettings()
        self.probe: SystemProbe = probe if probe is not None else PsutilProbe()
        self.environ = environ
        self.history: deque[SystemSample] = deque(maxlen=self.settings.metrics_history)
        self._mocked_reason: str | None = None

    async def on_start(self) -> None:
        await self._sample()
        self.nursery.start_soon(self._loop)

    @handles(GetSystemMetrics)
    async def get_metrics(self, msg: GetSystemMetrics) -> SystemMetrics:
        current = self.history[-1]
        return SystemMetrics(current=current, history=list(self.history), mocked=current.mocked, reason=current.reason)

    async def _loop(self) -> None:
        while True:
            await trio.sleep(self.settings.metrics_interval)
            await self._sample()

    async def _sample(self) -> None:
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
