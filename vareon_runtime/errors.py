"""Errors raised by the kernel.

The hierarchy, named by whose fault it was::

    VareonError                      base of everything the runtime raises on purpose
    ├── ConfigError                  config.toml or a VAREON_* variable is wrong (names key and file)
    ├── ActorError                   talking to an actor went wrong
    │   ├── UnhandledMessageError    the actor has no handler for that message type (caller's fault)
    │   ├── AskTimeoutError          no reply within the timeout (the actor is slow or stuck)
    │   ├── ActorStoppedError        the actor was stopped for good; its mailbox is closed
    │   └── ActorCrashedError        the handler raised an unexpected error while answering
    ├── SupervisorError
    │   ├── RestartIntensityError    more than max_restarts in period: the supervisor gave up
    │   ├── ChildGaveUpError         one child passed its own restart limit
    │   ├── DuplicateChildError      a child with that name already exists
    │   ├── UnknownChildError        no child with that name
    │   └── SupervisorStoppedError   the supervisor is stopping or stopped; it starts no children
    ├── RegistryError
    │   ├── NameTakenError           registering a name that is in use
    │   ├── NotRegisteredError       looking up a name (or a face) that nobody holds
    │   └── DuplicateKeyError        registering a key a keyed registry already holds (a bug)
    ├── StoreError                   the database refused or failed a read or write
    │   ├── StoreClosedError         the store was closed (we closed it)
    │   └── StoreUsageError          a store function broke the contract (returned an ORM object)
    └── ServiceError                 a domain refused a request; carries an HTTP-like status
        ├── AuthenticationError      (401) no valid credentials or token
        ├── NotFoundError            (404) no such entity
        ├── ConflictError            (409) the request conflicts with current state
        ├── InvalidRequestError      (422) valid shape, breaks a rule
        │   └── UnknownKeyError      no driver, action, step kind... has that key; names the known ones
        ├── PermissionDeniedError    (403) the caller lacks the role
        ├── TooManyRequestsError     (429) slow down; carries retry_after seconds
        ├── UnavailableError         (503) a dependency is down
        └── UpstreamTimeoutError     (504) a device or remote service did not answer in time

A ``VareonError`` raised by an actor's handler during ``ask`` is handed back to the asker and
the actor lives on: it refused the request. Any other exception is a bug in the actor: the asker
gets ``ActorCrashedError`` and the actor crashes so its supervisor can restart it.
"""

from __future__ import annotations

from typing import Any, ClassVar

__all__ = [
    "ActorCrashedError",
    "ActorError",
    "ActorStoppedError",
    "AskTimeoutError",
    "AuthenticationError",
    "ChildGaveUpError",
    "ConfigError",
    "ConflictError",
    "DuplicateChildError",
    "DuplicateKeyError",
    "InvalidRequestError",
    "NameTakenError",
    "NotFoundError",
    "NotRegisteredError",
    "PermissionDeniedError",
    "RegistryError",
    "RestartIntensityError",
    "ServiceError",
    "StoreClosedError",
    "StoreError",
    "StoreUsageError",
    "SupervisorError",
    "SupervisorStoppedError",
    "TooManyRequestsError",
    "UnavailableError",
    "UnhandledMessageError",
    "UnknownChildError",
    "UnknownKeyError",
    "UpstreamTimeoutError",
    "VareonError",
]


class VareonError(Exception):
    """Base class of every error the runtime raises on purpose."""


class ConfigError(VareonError):
    """The configuration file or an environment override is invalid."""


class ActorError(VareonError):
    """Base class of errors in talking to an actor."""


class UnhandledMessageError(ActorError, TypeError):
    """The actor has no handler for the message's type."""


class AskTimeoutError(ActorError, TimeoutError):
    """An ``ask`` got no reply within its timeout."""


class ActorStoppedError(ActorError):
    """The actor was stopped for good; nothing can be sent to it any more."""


class ActorCrashedError(ActorError):
    """The actor's handler raised an unexpected error while answering an ``ask``."""


class SupervisorError(VareonError):
    """Base class of supervision errors."""


class RestartIntensityError(SupervisorError):
    """A supervisor saw more restarts than its intensity allows and gave up (escalation)."""


class ChildGaveUpError(SupervisorError):
    """A child passed its own restart limit; it stays stopped until started again."""


class DuplicateChildError(SupervisorError):
    """A child with that name already exists under the supervisor."""


class UnknownChildError(SupervisorError, LookupError):
    """The supervisor has no child with that name."""


class SupervisorStoppedError(SupervisorError):
    """The supervisor is stopping or not running, so it cannot start a child."""


class RegistryError(VareonError):
    """Base class of name registry errors."""


class NameTakenError(RegistryError):
    """The name is already registered."""


class NotRegisteredError(RegistryError, LookupError):
    """No actor is registered under the name, or no face of that type is provided."""


class DuplicateKeyError(RegistryError, ValueError):
    """A keyed registry already holds the key (registering twice is a bug, never a request's fault)."""


class StoreError(VareonError):
    """The database refused or failed a read or a write."""


class StoreClosedError(StoreError):
    """The store is closed; it accepts no more work."""


class StoreUsageError(StoreError):
    """A store function broke the store's contract (for example it returned an ORM object)."""


class ServiceError(VareonError):
    """A domain refused a request. ``status`` and ``code`` map it onto the HTTP error shape."""

    status: ClassVar[int] = 400
    code: ClassVar[str] = "bad_request"

    def __init__(self, message: str, *, details: Any = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details


class AuthenticationError(ServiceError):
    status = 401
    code = "unauthorized"


class NotFoundError(ServiceError, LookupError):
    status = 404
    code = "not_found"


class ConflictError(ServiceError):
    status = 409
    code = "conflict"


class InvalidRequestError(ServiceError):
    status = 422
    code = "invalid"


class UnknownKeyError(InvalidRequestError, LookupError):
    """No entry of a keyed registry has the key a request named; the message names the known ones.

    ``details`` is ``{"field": ..., "key": ..., "known": [...]}`` (``field`` when the registry
    knows which request field holds the key).
    """

    def __init__(
        self, message: str, *, key: str, known: list[str], field: str | None = None, extra: dict[str, Any] | None = None
    ) -> None:
        details: dict[str, Any] = {"key": key, "known": known, **(extra or {})}
        if field is not None:
            details = {"field": field, **details}
        super().__init__(message, details=details)
        self.key = key
        self.known = known


class PermissionDeniedError(ServiceError):
    status = 403
    code = "forbidden"


class TooManyRequestsError(ServiceError):
    status = 429
    code = "too_many_requests"

    def __init__(self, message: str, *, retry_after: float, details: Any = None) -> None:
        super().__init__(message, details=details)
        self.retry_after = retry_after


class UnavailableError(ServiceError):
    status = 503
    code = "unavailable"


class UpstreamTimeoutError(ServiceError):
    """Something we waited on for the caller (a device's reply, a remote service) took too long.

    ``details`` says what was received before the time ran out.
    """

    status = 504
    code = "timeout"
