"""Serial links: a device path with options, or one of pyserial's URL handlers.

::

    /dev/ttyUSB0?baudrate=115200&bytesize=8&parity=N&stopbits=1&rtscts=0&xonxoff=0
    socket://host:port          a serial port shared over TCP (ser2net raw mode, a simulator)
    rfc2217://host:port         a remote serial port with control lines (RFC 2217)
    loop://                     a loopback: what is sent comes back (tests, demos)

One module a noun: ``settings`` checks the options (:class:`SerialSettings`); ``port`` holds the
link on a device path's file descriptor, waited on by trio without a thread
(:class:`SerialLink`); ``url`` drives pyserial's URL handlers in worker threads
(:class:`SerialUrlLink`); ``driver`` is what :data:`~drivers.link.LINKS` registers
(:class:`SerialDriver`).

pyserial is imported on first use, never when this package is imported.
"""

from .driver import SerialDriver as SerialDriver
from .port import SerialLink as SerialLink
from .settings import DEFAULT_BAUDRATE as DEFAULT_BAUDRATE
from .settings import MAX_BAUDRATE as MAX_BAUDRATE
from .settings import SerialSettings as SerialSettings
from .url import READ_POLL as READ_POLL
from .url import WRITE_TIMEOUT as WRITE_TIMEOUT
from .url import SerialUrlLink as SerialUrlLink

__all__ = [
    "DEFAULT_BAUDRATE",
    "MAX_BAUDRATE",
    "READ_POLL",
    "WRITE_TIMEOUT",
    "SerialDriver",
    "SerialLink",
    "SerialSettings",
    "SerialUrlLink",
]
