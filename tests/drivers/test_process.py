"""OS processes: own process group, exit noticed without polling, output by line, group-wide stop
(what left the group with an owner mark included), orphan reaping."""

from __future__ import annotations

import os
import signal
import stat
import sys
from pathlib import Path

import psutil
import pytest
import trio
from process_support import TIMEOUT, Leftovers, gone, new_owner, python, spawn, start_daemonizing

from drivers import (
    BadWorkingDirectoryError,
    ExecutableNotFoundError,
    LineReader,
    OSProcess,
    ProcessConfigError,
    describe_exit,
    reap_orphan_group,
    validate_command,
)

# A child that ignores SIGTERM and starts a grandchild that ignores it too; each reports its pid.
STUBBORN = """
import signal, subprocess, sys, time
signal.signal(signal.SIGTERM, signal.SIG_IGN)
code = "import os, signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); print('grandchild', os.getpid(), flush=True); time.sleep(600)"
subprocess.Popen([sys.executable, "-c", code] + sys.argv[1:])
print('child', flush=True)
time.sleep(600)
"""


async def stubborn_ready(reader: LineReader, *, child: bool = True) -> int:
    """Wait until the STUBBORN child (if ``child``) and its grandchild ignore SIGTERM; the
    grandchild's pid."""
    grandchild = None
    async for line in reader:
        if line.startswith("grandchild"):
            grandchild = int(line.split()[1])
        elif line == "child":
            child = False
        if grandchild is not None and not child:
            return grandchild
    raise AssertionError("the output ended before both processes were ready")


async def test_a_process_leads_its_own_session_and_group(processes: list[OSProcess]) -> None:
    with trio.fail_after(TIMEOUT):
        proc = await spawn(processes, python("import time; print('up', flush=True); time.sleep(60)"))
        assert await proc.stdout.receive_line() == "up"
        assert os.getpgid(proc.pid) == proc.pgid == proc.pid
        assert os.getsid(proc.pid) == proc.pid
        assert proc.create_time == psutil.Process(proc.pid).create_time()
        assert proc.returncode is None
        assert await proc.stop(5) == -signal.SIGTERM
        assert gone(proc.pid)


async def test_output_comes_line_by_line_from_both_pipes(processes: list[OSProcess]) -> None:
    code = (
        "import sys\n"
        "sys.stdout.write('one\\r\\ntwo\\n' + 'x' * 10 + '\\n')\n"
        "sys.stdout.buffer.write(b'bad \\xff byte\\nno newline at the end')\n"
        "sys.stderr.write('oops\\n')\n"
    )
    with trio.fail_after(TIMEOUT):
        proc = await spawn(processes, python(code), max_line=4)
        out = [line async for line in proc.stdout]
        err = [line async for line in proc.stderr]
        assert await proc.wait() == 0
    # A line past max_line bytes comes out in pieces; undecodable bytes are replaced.
    assert out == ["one", "two", "xxxx", "xxxx", "xx", "bad ", "\ufffd by", "te", "no n", "ewli", "ne a", "t th", "e en", "d"]
    assert err == ["oops"]


async def test_exit_is_noticed_at_once_after_kill_9(processes: list[OSProcess]) -> None:
    with trio.fail_after(TIMEOUT):
        proc = await spawn(processes, python("import time; print('up', flush=True); time.sleep(60)"))
        await proc.stdout.receive_line()
        os.kill(proc.pid, signal.SIGKILL)
        with trio.fail_after(1):
            code = await proc.wait()
    assert code == -signal.SIGKILL
    assert describe_exit(code) == "killed by SIGKILL"
    assert describe_exit(3) == "exited with code 3"


async def test_stop_kills_a_group_that_ignores_sigterm_after_the_timeout(processes: list[OSProcess]) -> None:
    with trio.fail_after(TIMEOUT):
        proc = await spawn(processes, python(STUBBORN))
        grandchild = await stubborn_ready(proc.stdout)
        assert os.getpgid(grandchild) == proc.pgid
        started = trio.current_time()
        code = await proc.stop(0.5)
        elapsed = trio.current_time() - started
    assert code == -signal.SIGKILL
    assert 0.5 <= elapsed < 3
    assert gone(proc.pid) and gone(grandchild)


