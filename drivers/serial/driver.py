"""The serial driver: :class:`SerialDriver`, registered for device paths and pyserial's URLs."""

from __future__ import annotations

from drivers._options import host_and_port
from drivers.errors import LinkConfigError
from drivers.link import ConnectionTarget, mask_connection_string

from .port import SerialLink, open_port
from .settings import PORT_OPTIONS, URL_OPTIONS, SerialSettings
from .url import SerialUrlLink, open_url

__all__ = ["URL_SCHEMES", "SerialDriver"]

URL_SCHEMES = ("socket", "rfc2217", "loop")
"""pyserial's URL handlers the driver takes (a device path has the scheme ``serial``)."""


class SerialDriver:
    """The driver of device paths and of pyserial's ``socket://``, ``rfc2217://`` and ``loop://``."""

    def check(self, target: ConnectionTarget) -> None:
        """Refuse a bad path, location or option, without touching the device.

        Raises:
            LinkConfigError: names the option or part that is wrong, and what is accepted.
        """
        self._settings(target)

    async def open(self, target: ConnectionTarget) -> SerialLink | SerialUrlLink:
        """Open the port (configured) or the URL handler.

        Raises:
            LinkConfigError: the target is wrong, or the port refuses its settings.
            LinkUnavailableError: no such device now, permission denied, in use, or refused.
        """
        settings = self._settings(target)
        if target.scheme == "serial":
            return await open_port(target.location, settings)
        # Our options were checked and are passed as arguments; pyserial sees the bare URL.
        return await open_url(f"{target.scheme}://{target.location}", settings)

    @staticmethod
    def _settings(target: ConnectionTarget) -> SerialSettings:
        if target.scheme == "serial":
            path = target.location
            if "\0" in path or not path.startswith("/") or path.endswith("/"):
                raise LinkConfigError(
                    f"a serial device path is absolute and names a device, e.g. /dev/ttyUSB0, not {path!r}"
                )
            return SerialSettings.from_options(target.options, known=PORT_OPTIONS, what="a serial port")
        if target.scheme not in URL_SCHEMES:
            raise LinkConfigError(
                f"the serial driver knows {', '.join(s + '://' for s in URL_SCHEMES)} and device paths,"
                f" not {target.scheme}://"
            )
        if target.scheme == "loop":
            if target.location or target.path:
                raise LinkConfigError(f"loop:// takes no host or path, not {mask_connection_string(target.raw)!r}")
        else:
            if "@" in target.location:
                raise LinkConfigError(f"{target.scheme}:// takes no user name or password; write {target.scheme}://host:port")
            if target.path:
                raise LinkConfigError(f"{target.scheme}:// takes no path; write {target.scheme}://host:port")
            host_and_port(target.location, scheme=target.scheme)
        return SerialSettings.from_options(target.options, known=URL_OPTIONS, what=f"a {target.scheme}:// link")
