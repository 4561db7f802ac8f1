"""What a runtime killed with SIGKILL left running is found by its owner mark and stopped, even
outside the group it was started in."""

from __future__ import annotations

import os
import signal
import subprocess

import psutil
import pytest
import trio
from process_support import TIMEOUT, Leftovers, new_owner, python

from drivers import LineReader, enable_subreaper, reap_orphan_group
from drivers.subreaper import subreaper_reason

# A previous runtime: it starts a program (the leader, in a session of its own, with the owner
# mark), which starts a daemon in yet another session and exits; the runtime reports the
# leader's pid and creation time and the daemon's pid, then waits to be killed.
PREVIOUS_RUNTIME = """
import os, subprocess, sys, time
import psutil
token, owner = sys.argv[1], sys.argv[2]
leader_code = '''
import subprocess, sys
quiet = dict(stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
daemon = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)", sys.argv[1]], start_new_session=True, **quiet)
print(daemon.pid, flush=True)
sys.stdin.read()
'''
leader = subprocess.Popen(
    [sys.executable, "-c", leader_code, token],
    env=dict(os.environ, VAREON_PROCESS_OWNER=owner),
    start_new_session=True,
    stdin=subprocess.PIPE,
    stdout=subprocess.PIPE,
    text=True,
)
daemon = int(leader.stdout.readline())
started = psutil.Process(leader.pid).create_time()
leader.stdin.close()
leader.wait()
print(leader.pid, repr(started), daemon, flush=True)
time.sleep(600)
"""


async def test_a_marked_daemon_in_another_session_is_stopped_after_its_leader_is_gone(leftovers: Leftovers) -> None:
    if not enable_subreaper():  # the daemon comes to this process, which must reap it
        pytest.skip(f"this host refuses a child subreaper: {subreaper_reason()}")
    owner = new_owner()
    with trio.fail_after(TIMEOUT):
        runtime = await trio.lowlevel.open_process(
            python(PREVIOUS_RUNTIME, leftovers.token, owner), stdout=subprocess.PIPE, start_new_session=True
        )
        try:
            line = await LineReader(runtime.stdout).receive_line()
            assert line is not None
            leader_pid, started, daemon_pid = int(line.split()[0]), float(line.split()[1]), int(line.split()[2])
            daemon = leftovers.track(daemon_pid)
        finally:
            runtime.send_signal(signal.SIGKILL)  # kill -9 of the previous runtime
            await runtime.wait()
        assert not psutil.pid_exists(leader_pid)
        assert os.getsid(daemon.pid) not in (leader_pid, runtime.pid, os.getsid(0))
        assert daemon.environ()["VAREON_PROCESS_OWNER"] == owner
        # Without the owner, nothing names it: its leader's group is gone.
        assert not await reap_orphan_group(leader_pid, started, timeout=5)
        assert daemon.is_running() and daemon.status() != psutil.STATUS_ZOMBIE
        assert await reap_orphan_group(leader_pid, started, timeout=5, owner=owner)
        # Stopped, and not left behind as our zombie (it had come to us, the subreaper).
        assert not daemon.is_running()
        assert not await reap_orphan_group(leader_pid, started, timeout=5, owner=owner)
