"""schemathesis over every operation of /openapi.json, with an admin's token and without one:
no 5xx, no timeout, no answer that breaks the document (scripts/fuzz-api does the work)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "fuzz-api"

pytestmark = pytest.mark.fuzz


def _isolation_missing() -> str | None:
    if not sys.platform.startswith("linux"):
        return "needs Linux namespaces"
    for tool in ("unshare", "ip"):
        if shutil.which(tool) is None:
            return f"needs `{tool}` (util-linux, iproute2) to fuzz in a network namespace"
    probe = subprocess.run(["unshare", "-rn", "true"], capture_output=True, text=True)
    if probe.returncode != 0:
        return f"this host does not allow a user and network namespace: {probe.stderr.strip()}"
    if not (Path(sys.prefix) / "bin" / "schemathesis").exists() or Path(sys.prefix).resolve() != (ROOT / ".venv").resolve():
        return "runs with the project's .venv (scripts/fuzz-api uses .venv/bin)"
    return None


def test_the_whole_api_holds_under_schemathesis() -> None:
    reason = _isolation_missing()
    if reason:
        pytest.skip(reason)
    done = subprocess.run([str(SCRIPT)], capture_output=True, text=True, timeout=900, cwd=ROOT)
    summaries = [line for line in done.stdout.splitlines() if "generated" in line or line.startswith("==")]
    print("\n".join(summaries))
    assert done.returncode == 0, done.stdout[-20000:] + done.stderr[-5000:]
