"""``LinkSession``: one opening of a device's link, from the keeper's open to its close, and why
it ended."""

from __future__ import annotations

from dataclasses import dataclass

import trio

from drivers.errors import LinkBrokenError, LinkClosedError, LinkError
from drivers.link import Link

__all__ = ["LinkSession"]


@dataclass(eq=False)
class LinkSession:
    """One open link of a device and the scope of the tasks reading it.

    Whoever uses the link (the reader, a command, an upload) reports a failure through
    :meth:`failed` and raises or reports what it answers, so a pulled plug reads the same to
    everyone, whichever side noticed it first: the reader's read, a command's or an upload's
    write, or a use that came after the session closed the link (a
    :class:`~drivers.errors.LinkClosedError`, which is not news: the break before it is).

    Attributes:
        link: the open link.
        scope: cancelled to end the session (the keeper then closes the link and reconnects).
        reason: why the session ended, once it did: ``"the link dropped: <the first break>"``;
            None while it is open, or when it was ended by us (a disconnect, a stop).
    """

    link: Link
    scope: trio.CancelScope
    reason: str | None = None

    def failed(self, error: LinkError) -> LinkError:
        """``error`` came from using the link: end the session if it is the first break.

        Returns:
            What the user reports: a :class:`~drivers.errors.LinkBrokenError` saying
            :attr:`reason` once the link broke (whoever noticed it first), else ``error`` (our
            own close, without a break before it).
        """
        if self.reason is None and not isinstance(error, LinkClosedError):
            self.reason = f"the link dropped: {error}"
            self.scope.cancel()
        return self.ended() if self.reason is not None else error

    def ended(self) -> LinkError:
        """Why the session is over, as the error its users report."""
        if self.reason is not None:
            return LinkBrokenError(self.reason)
        return LinkClosedError(f"the link to {self.link.description} was closed")
