"""The runtime as a child subreaper: a daemon that escaped its group, or a member that outlived
its leader, comes back to us and is reaped once stopped; a child trio spawned is never reaped
behind trio's back."""

from __future__ import annotations

import os
import signal

import psutil
import pytest
import trio
from process_support import TIMEOUT, Leftovers, is_our_zombie, new_owner, python, spawn, start_daemonizing, until

from drivers import OSProcess, enable_subreaper
from drivers.subreaper import notice_adopted, reap_adopted, subreaper_reason


@pytest.fixture(autouse=True)
def subreaper() -> None:
    """These tests need this process to be a child subreaper (as the runtime is)."""
    if not enable_subreaper():
        pytest.skip(f"this host refuses a child subreaper: {subreaper_reason()}")


async def test_an_escaped_daemon_becomes_our_child_and_is_reaped_once_stopped(
    processes: list[OSProcess], leftovers: Leftovers
) -> None:
    with trio.fail_after(TIMEOUT):
        # The leader exits too: only the daemon is left, outside the group, and it is ours.
        proc, daemon = await start_daemonizing(processes, leftovers, "--exit", owner=new_owner())
        assert await proc.wait() == 0
        assert daemon.ppid() == os.getpid()
        assert await proc.lingering()
        assert await proc.stop(5) == 0
        assert not await proc.lingering()
    # Stopped, and not left behind as our zombie either.
    assert not daemon.is_running()


async def test_a_child_trio_spawned_keeps_its_exit_code(processes: list[OSProcess]) -> None:
    # It carries an owner mark, as an adopted process would; it exits with 7 when told.
    code = (
        "import signal, sys\n"
        "signal.pthread_sigmask(signal.SIG_BLOCK, [signal.SIGUSR1])\n"
        "print('up', flush=True)\n"
        "signal.sigwait([signal.SIGUSR1])\n"
        "sys.exit(7)\n"
    )
    with trio.fail_after(TIMEOUT):
        proc = await spawn(processes, python(code), owner=new_owner())
        assert await proc.stdout.receive_line() == "up"
        await trio.to_thread.run_sync(notice_adopted)  # sees it running, with its mark
        os.kill(proc.pid, signal.SIGUSR1)
        child = psutil.Process(proc.pid)
        await until(lambda: is_our_zombie(child))
        await trio.to_thread.run_sync(notice_adopted)
        reap_adopted()
        assert is_our_zombie(child)
        assert await proc.wait() == 7


async def test_a_group_member_that_outlived_its_leader_is_reaped_by_the_stop(
    processes: list[OSProcess], leftovers: Leftovers
) -> None:
    # The leader exits at once; its child stays in the group until told to exit.
    waiter = (
        "import signal, sys\n"
        "signal.pthread_sigmask(signal.SIG_BLOCK, [signal.SIGUSR1])\n"
        "print('up', flush=True)\n"
        "signal.sigwait([signal.SIGUSR1])\n"
    )
    code = (
        "import subprocess, sys\n"
        f"child = subprocess.Popen([sys.executable, '-c', {waiter!r}, sys.argv[1]], stdout=subprocess.PIPE, text=True)\n"
        "assert child.stdout.readline() == 'up\\n'\n"
        "print(child.pid, flush=True)\n"
    )
    with trio.fail_after(TIMEOUT):
        proc = await spawn(processes, python(code, leftovers.token))
        line = await proc.stdout.receive_line()
        assert line is not None
        child = leftovers.track(int(line))
        assert await proc.wait() == 0
        assert child.ppid() == os.getpid()  # orphaned, it came to us
        child.send_signal(signal.SIGUSR1)
        await until(lambda: is_our_zombie(child))
        assert await proc.lingering()  # the group still answers, through our zombie
        assert await proc.stop(5) == 0
        assert not await proc.lingering()
    assert not child.is_running()
