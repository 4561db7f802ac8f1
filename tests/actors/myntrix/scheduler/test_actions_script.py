"""The ``script`` task action, for real: subprocesses, their output, exit codes, and the process
group stopped when the run is cancelled (a timeout) or its leader exits."""

from __future__ import annotations

import os
import sys
import uuid
from pathlib import Path

import psutil
import pytest
import trio

from actors.myntrix.scheduler.actions import (
    ACTIONS,
    MASK,
    ActionContext,
    ActionOutcome,
    ScriptParameters,
    script_env,
)
from vareon_runtime.bus import EventBus
from vareon_runtime.errors import InvalidRequestError
from vareon_runtime.registry import Registry

TIMEOUT = 30.0


class Run:
    """One run's context, its log lines, and an event per awaited line."""

    def __init__(self) -> None:
        self.lines: list[str] = []
        self._waiting: dict[str, trio.Event] = {}
        self.ctx = ActionContext(
            task_id=str(uuid.uuid4()), run_id=str(uuid.uuid4()), registry=Registry(), bus=EventBus(), log=self._log
        )

    def _log(self, line: str) -> None:
        self.lines.append(line)
        for text, event in self._waiting.items():
            if text in line:
                event.set()

    async def saw(self, text: str) -> None:
        event = self._waiting.setdefault(text, trio.Event())
        if any(text in line for line in self.lines):
            event.set()
        await event.wait()


async def run_script(parameters: dict[str, object], run: Run | None = None) -> tuple[ActionOutcome, Run]:
    run = run or Run()
    action = ACTIONS.action("script")
    params = ACTIONS.validate("script", parameters)
    with trio.fail_after(TIMEOUT):
        outcome = await action.run(params, run.ctx)
    return outcome, run


def python(tmp_path: Path, code: str) -> tuple[list[str], str]:
    """argv running ``code``, and a token on its command line that finds its processes."""
    token = f"task-{uuid.uuid4().hex}"
    script = tmp_path / f"{token}.py"
    script.write_text(code)
    return [sys.executable, str(script), token], token


def processes_with(token: str) -> list[psutil.Process]:
    found = []
    for proc in psutil.process_iter(["cmdline", "status"]):
        try:
            if proc.info["status"] != psutil.STATUS_ZOMBIE and token in (proc.info["cmdline"] or []):
                found.append(proc)
        except psutil.Error:
            continue
    return found


async def test_stdout_and_stderr_lines_reach_the_log_in_order_per_stream(tmp_path: Path) -> None:
    argv, _ = python(
        tmp_path,
        "import sys\nprint('hello from the task')\nprint('one warning', file=sys.stderr)\nprint('bye')\n",
    )
    outcome, run = await run_script({"argv": argv})
    assert outcome == ActionOutcome(ok=True, exit_code=0)
    assert run.lines[0].startswith("started pid ")
    body = run.lines[1:-1]
    assert [line for line in body if not line.startswith("stderr: ")] == ["hello from the task", "bye"]
    assert [line for line in body if line.startswith("stderr: ")] == ["stderr: one warning"]
    assert run.lines[-1] == "exited with code 0"


async def test_an_unexpected_exit_code_fails_the_run_and_the_expected_one_passes(tmp_path: Path) -> None:
    argv, _ = python(tmp_path, "raise SystemExit(3)\n")
    outcome, _ = await run_script({"argv": argv})
    assert outcome == ActionOutcome(ok=False, exit_code=3, error="the script exited with code 3, expected 0")
    outcome, _ = await run_script({"argv": argv, "expectedExitCode": 3})
    assert outcome == ActionOutcome(ok=True, exit_code=3)


async def test_a_process_killed_by_a_signal_reports_it(tmp_path: Path) -> None:
    argv, _ = python(tmp_path, "import os, signal\nos.kill(os.getpid(), signal.SIGKILL)\n")
    outcome, run = await run_script({"argv": argv})
    assert outcome.ok is False and outcome.exit_code == -9
    assert outcome.error == "the script killed by SIGKILL, expected 0"
    assert run.lines[-1] == "killed by SIGKILL"


