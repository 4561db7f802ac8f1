"""The runtime as a child subreaper: what escapes a process group still comes back to us.

A program the runtime starts leads its own process group, and stopping it signals the group. A
descendant that calls ``setsid`` (a daemon's double fork) leaves the group; once its parent has
exited, the kernel hands it to the nearest *subreaper* among its ancestors, or to PID 1. With
``prctl(PR_SET_CHILD_SUBREAPER)`` the runtime is that subreaper: such a process becomes our child,
carrying the owner mark the runner put in its environment
(:data:`~drivers.identity.OWNER_VARIABLE`), so a stop finds it (:mod:`drivers.process`).

Reaping: an adopted process that exits is our zombie until we wait for it. The runtime waits only
for the processes it recorded as adopted, never for the children trio spawned (trio waits for
those itself, and a wait of ours would steal their exit status, which then reads 0):

- :func:`own` and :func:`disown` keep the pids trio spawned and has not reaped, and
  :func:`spawning` covers a spawn in flight, whose child exists before its pid is known;
- :func:`adopted_children` (and :func:`notice_adopted`, run periodically by
  :func:`watch_adopted`) record our children that came to us as orphans: a child in a session
  that is neither ours nor its own (one we fork keeps our session or leads its own), or a
  session leader carrying an owner mark other than the runtime's own (read while it runs: a
  zombie's environment is gone); :func:`adopt` records the processes a stop or a sweep is about
  to kill, which become our zombies if their parent dies before them;
- :func:`reap_adopted` waits for the recorded processes that are now our zombies. A pid cannot be
  reused while it is our zombie, and a record whose pid names a later process (another creation
  time) is dropped, so the wait reaches exactly the process recorded.

Where the call is refused (another OS than Linux, a seccomp policy such as Android's on Termux),
the runtime works on without it, saying why once in the log; orphans then go to PID 1, and a stop
looks for its group's marked processes among all processes instead of among our children.
"""

from __future__ import annotations

import ctypes
import logging
import os
import sys
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager

import psutil
import trio

from .identity import OWNER_VARIABLE, owner_of, same_process

__all__ = [
    "adopt",
    "adopted_children",
    "disown",
    "enable_subreaper",
    "notice_adopted",
    "own",
    "reap_adopted",
    "spawning",
    "subreaper_reason",
    "watch_adopted",
]

log = logging.getLogger("vareon.drivers.subreaper")

_PR_SET_CHILD_SUBREAPER = 36

_state: dict[str, object] = {"enabled": None, "reason": None}
# The records below are written from worker threads (the scans) and the trio thread alike.
_lock = threading.Lock()
_spawned: set[int] = set()  # pids of the children trio spawned and has not reaped yet
_in_flight = 0  # spawns in flight: their child may exist before its pid is in _spawned
_adopted: dict[int, float | None] = {}  # pid -> creation time of the adopted processes not reaped yet


def enable_subreaper() -> bool:
    """Make this process a child subreaper, once; answers whether it is one.

    Never raises: where the call is refused, the reason is logged once and kept
    (:func:`subreaper_reason`).
    """
    with _lock:
        enabled = _state["enabled"]
        if enabled is not None:
            return bool(enabled)
        reason = _set_child_subreaper()
        _state["enabled"] = reason is None
        _state["reason"] = reason
    if reason is not None:
        log.warning(
            "not a child subreaper (%s): a process that leaves its group and loses its parent goes"
            " to PID 1; stops look for it by its owner mark among all processes",
            reason,
        )
    return reason is None


def _set_child_subreaper() -> str | None:
    """Ask the kernel; None when it agreed, else why not."""
    if not sys.platform.startswith("linux"):
        return f"{sys.platform} has no child subreaper"
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        # prctl takes unsigned longs; an int argument would leave the upper half undefined.
        one, zero = ctypes.c_ulong(1), ctypes.c_ulong(0)
        if libc.prctl(_PR_SET_CHILD_SUBREAPER, one, zero, zero, zero) != 0:
            code = ctypes.get_errno()
            return f"prctl(PR_SET_CHILD_SUBREAPER) failed: {os.strerror(code)} (errno {code})"
    except (OSError, AttributeError) as exc:
        return f"prctl is not available: {exc}"
    return None


def subreaper_reason() -> str | None:
    """Why this process is not a subreaper (None when it is, or was never asked to be)."""
    reason = _state["reason"]
    return str(reason) if reason is not None else None


