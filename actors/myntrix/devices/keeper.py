"""``LinkKeeper``: a device's link kept open while the device is to be connected: opened, held
until it drops, opened again after a backoff."""

from __future__ import annotations

import logging
import random
from collections.abc import Awaitable, Callable

import trio

from drivers.errors import LinkConfigError, LinkError
from drivers.link import Link, LinkRegistry, mask_connection_string, open_link
from vareon_runtime.supervisor import Backoff

from .schemas import DeviceStatus
from .settings import DeviceSettings

__all__ = ["LinkKeeper"]

log = logging.getLogger("vareon.devices.device")


class LinkKeeper:
    """The task keeping one device's link open; a device's actor runs one per connect.

    :meth:`run` opens the link (:func:`drivers.link.open_link`) and hands it to ``use``, which
    holds it until it drops and answers why; then waits an exponential backoff with jitter (the
    first retry at once, then from ``reconnect_initial`` doubling up to ``reconnect_max``; the
    count starts afresh after a link that stayed up ``stable_after`` seconds) and opens it again.
    It ends when stopped, when a link drops and ``reconnect`` is off, or when the connection
    string cannot work as it is (:class:`~drivers.errors.LinkConfigError`): retrying cannot fix it.

    Args:
        connection_string: where the device is.
        use: holds the open link until it drops; returns why it ended.
        report: awaited with each change of the link: ``(CONNECTING, None)`` before each attempt,
            ``(DISCONNECTED, why)`` after it, ``(ERROR, why)`` when the connection string
            cannot work.
        settings: the module's tunables (the backoff's).
        reconnect: open the link again after it dropped.
        rng: randomness for the jitter.
        label: names the device in the log.
        links: the link drivers (None: :data:`drivers.link.LINKS`).
    """

    def __init__(
        self,
        connection_string: str,
        *,
        use: Callable[[Link], Awaitable[str]],
        report: Callable[[DeviceStatus, str | None], Awaitable[None]],
        settings: DeviceSettings,
        reconnect: bool,
        rng: random.Random,
        label: str,
        links: LinkRegistry | None = None,
    ) -> None:
        self.scope = trio.CancelScope()
        self.done = trio.Event()
        self._connection_string = connection_string
        self._use = use
        self._report = report
        self._settings = settings
        self._reconnect = reconnect
        self._rng = rng
        self._label = label
        self._links = links

    async def run(self) -> None:
        """Keep the link open until stopped or it cannot be kept (see the class docstring)."""
        try:
            with self.scope:
                await self._keep()
        finally:
            self.done.set()

    async def stop(self) -> None:
        """Close the link (if open) and wait until :meth:`run` has ended."""
        self.scope.cancel()
        await self.done.wait()

    async def _keep(self) -> None:
        backoff = Backoff(self._settings.reconnect_initial, self._settings.reconnect_max)
        attempt = 0
        where = mask_connection_string(self._connection_string)
        while True:
            await self._report(DeviceStatus.CONNECTING, None)
            try:
                link = await open_link(self._connection_string, registry=self._links)
            except LinkConfigError as exc:
                reason = f"cannot connect to {where}: {exc}"
                log.error("%s: %s; not retried", self._label, reason)
                await self._report(DeviceStatus.ERROR, reason)
                return
            except LinkError as exc:
                reason = f"cannot connect to {where}: {exc}"
            else:
                opened = trio.current_time()
                reason = await self._use(link)
                if trio.current_time() - opened >= self._settings.stable_after:
                    attempt = 0
            await self._report(DeviceStatus.DISCONNECTED, reason)
            if not self._reconnect:
                log.warning("%s: %s; not reconnecting (reconnect is off)", self._label, reason)
                return
            delay = backoff.delay(attempt, self._rng)
            attempt += 1
            log.info("%s: %s; reconnecting in %.2fs", self._label, reason, delay)
            await trio.sleep(delay)