async def test_cancelling_the_run_stops_the_whole_process_group(tmp_path: Path) -> None:
    # The script ignores SIGTERM and starts a grandchild that does too: only SIGKILL to the group ends both.
    argv, token = python(
        tmp_path,
        "import signal, subprocess, sys, time\n"
        "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
        "child = subprocess.Popen([sys.executable, '-c',"
        " 'import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); print(\"child up\", flush=True); time.sleep(600)',"
        " sys.argv[1]])\n"
        "time.sleep(600)\n",
    )
    run = Run()
    params = ACTIONS.validate("script", {"argv": argv, "stopTimeout": 0.2})
    with trio.fail_after(TIMEOUT):
        with trio.CancelScope() as scope:  # what the run actor's timeout does
            async with trio.open_nursery() as nursery:
                nursery.start_soon(ACTIONS.action("script").run, params, run.ctx)
                await run.saw("child up")
                assert len(processes_with(token)) == 2
                scope.cancel()
    assert scope.cancelled_caught
    assert processes_with(token) == []
    assert any(line.startswith("stopping pid ") for line in run.lines)


async def test_processes_left_in_the_background_do_not_outlive_the_run(tmp_path: Path) -> None:
    argv, token = python(
        tmp_path,
        "import subprocess, sys\n"
        "subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(600)', sys.argv[1]],"
        " stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)\n"
        "print('leaving a sleeper behind')\n",
    )
    outcome, run = await run_script({"argv": argv, "stopTimeout": 1.0})
    assert outcome == ActionOutcome(ok=True, exit_code=0)
    assert "leaving a sleeper behind" in run.lines
    assert "stopping what it left running in its process group (SIGTERM, 1s, SIGKILL)" in run.lines
    assert processes_with(token) == []


async def test_a_grandchild_holding_the_pipes_does_not_hold_the_run(tmp_path: Path) -> None:
    # The grandchild inherits stdout: the pipe never reaches end of file while it lives.
    argv, token = python(
        tmp_path,
        "import subprocess, sys\n"
        "subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(600)', sys.argv[1]])\n"
        "print('done', flush=True)\n",
    )
    outcome, run = await run_script({"argv": argv, "stopTimeout": 1.0})
    assert outcome.ok and "done" in run.lines
    assert processes_with(token) == []


