"""Errors raised by the drivers.

The hierarchy, named by whose fault it was::

    VareonError                          (vareon_runtime.errors)
    └── DriverError                      base of every driver error
        ├── ProcessError                 an OS process could not be run or controlled
        │   ├── ProcessConfigError       the command cannot run as configured (the user's fault)
        │   │   ├── ExecutableNotFoundError   no such executable, or it is not executable
        │   │   └── BadWorkingDirectoryError  the working directory is missing or not a directory
        │   └── ProcessBrokenError       the operating system failed us (fork, exec, signals)
        ├── LinkError                    a device link could not be opened or used
        │   ├── LinkConfigError          the connection string or its options are wrong (422,
        │   │   │                        an InvalidRequestError)
        │   │   └── UnknownSchemeError   no driver has the scheme; names the known ones (422,
        │   │                            also an UnknownKeyError like every registry's unknown key)
        │   ├── LinkUnavailableError     the device or host is not there now; retry later
        │   ├── LinkBrokenError          the far end went away while the link was open (the cable
        │   │                            was pulled, the connection reset, the broker gone): the
        │   │                            device's fault, or the network's; reconnecting may help
        │   └── LinkClosedError          we closed the link (``aclose``), and it was used then or
        │                                after: our own doing, never the device's
        └── OutboundError                an outbound call a user aimed (drivers/outbound.py)
            ├── OutboundRefusedError     the destination is internal and its owner may not reach
            │                            it (422, an InvalidRequestError; names the fix)
            └── OutboundUnresolvedError  the host name has no address now

One error per fault, as trio's ``BrokenResourceError`` and ``ClosedResourceError``: a link that
broke and was then closed by us says "closed" to whoever uses it after the close, so a user that
must report why a link ended asks whoever closed it (the device actor keeps the first break).

Foreign errors (``OSError``, ``psutil.Error``, ``serial.SerialException``, the MQTT client's) are
translated at the driver's boundary and chained as the cause; none escapes a driver.
"""

from __future__ import annotations

from vareon_runtime.errors import InvalidRequestError, UnknownKeyError, VareonError

__all__ = [
    "BadWorkingDirectoryError",
    "DriverError",
    "ExecutableNotFoundError",
    "LinkBrokenError",
    "LinkClosedError",
    "LinkConfigError",
    "LinkError",
    "LinkUnavailableError",
    "OutboundError",
    "OutboundRefusedError",
    "OutboundUnresolvedError",
    "ProcessBrokenError",
    "ProcessConfigError",
    "ProcessError",
    "UnknownSchemeError",
]


class DriverError(VareonError):
    """Base class of every error a driver raises."""


class ProcessError(DriverError):
    """An OS process could not be started or controlled."""


class ProcessConfigError(ProcessError):
    """The command cannot run as configured; fixing the configuration fixes it."""


class ExecutableNotFoundError(ProcessConfigError, FileNotFoundError):
    """The command's executable does not exist, is not on PATH, or is not executable."""


class BadWorkingDirectoryError(ProcessConfigError, NotADirectoryError):
    """The working directory does not exist or is not a directory."""


class ProcessBrokenError(ProcessError):
    """The operating system failed to start, signal or reap a process."""


class LinkError(DriverError):
    """A device link could not be opened or used."""


class LinkConfigError(LinkError, InvalidRequestError):
    """The connection string or its options are wrong; fixing them fixes it (422)."""


class UnknownSchemeError(LinkConfigError, UnknownKeyError):
    """No driver has the connection string's scheme; the message names the known ones.

    ``details`` holds the keyed registry's uniform ``field``, ``key`` and ``known``, and ``scheme``.
    """

    def __init__(self, scheme: str, known: list[str]) -> None:
        super().__init__(
            f"no device driver for the scheme {scheme!r}; known: {', '.join(known) or 'none'}"
            " (or a device path such as /dev/ttyUSB0)",
            key=scheme,
            known=known,
            field="connectionString",
            extra={"scheme": scheme},
        )
        self.scheme = scheme


class LinkUnavailableError(LinkError):
    """The device or host is not reachable now (no such port yet, connection refused, timeout)."""


class LinkBrokenError(LinkError):
    """The far end went away while the link was open: the cable was pulled, the device reset the
    connection or hung up, the broker is gone. Not our doing; opening the link again may work."""


class LinkClosedError(LinkError):
    """We closed the link (``aclose``) and it was used during or after the close. Not the device's
    fault: a link that broke first raises :class:`LinkBrokenError` to whoever noticed the break."""


class OutboundError(DriverError):
    """Base class of the outbound guard's errors."""


class OutboundRefusedError(OutboundError, InvalidRequestError):
    """The destination is internal and the caller may not reach it (422); the message names the
    address, why it is internal, and the fix (an admin, or ``[outbound] allow``)."""


class OutboundUnresolvedError(OutboundError):
    """The host name has no address now (unknown, the resolver failed or took too long)."""
