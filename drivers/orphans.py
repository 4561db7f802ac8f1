"""Finding what a process group left running: its members, its descendants, and the processes
that carry its owner mark (:mod:`drivers.identity`), for stopping them (:mod:`drivers.process`)
and for the sweep after a ``kill -9`` of the runtime (:func:`reap_orphan_group`).

Zombies count as gone: a killed process is reparented to PID 1 (or to us, the subreaper, who
reaps it: :mod:`drivers.subreaper`) and stays a zombie until reaped, which some container init
processes never do.
"""

from __future__ import annotations

import logging
import os
import signal
from collections.abc import Iterable
from functools import partial

import psutil
import trio

from .errors import ProcessBrokenError
from .identity import CREATE_TIME_TOLERANCE, create_time, owner_of, same_process
from .subreaper import adopt, reap_adopted

__all__ = [
    "KILL_TIMEOUT",
    "POLL_INTERVAL",
    "group_members",
    "live",
    "marked",
    "reap_orphan_group",
    "signal_all",
    "union",
]

log = logging.getLogger("vareon.drivers.process")

KILL_TIMEOUT = 5.0
"""Seconds to wait for a SIGKILLed group to disappear before giving up on it."""

POLL_INTERVAL = 0.02
"""Seconds between checks of processes that are not our children, while stopping them."""


def marked(owner: str, candidates: Iterable[psutil.Process] | None = None) -> list[psutil.Process]:
    """The live processes carrying ``owner``'s mark, among ``candidates`` (all processes when
    None). Runs in a worker thread."""
    if candidates is None:
        candidates = psutil.process_iter()
    return live(proc for proc in candidates if proc.pid != os.getpid() and owner_of(proc) == owner)


def group_members(pgid: int, *, exclude: int | None = None) -> list[psutil.Process]:
    """Every process whose group id is ``pgid`` (zombies included), bar ``exclude``."""
    members = []
    for pid in psutil.pids():
        if pid == exclude:
            continue
        try:
            if os.getpgid(pid) == pgid:
                members.append(psutil.Process(pid))
        except (OSError, psutil.Error):
            continue  # gone meanwhile, or not ours to look at
    return members


def live(processes: Iterable[psutil.Process]) -> list[psutil.Process]:
    """Those of ``processes`` still running: not gone, not a zombie, pid not reused."""
    alive = []
    for proc in processes:
        try:
            if proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE:
                alive.append(proc)
        except psutil.NoSuchProcess:
            continue
        except psutil.Error:
            alive.append(proc)  # cannot tell (access denied): assume it still runs
    return alive


def union(first: list[psutil.Process], second: list[psutil.Process]) -> list[psutil.Process]:
    """Both lists, each process once."""
    merged = {proc.pid: proc for proc in first}
    for proc in second:
        merged.setdefault(proc.pid, proc)
    return list(merged.values())


def signal_all(processes: Iterable[psutil.Process], sig: int, *, quiet: bool = False) -> None:
    """Send ``sig`` to each of ``processes``; one that is gone (or whose pid was reused: psutil
    checks) is skipped.

    Raises:
        ProcessBrokenError: a process refused the signal (permission denied); never when ``quiet``.
    """
    for proc in processes:
        try:
            proc.send_signal(sig)
        except psutil.NoSuchProcess:
            continue
        except psutil.Error as exc:
            if not quiet:
                raise ProcessBrokenError(f"cannot signal pid {proc.pid}: {exc}") from exc


def _orphans(pid: int, started: float | None, owner: str | None) -> list[psutil.Process]:
    """The live processes of the group a previous runtime started as ``pid`` at ``started``, and
    those carrying ``owner``'s mark; each is recorded in case it ends as our zombie (thread)."""
    found = _find_orphans(pid, started, owner)
    adopt(found)
    return found


def _find_orphans(pid: int, started: float | None, owner: str | None) -> list[psutil.Process]:
    found: dict[int, psutil.Process] = {}
    if owner is not None:
        found.update((proc.pid, proc) for proc in marked(owner))
    if started is None:
        return live(found.values())
    try:
        leader = psutil.Process(pid)
        if not same_process(leader, started):
            # The pid is someone else's now; and while our old group had any member left, the
            # kernel would not have handed its number out again. Nothing of that group remains.
            return live(found.values())
    except psutil.NoSuchProcess:
        # The leader is gone, but members of its group may remain: a group id is the leader's
        # pid, so the group is ours if its members started after our leader did.
        for proc in live(group_members(pid)):
            began = create_time(proc.pid)
            if began is not None and began >= started - CREATE_TIME_TOLERANCE:
                found.setdefault(proc.pid, proc)
        return live(found.values())
    except psutil.Error as exc:
        raise ProcessBrokenError(f"cannot inspect pid {pid} left by a previous runtime: {exc}") from exc
    found[leader.pid] = leader
    try:
        for child in leader.children(recursive=True):
            found[child.pid] = child
    except psutil.Error:
        pass
    for member in group_members(pid):
        found.setdefault(member.pid, member)
    return live(found.values())


async def reap_orphan_group(
    pid: int | None,
    create_time: float | None,
    *,
    timeout: float,
    kill_timeout: float = KILL_TIMEOUT,
    owner: str | None = None,
) -> bool:
    """Stop what a previous (crashed) runtime left of a program it started as ``pid``.

    The group is identified by its leader's pid *and* creation time: a pid since reused by an
    unrelated process is left alone, and so is a pid recorded without a creation time. With
    ``owner``, the processes carrying its mark are stopped too, wherever they went (a daemon
    that left the group now belongs to PID 1). Members get SIGTERM, ``timeout`` seconds, then
    SIGKILL (those found again by then, new ones included); if this is cancelled half way, they
    get SIGKILL on the way out. Those that end as our zombies are reaped.

    Returns:
        True if processes were found and stopped; False if none remained.

    Raises:
        ProcessBrokenError: they could not be inspected or signalled, or survived SIGKILL.
    """
    if pid is None and owner is None:
        return False
    find = partial(_orphans, pid or 0, create_time if pid else None, owner)
    members = await trio.to_thread.run_sync(find)
    if not members:
        return False
    what = f"group {pid}" if pid else owner
    log.warning("stopping %d process(es) of %s left behind by a previous runtime", len(members), what)
    try:
        for sig, wait in ((signal.SIGTERM, timeout), (signal.SIGKILL, kill_timeout)):
            if sig == signal.SIGKILL:
                members = union(members, await trio.to_thread.run_sync(find))
            signal_all(members, sig)
            with trio.move_on_after(wait):
                while members:
                    await trio.sleep(POLL_INTERVAL)
                    members = await trio.to_thread.run_sync(live, members)
                return True
    except BaseException:
        # Cancelled (or failing) half way: leave nothing running behind us.
        signal_all(members, signal.SIGKILL, quiet=True)
        raise
    finally:
        reap_adopted()
    raise ProcessBrokenError(f"what {what} left after a previous runtime survived SIGKILL for {kill_timeout:g}s")
