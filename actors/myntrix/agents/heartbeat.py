"""Heartbeat checks of one agent process: an HTTP probe, or an expected output line.

Checked every ``interval`` seconds, the first time ``grace`` seconds (default: one interval)
after the process started. A check fails when the probe fails (no answer within ``timeout``, a
transport error, or a status of 400 or more), or when no output line matched ``expect_line``
during the last ``interval``. After ``misses`` failed checks in a row the heartbeat is lost:
:meth:`HeartbeatWatch.run` returns the reason, and the agent restarts the process.
"""

from __future__ import annotations

import re
from typing import Any

import trio

from .schemas import Heartbeat

__all__ = ["HeartbeatWatch"]


class HeartbeatWatch:
    """The heartbeat of one process; feed it output lines with :meth:`saw_line`."""

    def __init__(self, heartbeat: Heartbeat) -> None:
        self.heartbeat = heartbeat
        self.misses = 0
        self.last_beat: float | None = None
        self._line = re.compile(heartbeat.expect_line) if heartbeat.expect_line is not None else None

    def saw_line(self, text: str) -> None:
        """An output line of the process: a beat if it matches ``expect_line``."""
        if self._line is not None and self._line.search(text):
            self.last_beat = trio.current_time()

    async def run(self) -> str:
        """Check until the heartbeat is lost; return why."""
        heartbeat = self.heartbeat
        await trio.sleep(heartbeat.first_check)
        if heartbeat.url is None:
            why = f"no output line matching {heartbeat.expect_line!r} within {heartbeat.interval:g}s"
            while True:
                beat = self.last_beat
                if self._count(beat is not None and trio.current_time() - beat <= heartbeat.interval):
                    return self._reason(why)
                await trio.sleep(heartbeat.interval)
        import httpx  # only agents with an HTTP heartbeat pay for importing it

        async with httpx.AsyncClient(timeout=heartbeat.timeout) as client:
            while True:
                ok, why = await _probe(client, heartbeat.url)
                if ok:
                    self.last_beat = trio.current_time()
                if self._count(ok):
                    return self._reason(why)
                await trio.sleep(heartbeat.interval)

    def _count(self, ok: bool) -> bool:
        """Count one check; True once the heartbeat is lost."""
        self.misses = 0 if ok else self.misses + 1
        return self.misses >= self.heartbeat.misses

    def _reason(self, why: str) -> str:
        in_a_row = f" ({self.misses} checks in a row)" if self.heartbeat.misses > 1 else ""
        return f"heartbeat lost: {why}{in_a_row}"


async def _probe(client: Any, url: str) -> tuple[bool, str]:
    import httpx

    try:
        response = await client.get(url)
    except (httpx.HTTPError, OSError) as exc:
        return False, f"GET {url} failed: {type(exc).__name__}: {exc}".rstrip(": ")
    if response.status_code >= 400:
        return False, f"GET {url} answered {response.status_code}"
    return True, ""
