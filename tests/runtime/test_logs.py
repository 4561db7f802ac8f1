"""Log output: plain lines and JSON lines on stderr, one handler however often configured."""

from __future__ import annotations

import json
import logging
import re
import subprocess
import sys
from pathlib import Path

import pytest

from vareon_runtime import logs
from vareon_runtime.logs import configure_logging


def our_handlers() -> list[logging.Handler]:
    return [h for h in logging.getLogger().handlers if isinstance(h, logs._StderrHandler)]


def test_json_lines_carry_fields_and_traceback(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging("debug", "json")
    log = logging.getLogger("vareon.store")
    log.info("committed %d writes", 3, extra={"batch": 7, "path": "/tmp/x y"})
    try:
        raise RuntimeError("disk full")
    except RuntimeError:
        log.exception("commit failed", extra={"writes": 2})
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 2
    first, second = (json.loads(line) for line in lines)
    assert first["message"] == "committed 3 writes"
    assert first["level"] == "INFO"
    assert first["logger"] == "vareon.store"
    assert first["batch"] == 7 and first["path"] == "/tmp/x y"
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", first["time"])
    assert "exc" not in first
    assert second["level"] == "ERROR"
    assert second["writes"] == 2
    assert "Traceback" in second["exc"] and "RuntimeError: disk full" in second["exc"]


def test_plain_line_has_time_level_logger_and_fields(
    capsys: pytest.CaptureFixture[str],
) -> None:
    configure_logging("info", "plain")
    log = logging.getLogger("vareon.web")
    log.debug("not shown at info")
    log.warning("slow request", extra={"path": "/api/agents", "ms": 812, "note": "a b"})
    err = capsys.readouterr().err
    assert "not shown" not in err
    assert re.fullmatch(
        r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z WARNING vareon\.web: slow request"
        r' path=/api/agents ms=812 note="a b"\n',
        err,
    )


def test_configuring_twice_keeps_one_handler_and_the_latest_format(
    capsys: pytest.CaptureFixture[str],
) -> None:
    before = len(logging.getLogger().handlers)
    configure_logging("info", "plain")
    configure_logging("warning", "json")
    assert len(our_handlers()) == 1
    assert len(logging.getLogger().handlers) == before + 1
    assert logging.getLogger().level == logging.WARNING
    logging.getLogger("vareon.test").warning("once")
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 1
    assert json.loads(lines[0])["message"] == "once"


def test_unknown_level_or_format_is_refused() -> None:
    with pytest.raises(ValueError, match="log level must be one of debug, info, warning, error"):
        configure_logging("verbose")
    with pytest.raises(ValueError, match="log format must be one of plain, json, not 'xml'"):
        configure_logging("info", "xml")


@pytest.mark.parametrize(
    ("name", "shown"),
    [
        ("pump\n2026-01-01T00:00:00.000Z CRITICAL vareon: forged", "pump\\n2026-01-01T00:00:00.000Z CRITICAL"),
        ("a\r\nb", "a\\r\\nb"),
        ("nul\x00", "nul\\x00"),
        ("red\x1b[31m", "red\\x1b[31m"),
        ("sep\u2028x", "sep\\u2028x"),
    ],
)
def test_a_plain_line_is_one_line_whatever_a_user_named(
    capsys: pytest.CaptureFixture[str], name: str, shown: str
) -> None:
    configure_logging("info", "plain")
    logging.getLogger("vareon.scheduler").warning("task %s failed", name, extra={"task": name})
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.endswith("\n")
    assert shown in err
    assert "\x1b" not in err and "\x00" not in err and "\r" not in err and "\u2028" not in err


def test_a_traceback_still_spans_lines(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging("info", "plain")
    try:
        raise RuntimeError("boom")
    except RuntimeError:
        logging.getLogger("vareon.store").exception("commit failed")
    err = capsys.readouterr().err
    assert "Traceback (most recent call last):\n" in err


FIRST_BOOT = """
import sys
from sqlalchemy import create_engine
from vareon_runtime.logs import configure_logging
from vareon_runtime.store.migrate import migrate

configure_logging(sys.argv[1], "plain")
migrate(create_engine(sys.argv[2]))
"""


@pytest.mark.parametrize("level", ["info", "debug"])
def test_a_first_boot_logs_each_upgrade_without_alembic_chatter(tmp_path: Path, level: str) -> None:
    # In a process of its own: Alembic sets its plugins up once a process, at the first migration.
    done = subprocess.run(
        [sys.executable, "-c", FIRST_BOOT, level, f"sqlite:///{tmp_path / 'vareon.db'}"],
        capture_output=True, text=True, timeout=120, check=True,
    )
    lines = done.stderr.splitlines()
    upgrades = [line for line in lines if " INFO alembic.runtime.migration: Running upgrade " in line]
    assert any("-> 0001_kernel" in line for line in upgrades)
    chatter = ("setup plugin", "Context impl", "Will assume")
    if level == "info":
        assert not [line for line in lines if any(words in line for words in chatter)]
    else:  # still there for whoever debugs, as DEBUG lines
        assert any(" DEBUG alembic.runtime.plugins: setup plugin " in line for line in lines)
        assert any(" DEBUG alembic.runtime.migration: Context impl SQLiteImpl." in line for line in lines)
        assert not [line for line in lines if " INFO alembic.runtime.plugins" in line]
