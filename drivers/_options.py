"""Checks the link drivers share for the options of a connection string.

Each driver lists the options it knows; these helpers refuse everything else with a
:class:`~drivers.errors.LinkConfigError` whose message says what was expected, what came, and
what is known, so a typo in ``?baudrate=`` is a 422 at creation rather than a silent default.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping
from typing import TypeVar
from urllib.parse import urlsplit

from drivers.errors import LinkConfigError

__all__ = ["check_known", "flag", "host_and_port", "one_of", "positive_float", "positive_int"]

_N = TypeVar("_N", int, float)

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


def check_known(options: Mapping[str, str], known: Collection[str], *, what: str) -> None:
    """Refuse an option that is not in ``known``.

    Args:
        options: the connection string's query parameters.
        known: the option names the driver understands.
        what: the kind of link, for the message (``"a TCP link"``).

    Raises:
        LinkConfigError: names the first unknown option and every known one.
    """
    unknown = sorted(set(options) - set(known))
    if unknown:
        names = ", ".join(sorted(known)) or "none"
        raise LinkConfigError(
            f"unknown option {unknown[0]!r} for {what}; known options: {names}",
            details={"option": unknown[0], "known": sorted(known)},
        )


def positive_int(name: str, value: str, *, maximum: int | None = None) -> int:
    """``value`` as an integer above zero (and at most ``maximum``).

    Raises:
        LinkConfigError: ``"baudrate must be a positive integer, not 'fast'"``.
    """
    number = _positive(name, value, int, "a positive integer")
    if maximum is not None and number > maximum:
        raise LinkConfigError(f"{name} must be at most {maximum}, not {value!r}", details={"option": name})
    return number


def positive_float(name: str, value: str) -> float:
    """``value`` as a finite number of seconds above zero.

    Raises:
        LinkConfigError: ``"timeout must be a positive number of seconds, not 'soon'"``.
    """
    return _positive(name, value, float, "a positive number of seconds")


def _positive(name: str, value: str, parse: Callable[[str], _N], expected: str) -> _N:
    """``parse(value)`` if it is above zero and finite, else an error saying ``expected``."""
    try:
        number: _N | None = parse(value)
    except ValueError:
        number = None
    if number is None or not 0 < number < float("inf"):
        raise LinkConfigError(f"{name} must be {expected}, not {value!r}", details={"option": name})
    return number


def flag(name: str, value: str) -> bool:
    """``value`` as a boolean: ``1/0``, ``true/false``, ``yes/no``, ``on/off``.

    Raises:
        LinkConfigError: anything else.
    """
    lowered = value.strip().lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise LinkConfigError(f"{name} must be 1 or 0 (true or false), not {value!r}", details={"option": name})


def one_of(name: str, value: str, choices: Mapping[str, object]) -> object:
    """The choice ``value`` names (case-insensitive keys of ``choices``).

    Raises:
        LinkConfigError: names the allowed values.
    """
    key = value.strip().upper()
    for choice, result in choices.items():
        if choice.upper() == key:
            return result
    allowed = ", ".join(dict.fromkeys(str(result) for result in choices.values()))
    raise LinkConfigError(f"{name} must be one of {allowed}, not {value!r}", details={"option": name})


def host_and_port(location: str, *, scheme: str, default_port: int | None = None) -> tuple[str, int]:
    """Split ``host:port`` (``[v6]:port`` for IPv6) out of a URL's network location.

    Args:
        location: the URL's netloc, possibly with ``user:password@`` in front.
        scheme: for the message (``tcp``).
        default_port: used when the location names no port; None makes a port required.

    Raises:
        LinkConfigError: no host, no port where one is required, or a port that is not 1-65535.
    """
    example = f"{scheme}://127.0.0.1:{default_port or 5000}"
    try:
        parts = urlsplit(f"//{location}")
        host, port = parts.hostname, parts.port
    except ValueError:
        port_text = location.rpartition("@")[2].rpartition(":")[2]
        raise LinkConfigError(
            f"the port of a {scheme} link must be a number from 1 to 65535, not {port_text!r} (e.g. {example})",
            details={"location": location.rpartition("@")[2]},
        ) from None
    if not host:
        raise LinkConfigError(f"a {scheme} link needs a host, e.g. {example}")
    if port is None:
        if default_port is None:
            raise LinkConfigError(f"a {scheme} link needs a port, e.g. {example}")
        port = default_port
    if port == 0:
        raise LinkConfigError(f"the port of a {scheme} link must be from 1 to 65535, not 0 (e.g. {example})")
    return host, port
