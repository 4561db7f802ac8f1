"""What the process runner's tests share: Python programs with a token on their command line, and
:class:`Leftovers`, which finds again every process a test started (by that token, or because the
test tracked it) and kills and reaps what is left when the test ends."""

from __future__ import annotations

import os
import signal
import sys
import uuid
from dataclasses import dataclass, field

import psutil
import trio

from drivers import OSProcess

TIMEOUT = 20


def python(code: str, *args: str) -> list[str]:
    """argv running ``code`` with ``args``."""
    return [sys.executable, "-c", code, *args]


def new_owner() -> str:
    """An owner mark no other test uses."""
    return f"test/{uuid.uuid4().hex}"


def gone(pid: int) -> bool:
    """No such process, or only a zombie left for an init that does not reap (containers)."""
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def is_our_zombie(proc: psutil.Process) -> bool:
    """Whether ``proc`` is a zombie waiting for this process to reap it."""
    try:
        return proc.is_running() and proc.status() == psutil.STATUS_ZOMBIE and proc.ppid() == os.getpid()
    except psutil.NoSuchProcess:
        return False


async def until(condition: object) -> None:
    """Check ``condition()`` often until it holds; the caller bounds the wait with fail_after."""
    assert callable(condition)
    while not condition():
        await trio.sleep(0.01)


@dataclass
class Leftovers:
    """The processes of one test: those with :attr:`token` on their command line (a forked
    daemon keeps its parent's), and those the test :meth:`track`-ed (a zombie has no command
    line left)."""

    token: str = field(default_factory=lambda: f"vareon-test-{uuid.uuid4().hex}")
    tracked: list[psutil.Process] = field(default_factory=list)

    def track(self, pid: int) -> psutil.Process:
        """Follow ``pid`` (by pid and creation time, so a reused pid is never touched)."""
        proc = psutil.Process(pid)
        self.tracked.append(proc)
        return proc

    def find(self) -> list[psutil.Process]:
        """The test's processes that still exist, zombies included."""
        found = {proc.pid: proc for proc in self.tracked if proc.is_running()}
        for proc in psutil.process_iter(["cmdline"]):
            try:
                if self.token in (proc.info["cmdline"] or []):
                    found.setdefault(proc.pid, proc)
            except psutil.Error:
                continue
        found.pop(os.getpid(), None)
        return list(found.values())

    async def sweep(self) -> None:
        """Kill what runs, reap what is left as our zombie, until nothing runs."""
        with trio.fail_after(TIMEOUT):
            while True:
                running = []
                for proc in self.find():
                    if is_our_zombie(proc):
                        _reap(proc)
                        continue
                    try:
                        if proc.status() != psutil.STATUS_ZOMBIE:
                            proc.send_signal(signal.SIGKILL)
                            running.append(proc)
                    except psutil.NoSuchProcess:
                        continue
                if not running:
                    return
                await trio.sleep(0.01)


async def spawn(processes: list[OSProcess], argv: list[str], **kwargs: object) -> OSProcess:
    """``OSProcess.spawn(argv, **kwargs)``, kept in ``processes`` to be stopped after the test."""
    proc = await OSProcess.spawn(argv, **kwargs)  # type: ignore[arg-type]
    processes.append(proc)
    return proc


# The classic daemon: a middle process leaves the group with setsid, forks the daemon and exits;
# the daemon reports its pid and lets go of the output pipe. The leader then reports it and,
# unless told to exit, stays.
DAEMONIZING = """
import os, sys, time
read, write = os.pipe()
if os.fork() == 0:
    os.setsid()
    if os.fork() == 0:
        os.write(write, b"%d\\n" % os.getpid())
        devnull = os.open(os.devnull, os.O_RDWR)
        for fd in (0, 1, 2):
            os.dup2(devnull, fd)
        time.sleep(600)
    os._exit(0)
os.close(write)
os.wait()
print("daemon", os.fdopen(read).readline().strip(), flush=True)
if "--exit" in sys.argv:
    sys.exit(0)
time.sleep(600)
"""


async def start_daemonizing(processes: list[OSProcess], leftovers: Leftovers, *args: str, owner: str | None) -> tuple[OSProcess, psutil.Process]:
    """Spawn the DAEMONIZING leader (with ``args`` and ``owner``); it and the daemon it left
    outside its group."""
    proc = await spawn(processes, python(DAEMONIZING, leftovers.token, *args), owner=owner)
    line = await proc.stdout.receive_line()
    assert line is not None and line.startswith("daemon "), line
    daemon = leftovers.track(int(line.split()[1]))
    assert os.getpgid(daemon.pid) != proc.pgid and os.getsid(daemon.pid) != proc.pid
    return proc, daemon


def _reap(proc: psutil.Process) -> None:
    try:
        os.waitpid(proc.pid, os.WNOHANG)  # a zombie: never blocks
    except ChildProcessError:
        pass
