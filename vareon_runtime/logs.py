"""Logging setup: one stderr handler on the root logger, as plain lines or JSON lines.

Loggers in the project are named ``vareon.<area>`` (``vareon.store``, ``vareon.web``). Fields
passed with ``extra=`` are part of the record: ``key=value`` pairs at the end of a plain line,
keys of the object in JSON.

A plain line is one line: control characters in its message (a newline in a task's name, an
escape sequence in a device's reply) are written escaped (``\\n``, ``\\x1b``), so nothing a
user names can forge a line or drive the terminal that shows the log. Only a traceback, which
is ours, spans lines. JSON lines escape by construction.

Libraries that narrate at INFO what only a developer needs are quieted (:data:`QUIETED`): their
lines become DEBUG records, shown at ``log_level = "debug"`` only. Alembic's "setup plugin" (seven
lines) and "Context impl"/"Will assume" lines go so; its "Running upgrade" lines, which say what
changed in the database, stay at INFO.
"""

from __future__ import annotations

import json
import logging
import re
import sys
from datetime import datetime, timezone
from typing import Any, TextIO

__all__ = ["CONTROL_CHARACTERS", "QUIETED", "configure_logging", "escape_controls"]

LEVELS: dict[str, int] = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
}
FORMATS = ("plain", "json")

# Attributes every LogRecord has; anything else on a record came from `extra=`.
_STANDARD_ATTRS = frozenset(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {
    "message",
    "asctime",
}
_JSON_KEYS = ("time", "level", "logger", "message", "exc", "stack")


QUIETED: dict[str, tuple[str, ...]] = {
    "alembic.runtime.plugins": (),
    "alembic.runtime.migration": ("Running ",),
}
"""Loggers whose INFO records become DEBUG, except those whose message starts with one of the
prefixes: ``Running upgrade 0003 -> 0004, ...`` stays, ``Context impl SQLiteImpl.`` goes."""


CONTROL_CHARACTERS = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")
"""C0 and C1 controls, DEL and the Unicode line separators: what a name may not hold."""


def _escape(match: re.Match[str]) -> str:
    return match.group().encode("unicode_escape").decode("ascii")


def escape_controls(text: str) -> str:
    """``text`` with every control character written as its escape (``\\n``, ``\\x00``)."""
    return CONTROL_CHARACTERS.sub(_escape, text)


def _timestamp(record: logging.LogRecord) -> str:
    moment = datetime.fromtimestamp(record.created, tz=timezone.utc)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def _extra(record: logging.LogRecord) -> dict[str, Any]:
    return {k: v for k, v in record.__dict__.items() if k not in _STANDARD_ATTRS}


def _logfmt_value(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    if text == "" or any(c in text for c in ' "=\\') or CONTROL_CHARACTERS.search(text):
        return json.dumps(text)
    return text


class PlainFormatter(logging.Formatter):
    """``2026-11-22T10:00:00.123Z INFO vareon.store: message key=value``, traceback below."""

    def format(self, record: logging.LogRecord) -> str:
        line = f"{_timestamp(record)} {record.levelname} {record.name}: {escape_controls(record.getMessage())}"
        pairs = " ".join(f"{k}={_logfmt_value(v)}" for k, v in _extra(record).items())
        if pairs:
            line = f"{line} {pairs}"
        if record.exc_info:
            line = f"{line}\n{self.formatException(record.exc_info)}"
        if record.stack_info:
            line = f"{line}\n{self.formatStack(record.stack_info)}"
        return line


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, the extra fields, exc."""

    def format(self, record: logging.LogRecord) -> str:
        payload: dict[str, Any] = {
            "time": _timestamp(record),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in _extra(record).items():
            # A field named like a standard key is kept under another name, not dropped.
            payload[f"{key}_" if key in _JSON_KEYS else key] = value
        if record.exc_info:
            payload["exc"] = self.formatException(record.exc_info)
        if record.stack_info:
            payload["stack"] = self.formatStack(record.stack_info)
        return json.dumps(payload, default=str)


class _Demote(logging.Filter):
    """A logger's INFO records, except those starting with ``kept``, made DEBUG records (and
    so dropped unless the logger is enabled for DEBUG)."""

    def __init__(self, kept: tuple[str, ...]) -> None:
        super().__init__()
        self.kept = kept

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno != logging.INFO or (isinstance(record.msg, str) and record.msg.startswith(self.kept)):
            return True
        record.levelno, record.levelname = logging.DEBUG, "DEBUG"
        return logging.getLogger(record.name).isEnabledFor(logging.DEBUG)


def _quiet_libraries() -> None:
    """Put one :class:`_Demote` on each logger of :data:`QUIETED` (again: replace it)."""
    for name, kept in QUIETED.items():
        logger = logging.getLogger(name)
        for old in [f for f in logger.filters if isinstance(f, _Demote)]:
            logger.removeFilter(old)
        logger.addFilter(_Demote(kept))


class _StderrHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to a given stream, or to whatever ``sys.stderr`` is at the time of the record.

    Looked up per record so pytest's capture and a redirected stderr get the output.
    """

    def __init__(self, fixed: TextIO | None = None) -> None:
        logging.Handler.__init__(self, logging.NOTSET)
        self._fixed = fixed

    @property  # type: ignore[override]
    def stream(self) -> TextIO:
        return self._fixed if self._fixed is not None else sys.stderr


def configure_logging(level: str = "info", fmt: str = "plain", *, stream: TextIO | None = None) -> None:
    """Send the root logger's records to stderr (or ``stream``) in the given level and format.

    Calling it again replaces the handler it installed earlier instead of adding a second one;
    handlers installed by others (pytest's capture, for one) are left alone. The loggers of
    :data:`QUIETED` are quieted.

    Args:
        level: ``debug``, ``info``, ``warning`` or ``error`` (any case).
        fmt: ``plain`` or ``json``.
        stream: write here instead of stderr (benchmarks log to a file).

    Raises:
        ValueError: an unknown level or format.
    """
    numeric = LEVELS.get(level.lower())
    if numeric is None:
        raise ValueError(f"log level must be one of {', '.join(LEVELS)}, not {level!r}")
    if fmt not in FORMATS:
        raise ValueError(f"log format must be one of {', '.join(FORMATS)}, not {fmt!r}")
    root = logging.getLogger()
    for handler in list(root.handlers):
        if isinstance(handler, _StderrHandler):
            root.removeHandler(handler)
            handler.close()
    handler = _StderrHandler(stream)
    handler.setFormatter(JsonFormatter() if fmt == "json" else PlainFormatter())
    root.addHandler(handler)
    root.setLevel(numeric)
    _quiet_libraries()