async def test_stop_reaches_a_descendant_that_left_the_group(processes: list[OSProcess]) -> None:
    # The grandchild starts its own session, as a daemonising program would.
    code = STUBBORN.replace("+ sys.argv[1:])", "+ sys.argv[1:], start_new_session=True)")
    with trio.fail_after(TIMEOUT):
        proc = await spawn(processes, python(code))
        grandchild = await stubborn_ready(proc.stdout)
        assert os.getpgid(grandchild) != proc.pgid
        await proc.stop(0.2)
    assert gone(proc.pid) and gone(grandchild)


async def test_stop_after_the_leader_died_still_clears_its_group(processes: list[OSProcess]) -> None:
    # The leader exits at once, leaving its grandchild behind in the group.
    code = STUBBORN.replace("print('child', flush=True)\ntime.sleep(600)\n", "sys.exit(3)\n")
    assert code != STUBBORN
    with trio.fail_after(TIMEOUT):
        proc = await spawn(processes, python(code))
        grandchild = await stubborn_ready(proc.stdout, child=False)
        assert await proc.wait() == 3
        assert not gone(grandchild)
        assert await proc.stop(0.2) == 3
    assert gone(grandchild)


async def test_a_cancelled_stop_still_kills_the_group(processes: list[OSProcess]) -> None:
    with trio.fail_after(TIMEOUT):
        proc = await spawn(processes, python(STUBBORN))
        grandchild = await stubborn_ready(proc.stdout)
        with trio.move_on_after(0.2):
            await proc.stop(30)
        assert await proc.wait() == -signal.SIGKILL
        with trio.fail_after(2):
            while not gone(grandchild):
                await trio.sleep(0.01)


async def test_an_orphaned_group_is_reaped_by_pid_and_create_time(processes: list[OSProcess]) -> None:
    with trio.fail_after(TIMEOUT):
        proc = await spawn(processes, python(STUBBORN))
        grandchild = await stubborn_ready(proc.stdout)
        assert proc.create_time is not None
        # Another process's identity (a reused pid) or none at all: left alone.
        assert not await reap_orphan_group(proc.pid, proc.create_time - 100, timeout=0.2)
        assert not await reap_orphan_group(proc.pid, None, timeout=0.2)
        assert proc.returncode is None and not gone(grandchild)
        # The recorded identity: the whole group goes, SIGKILL after the timeout.
        assert await reap_orphan_group(proc.pid, proc.create_time, timeout=0.2)
        assert await proc.wait() == -signal.SIGKILL
        assert gone(grandchild)
        assert not await reap_orphan_group(proc.pid, proc.create_time, timeout=0.2)


def test_validation_names_the_reason(tmp_path: Path) -> None:
    script = tmp_path / "agent.sh"
    script.write_text("#!/bin/sh\necho hi\n")
    with pytest.raises(ExecutableNotFoundError, match=r"executable 'no-such-program-x' was not found on PATH"):
        validate_command(["no-such-program-x"])
    with pytest.raises(ExecutableNotFoundError, match=r"'./missing.sh' does not exist \(relative to"):
        validate_command(["./missing.sh"], cwd=str(tmp_path))
    with pytest.raises(ExecutableNotFoundError, match=r"is not an executable file; make it executable"):
        validate_command(["./agent.sh"], cwd=str(tmp_path))
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    assert validate_command(["./agent.sh"], cwd=str(tmp_path)) == str(script)
    with pytest.raises(BadWorkingDirectoryError, match=r"working directory '.*nowhere' does not exist"):
        validate_command([sys.executable], cwd=str(tmp_path / "nowhere"))
    with pytest.raises(BadWorkingDirectoryError, match=r"is not a directory"):
        validate_command([sys.executable], cwd=str(script))
    with pytest.raises(ProcessConfigError, match="the command is empty"):
        validate_command([])
    with pytest.raises(TypeError, match="must be an argv list"):
        validate_command("python3 agent.py")  # type: ignore[arg-type]
    # PATH comes from the environment the child will get.
    with pytest.raises(ExecutableNotFoundError, match="not found on PATH"):
        validate_command(["sh"], env={"PATH": str(tmp_path)})
    assert validate_command(["agent.sh"], env={"PATH": str(tmp_path)}) == str(script)