async def test_the_script_gets_a_minimal_environment_without_the_runtimes_secrets(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("VAREON_AUTH_SECRET", "runtime-secret")
    monkeypatch.setenv("DATABASE_PASSWORD", "db-secret")
    monkeypatch.setenv("LC_ALL", "C.UTF-8")
    argv, _ = python(tmp_path, "import os\nfor k in sorted(os.environ): print(k + '=' + os.environ[k])\n")
    outcome, run = await run_script({"argv": argv, "env": {"GREETING": "hi", "API_TOKEN": "task-secret"}})
    assert outcome.ok
    seen = dict(line.split("=", 1) for line in run.lines[1:-1] if "=" in line)
    assert seen["GREETING"] == "hi" and seen["API_TOKEN"] == "task-secret"
    assert seen["PATH"] == os.environ["PATH"] and seen["LC_ALL"] == "C.UTF-8"
    assert seen["PYTHONUNBUFFERED"] == "1"
    assert "VAREON_AUTH_SECRET" not in seen and "DATABASE_PASSWORD" not in seen
    assert not any("runtime-secret" in line or "db-secret" in line for line in run.lines)


def test_script_env_keeps_only_the_safe_variables() -> None:
    params = ScriptParameters(argv=["true"], env={"PATH": "/opt/bin"})
    env = script_env(params, {"PATH": "/usr/bin", "HOME": "/root", "AWS_SECRET_ACCESS_KEY": "x", "LC_TIME": "C"})
    assert env == {"PATH": "/opt/bin", "HOME": "/root", "LC_TIME": "C", "PYTHONUNBUFFERED": "1"}
    assert script_env(ScriptParameters(argv=["true"]), {})["PATH"] == os.defpath


async def test_working_directory_is_used(tmp_path: Path) -> None:
    workdir = tmp_path / "work"
    workdir.mkdir()
    outcome, run = await run_script({"argv": [sys.executable, "-c", "import os; print(os.getcwd())"], "cwd": str(workdir)})
    assert outcome.ok and str(workdir) in run.lines


def test_a_missing_executable_is_refused_at_the_door_with_the_reason(tmp_path: Path) -> None:
    with pytest.raises(InvalidRequestError, match="executable 'no-such-program-x1' was not found on PATH") as caught:
        ACTIONS.validate("script", {"argv": ["no-such-program-x1", "--flag"]})
    assert caught.value.details["field"] == "parameters.argv"
    script = tmp_path / "plain.txt"
    script.write_text("not a program")
    with pytest.raises(InvalidRequestError, match="is not an executable file"):
        ACTIONS.validate("script", {"argv": [str(script)]})
    with pytest.raises(InvalidRequestError, match=r"did you mean \['ls', '-l'\]"):
        ACTIONS.validate("script", {"argv": ["ls -l"]})


def test_a_bad_working_directory_is_refused_at_the_door(tmp_path: Path) -> None:
    with pytest.raises(InvalidRequestError, match="does not exist") as caught:
        ACTIONS.validate("script", {"argv": [sys.executable], "cwd": str(tmp_path / "missing")})
    assert caught.value.details["field"] == "parameters.cwd"
    (tmp_path / "file").write_text("")
    with pytest.raises(InvalidRequestError, match="is not a directory"):
        ACTIONS.validate("script", {"argv": [sys.executable], "cwd": str(tmp_path / "file")})


@pytest.mark.parametrize(
    ("parameters", "message"),
    [
        ({"argv": "ls -l /tmp"}, "not the shell command line 'ls -l /tmp'"),
        ({"argv": []}, "at least 1 item"),
        ({"argv": [" "]}, "the executable, must not be empty"),
        ({"argv": ["ls"], "env": {"1BAD": "x"}}, "'1BAD' is not a valid environment variable name"),
        ({"argv": ["ls"], "env": {"VAREON_DATA_DIR": "/x"}}, "VAREON_\\* variables are the runtime's own"),
        ({"argv": ["ls"], "shell": True}, "parameters.shell: Extra inputs are not permitted"),
        ({"argv": ["ls"], "expectedExitCode": 256}, "parameters.expectedExitCode"),
    ],
)
def test_bad_parameters_are_422_naming_the_field(parameters: dict[str, object], message: str) -> None:
    with pytest.raises(InvalidRequestError, match=message) as caught:
        ACTIONS.validate("script", parameters)
    assert all(error["loc"][0] == "parameters" for error in caught.value.details)


def test_both_spellings_are_accepted_and_the_wire_is_camel_case() -> None:
    params = ACTIONS.validate("script", {"argv": ["true"], "expected_exit_code": 1, "stopTimeout": 2})
    assert params.masked() == {"argv": ["true"], "cwd": None, "env": {}, "expectedExitCode": 1, "stopTimeout": 2.0}


def test_secret_looking_env_values_are_masked_and_kept_when_sent_back() -> None:
    stored = ACTIONS.validate("script", {"argv": ["true"], "env": {"API_TOKEN": "s3cret", "MODE": "fast"}})
    shown = stored.masked()
    assert shown["env"] == {"API_TOKEN": MASK, "MODE": "fast"}
    assert "s3cret" not in repr(stored)
    again = ACTIONS.validate("script", {**shown, "env": {**shown["env"], "MODE": "slow"}}, previous=stored)
    assert isinstance(again, ScriptParameters)
    assert again.env == {"API_TOKEN": "s3cret", "MODE": "slow"}
    changed = ACTIONS.validate("script", {**shown, "env": {"API_TOKEN": "new"}}, previous=stored)
    assert isinstance(changed, ScriptParameters) and changed.env == {"API_TOKEN": "new"}


async def test_an_executable_gone_since_the_task_was_made_is_a_failed_run(tmp_path: Path) -> None:
    program = tmp_path / "job.sh"
    program.write_text("#!/bin/sh\necho hi\n")
    program.chmod(0o755)
    params = ACTIONS.validate("script", {"argv": [str(program)]})
    program.unlink()
    # A stored task is loaded without the host check; its run fails with the reason.
    assert ACTIONS.validate("script", params.model_dump(), check=False) == params
    run = Run()
    with trio.fail_after(TIMEOUT):
        outcome = await ACTIONS.action("script").run(params, run.ctx)
    assert outcome.ok is False and outcome.exit_code is None
    assert outcome.error is not None and "does not exist" in outcome.error
    assert run.lines == [f"could not start: executable {str(program)!r} does not exist"]
