"""What every link does the same way: :class:`LinkBase`, and :func:`hand_over` for a link opened
by a task that may have been cancelled meanwhile."""

from __future__ import annotations

from typing import TypeVar

import trio

from drivers.errors import LinkClosedError

__all__ = ["LinkBase", "hand_over"]

_L = TypeVar("_L", bound="LinkBase")


class LinkBase:
    """The part of a :class:`~drivers.link.Link` every driver shares: its description, one
    receiver and one sender at a time, and a close that happens once.

    A subclass implements ``receive``, ``send`` and :meth:`_close`; it holds ``_receive_lock``
    or ``_send_lock`` while it uses the device (so one task may receive while another sends,
    and concurrent senders or receivers are served in turn) and calls :meth:`_check_open` first.
    """

    def __init__(self, description: str) -> None:
        self._description = description
        self._receive_lock = trio.Lock()
        self._send_lock = trio.Lock()
        self._closed = False

    @property
    def description(self) -> str:
        """A short human description, without secrets."""
        return self._description

    async def aclose(self) -> None:
        """Close the link. Idempotent; never raises (a failed close is logged).

        A task blocked in ``receive`` or ``send`` gets :class:`~drivers.errors.LinkClosedError`.
        """
        if self._closed:
            await trio.lowlevel.checkpoint()
            return
        self._closed = True
        await self._close()

    async def _close(self) -> None:
        """Release the device, once; log a failure instead of raising it."""
        raise NotImplementedError

    def _check_open(self) -> None:
        if self._closed:
            raise LinkClosedError(f"the link to {self.description} is closed")

    def _closed_error(self) -> LinkClosedError:
        return LinkClosedError(f"the link to {self.description} was closed")

    def _gone(self, reason: object) -> LinkClosedError:
        """The error for a failed read or write: the device went away, unless we closed it meanwhile."""
        if self._closed:
            return self._closed_error()
        return LinkClosedError(f"{self.description} went away: {reason}")


async def hand_over(link: _L) -> _L:
    """``link``, just opened, unless the task opening it was cancelled meanwhile: then the link
    is closed and the cancellation goes on (an open that ran in a thread finishes before the
    cancellation is delivered, and its port must not leak)."""
    try:
        await trio.lowlevel.checkpoint_if_cancelled()
    except trio.Cancelled:
        with trio.CancelScope(shield=True):
            await link.aclose()
        raise
    return link
