"""What every link does the same way: :class:`LinkBase`, and :func:`hand_over` for a link opened
by a task that may have been cancelled meanwhile."""

from __future__ import annotations

from typing import TypeVar

import trio

from drivers.errors import LinkBrokenError, LinkClosedError, LinkError

__all__ = ["LinkBase", "hand_over"]

_L = TypeVar("_L", bound="LinkBase")


class LinkBase:
    """The part of a :class:`~drivers.link.Link` every driver shares: its description, one
    receiver and one sender at a time, a close that happens once, and one error per fault.

    A subclass implements ``receive``, ``send`` and :meth:`_close`; it holds ``_receive_lock``
    or ``_send_lock`` while it uses the device (so one task may receive while another sends,
    and concurrent senders or receivers are served in turn) and calls :meth:`_check_open` first.
    A read or write that the far end failed raises :meth:`_broke`'s error: the link remembers
    the first break, so every later use (until we close it) fails with the same words, whether
    the reader or the writer noticed first. Once we closed the link, every use is a
    :class:`~drivers.errors.LinkClosedError`.
    """

    def __init__(self, description: str) -> None:
        self._description = description
        self._receive_lock = trio.Lock()
        self._send_lock = trio.Lock()
        self._closed = False
        self._broken: str | None = None  # the first break's words, once the far end went away

    @property
    def description(self) -> str:
        """A short human description, without secrets."""
        return self._description

    async def aclose(self) -> None:
        """Close the link. Idempotent; never raises (a failed close is logged).

        A task blocked in ``receive`` or ``send`` gets :class:`~drivers.errors.LinkClosedError`,
        as does every later use, even of a link that broke before.
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
        """Raise what using the link now meets, without touching the device: we closed it, or
        it broke before."""
        if self._closed:
            raise LinkClosedError(f"the link to {self.description} is closed")
        if self._broken is not None:
            raise LinkBrokenError(self._broken)

    def _closed_error(self) -> LinkClosedError:
        return LinkClosedError(f"the link to {self.description} was closed")

    def _broke(self, message: str) -> LinkError:
        """The error for a read or write the far end failed (``message`` says how): a
        :class:`~drivers.errors.LinkBrokenError` with the first break's words, or the
        :class:`~drivers.errors.LinkClosedError` of our own close if it came first."""
        if self._closed:
            return self._closed_error()
        if self._broken is None:
            self._broken = message
        return LinkBrokenError(self._broken)

    def _gone(self, reason: object) -> LinkError:
        """:meth:`_broke` for a device that went away (a failed read or write says ``reason``)."""
        return self._broke(f"{self.description} went away: {reason}")


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
