"""Errors of the scheduler, named by whose fault it was::

    InvalidRequestError (422)        the kernel's
    └── InvalidCronError             a schedule or time zone that cannot be used: a syntax error,
                                     a field out of range, an expression that never fires
    ConflictError (409)              the kernel's
    └── TaskBusyError                run now, while a run of the task is still going and its
                                     overlap policy is skip

Unknown action kinds and bad action parameters are the actions registry's
(:class:`~actors.myntrix.scheduler.actions.UnknownActionError`, 422).
"""

from __future__ import annotations

from vareon_runtime.errors import ConflictError, InvalidRequestError

__all__ = ["InvalidCronError", "TaskBusyError"]


class InvalidCronError(InvalidRequestError):
    """The schedule or the time zone cannot be used; the message says why (422)."""


class TaskBusyError(ConflictError):
    """A run of the task is still going and its overlap policy is ``skip`` (409)."""