async def test_spawn_refuses_before_forking(tmp_path: Path) -> None:
    with pytest.raises(BadWorkingDirectoryError):
        await OSProcess.spawn([sys.executable, "-c", "pass"], cwd=str(tmp_path / "nowhere"))
    with pytest.raises(ExecutableNotFoundError):
        await OSProcess.spawn(["no-such-program-x"])
    # The errors are also the builtin kinds a caller might catch.
    assert issubclass(ExecutableNotFoundError, FileNotFoundError)
    assert issubclass(BadWorkingDirectoryError, NotADirectoryError)


async def test_env_and_cwd_reach_the_child(processes: list[OSProcess], tmp_path: Path) -> None:
    code = "import os; print(os.getcwd()); print(os.environ.get('AGENT_X'))"
    with trio.fail_after(TIMEOUT):
        proc = await spawn(processes, python(code), cwd=str(tmp_path), env={"AGENT_X": "42", "PATH": os.defpath})
        lines = [line async for line in proc.stdout]
        assert await proc.wait() == 0
    assert lines == [str(tmp_path), "42"]


async def test_stop_reaches_a_daemon_that_left_with_setsid_by_its_owner_mark(
    processes: list[OSProcess], leftovers: Leftovers
) -> None:
    owner = new_owner()
    with trio.fail_after(TIMEOUT):
        proc, daemon = await start_daemonizing(processes, leftovers, owner=owner)
        assert daemon.environ()["VAREON_PROCESS_OWNER"] == owner
        assert await proc.stop(5) == -signal.SIGTERM
        assert not await proc.lingering()
    assert gone(daemon.pid)


async def test_watch_hands_over_both_streams_and_returns_the_exit_code(processes: list[OSProcess]) -> None:
    code = (
        "import sys\n"
        "print('out 1', flush=True)\n"
        "print('err 1', file=sys.stderr, flush=True)\n"
        "print('out 2', flush=True)\n"
        "sys.exit(3)\n"
    )
    lines: list[tuple[str, str]] = []
    with trio.fail_after(TIMEOUT):
        proc = await spawn(processes, python(code))
        assert await proc.watch(lambda stream, line: lines.append((stream, line)), drain=TIMEOUT) == 3
    assert [line for stream, line in lines if stream == "stdout"] == ["out 1", "out 2"]
    assert [line for stream, line in lines if stream == "stderr"] == ["err 1"]


async def test_watch_gives_up_on_pipes_a_background_process_holds_after_the_drain(
    processes: list[OSProcess], leftovers: Leftovers
) -> None:
    # The leader says goodbye and, once it was heard, exits; its child keeps the output pipes
    # open (and says nothing).
    code = (
        "import signal, subprocess, sys\n"
        "signal.pthread_sigmask(signal.SIG_BLOCK, [signal.SIGUSR1])\n"
        "subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(600)', sys.argv[1]])\n"
        "print('bye', flush=True)\n"
        "signal.sigwait([signal.SIGUSR1])\n"
    )
    lines: list[str] = []

    def heard(stream: str, line: str) -> None:
        lines.append(line)
        os.kill(proc.pid, signal.SIGUSR1)

    with trio.fail_after(TIMEOUT):
        proc = await spawn(processes, python(code, leftovers.token))
        assert await proc.watch(heard, drain=0.2) == 0
        assert lines == ["bye"]
        assert await proc.lingering()  # the child in its group
        await proc.stop(5)
        assert not await proc.lingering()