@contextmanager
def spawning() -> Iterator[None]:
    """Hold while trio spawns a child, until its pid is :func:`own`-ed: no adopted process is
    waited for meanwhile, as the new child could be taken for one."""
    global _in_flight
    with _lock:
        _in_flight += 1
    try:
        yield
    finally:
        with _lock:
            _in_flight -= 1


def own(pid: int) -> None:
    """Note a child trio spawned (its exit is trio's to wait for, never ours)."""
    with _lock:
        _spawned.add(pid)
        _adopted.pop(pid, None)


def disown(pid: int) -> None:
    """Note that trio has reaped its child ``pid``."""
    with _lock:
        _spawned.discard(pid)


def _adoptable(proc: psutil.Process, mark: str | None) -> bool:
    """Whether ``proc`` (with the owner mark ``mark``) may be recorded as adopted: never a child
    trio spawned, nor one that other code in this process may have forked."""
    if proc.pid in _spawned:
        return False
    try:
        if proc.ppid() != os.getpid():
            return True  # not our child: it can become one only by adoption
        session = os.getsid(proc.pid)  # a zombie still has its session
    except (psutil.Error, OSError):
        return False
    if session not in (os.getsid(0), proc.pid):
        # A child we fork keeps our session or leads its own (setsid): this one came to us.
        return True
    # A session leader that came to us (the middle of a double fork, alive) looks like a child
    # forked here; the mark tells, unless it is the runtime's own (inherited by every child).
    return mark is not None and mark != os.environ.get(OWNER_VARIABLE)


def adopt(processes: Iterable[psutil.Process]) -> None:
    """Record ``processes`` (about to be stopped) so that whichever of them ends as our zombie is
    reaped by :func:`reap_adopted`. Runs in a worker thread or in trio's."""
    for proc in processes:
        mark = owner_of(proc)
        with _lock:
            if _adoptable(proc, mark):
                _adopted.setdefault(proc.pid, _started(proc))


def adopted_children(owner: str | None = None) -> list[psutil.Process]:
    """Record our children that came to us as orphans (exited ones included), and answer those
    alive that carry ``owner``'s mark (any mark when None). Runs in a worker thread."""
    try:
        children = psutil.Process().children()
    except psutil.Error:
        return []
    found = []
    for child in children:
        mark = owner_of(child)  # None for a zombie: its environment is gone
        with _lock:
            if not _adoptable(child, mark):
                continue
            _adopted.setdefault(child.pid, _started(child))
        if mark is not None and (owner is None or mark == owner):
            found.append(child)
    return found


def notice_adopted() -> int:
    """Record the adopted processes alive now; answers how many are recorded (worker thread)."""
    adopted_children()
    with _lock:
        return len(_adopted)


def reap_adopted() -> int:
    """Wait for the recorded adopted processes that are now our zombies; answers how many were
    reaped. Never blocks, never waits for a child trio spawned.

    A record whose pid now names another process (its creation time differs) is dropped
    unwaited: the number may have been handed to a child trio spawned since.
    """
    with _lock:
        if _in_flight:
            return 0  # a child being spawned could carry a recorded pid; the next round reaps
        records = list(_adopted.items())
    me = os.getpid()
    reaped = 0
    for pid, began in records:
        try:
            proc = psutil.Process(pid)
            if pid in _spawned or not same_process(proc, began):
                _forget(pid)
                continue
            if proc.status() != psutil.STATUS_ZOMBIE:
                continue
            parent = proc.ppid()
            if parent != me:
                if parent <= 1:
                    _forget(pid)  # PID 1's zombie: it can never be ours
                continue  # its parent may reap it, or die first and hand it to us
            done, _ = os.waitpid(pid, os.WNOHANG)
        except (psutil.NoSuchProcess, ChildProcessError):
            _forget(pid)  # gone, or not our child (any more): nothing to wait for
            continue
        except (psutil.Error, InterruptedError):
            continue  # cannot tell now; the next round looks again
        if done == pid:
            _forget(pid)
            reaped += 1
    return reaped


async def watch_adopted(*, interval: float = 5.0, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
    """Every ``interval`` seconds, record the adopted processes and reap those that exited (a
    module that starts programs runs this for as long as it runs). Returns at once, having
    said why in the log, where the runtime cannot be a subreaper."""
    if not enable_subreaper():
        task_status.started()
        return
    task_status.started()
    while True:
        await trio.sleep(interval)
        await trio.to_thread.run_sync(notice_adopted)
        reap_adopted()


def _started(proc: psutil.Process) -> float | None:
    try:
        return proc.create_time()
    except psutil.Error:
        return None


def _forget(pid: int) -> None:
    with _lock:
        _adopted.pop(pid, None)
