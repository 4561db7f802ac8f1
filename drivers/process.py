"""OS processes in their own session and process group, stopped as a whole group.

:meth:`OSProcess.spawn` runs an argv list (never a shell string) with ``start_new_session=True``:
the child leads a new session and process group (``pgid == pid``), so one ``killpg`` reaches it
and every descendant that stayed in the group, and a terminal's SIGHUP or the runtime's own
SIGINT never reaches it. stdin is ``/dev/null``; stdout and stderr are pipes read line by line
(:class:`LineReader`).

Exit is noticed without polling: :meth:`OSProcess.wait` is trio's ``Process.wait``, which on
Linux waits for the process's pidfd to become readable. Processes that are not our children (the
grandchildren, or a group left behind by a crashed runtime) have no pidfd we could wait on; only
while stopping them are they checked every ``POLL_INTERVAL``.

:meth:`OSProcess.stop` sends SIGTERM to the group (and to descendants that left it), waits the
stop timeout, then sends SIGKILL, and returns only once the leader is reaped and no member of
the group is left. :func:`reap_orphan_group` does the same for a group recorded by a previous
runtime, identified by its leader's pid *and* creation time, so a reused pid is never killed.

Zombies count as gone: a killed grandchild is reparented to PID 1 and stays a zombie until PID 1
reaps it, which some container init processes never do.
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import subprocess
from collections.abc import Iterable, Mapping, Sequence

import psutil
import trio

from .errors import BadWorkingDirectoryError, ExecutableNotFoundError, ProcessBrokenError, ProcessConfigError

__all__ = [
    "CREATE_TIME_TOLERANCE",
    "KILL_TIMEOUT",
    "MAX_LINE",
    "POLL_INTERVAL",
    "LineReader",
    "OSProcess",
    "describe_exit",
    "reap_orphan_group",
    "validate_command",
]

log = logging.getLogger("vareon.drivers.process")

MAX_LINE = 8192
"""Bytes in one line at most; a longer line is split into pieces of this size."""

KILL_TIMEOUT = 5.0
"""Seconds to wait for a SIGKILLed group to disappear before giving up on it."""

POLL_INTERVAL = 0.02
"""Seconds between checks of processes that are not our children, while stopping them."""

CREATE_TIME_TOLERANCE = 1.0
"""Seconds two creation times of one pid may differ and still be the same process.

psutil derives the creation time from the boot time, which the kernel recomputes when the wall
clock is stepped; a reused pid is never created within a second of its previous owner.
"""


def validate_command(
    argv: Sequence[str], *, cwd: str | None = None, env: Mapping[str, str] | None = None
) -> str:
    """Check that ``argv`` can run in ``cwd`` with ``env``; return the executable's path.

    The executable is resolved as ``subprocess`` will: a name with a slash is a path (relative
    to ``cwd``), a bare name is looked up on the ``PATH`` of ``env`` (the runtime's when
    ``env`` is None).

    Raises:
        TypeError: ``argv`` is a string (a shell command line) instead of a list.
        ProcessConfigError: ``argv`` is empty.
        BadWorkingDirectoryError: ``cwd`` does not exist, is not a directory, or cannot be entered.
        ExecutableNotFoundError: the executable does not exist or is not executable.
    """
    if isinstance(argv, (str, bytes)):
        raise TypeError(
            f"the command must be an argv list such as ['python3', 'agent.py'], not the string {argv!r}"
        )
    if not argv or not argv[0]:
        raise ProcessConfigError(
            "the command is empty; give the executable and its arguments as a list, "
            "e.g. ['python3', 'agent.py']"
        )
    if cwd is not None:
        if not os.path.exists(cwd):
            raise BadWorkingDirectoryError(
                f"working directory {cwd!r} does not exist; create it or correct cwd"
            )
        if not os.path.isdir(cwd):
            raise BadWorkingDirectoryError(
                f"working directory {cwd!r} is not a directory; point cwd at a directory"
            )
        if not os.access(cwd, os.X_OK):
            raise BadWorkingDirectoryError(
                f"working directory {cwd!r} cannot be entered (permission denied)"
            )
    program = argv[0]
    if os.sep in program or (os.altsep is not None and os.altsep in program):
        path = program if os.path.isabs(program) else os.path.join(cwd or os.getcwd(), program)
        if not os.path.exists(path):
            where = f" (relative to {cwd or os.getcwd()!r})" if not os.path.isabs(program) else ""
            raise ExecutableNotFoundError(f"executable {program!r} does not exist{where}")
        if os.path.isdir(path) or not os.access(path, os.X_OK):
            raise ExecutableNotFoundError(
                f"{program!r} is not an executable file; make it executable (chmod +x) "
                "or run it through its interpreter, e.g. ['python3', 'script.py']"
            )
        return os.path.abspath(path)
    search = os.pathsep.join(os.get_exec_path(dict(env) if env is not None else None))
    found = shutil.which(program, path=search)
    if found is None:
        raise ExecutableNotFoundError(
            f"executable {program!r} was not found on PATH ({search or 'empty'}); "
            "give its full path or set PATH in env"
        )
    return found


def describe_exit(code: int) -> str:
    """``exited with code 1`` or ``killed by SIGKILL``: an exit status for people."""
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        return f"killed by {name}"
    return f"exited with code {code}"


class LineReader:
    """Decoded lines of one output pipe; iterate it, or await :meth:`receive_line`.

    Lines are decoded as UTF-8 with undecodable bytes replaced, without their line ending. A
    line longer than ``max_line`` bytes comes out in pieces of ``max_line`` bytes. A final line
    without a newline is returned at end of file.
    """

    def __init__(self, stream: trio.abc.ReceiveStream | None, max_line: int = MAX_LINE) -> None:
        if max_line < 1:
            raise ValueError(f"max_line must be at least 1 byte, not {max_line!r}")
        self._stream = stream
        self._max_line = max_line
        self._buffer = bytearray()
        self._eof = stream is None

    async def receive_line(self) -> str | None:
        """The next line, or None at end of file (the pipe closed, or the reader was closed)."""
        buffer, limit = self._buffer, self._max_line
        while True:
            newline = buffer.find(b"\n", 0, limit + 1)
            if newline >= 0:
                line = bytes(buffer[:newline])
                del buffer[: newline + 1]
                return _decode(line)
            if len(buffer) >= limit:
                piece = bytes(buffer[:limit])
                del buffer[:limit]
                return _decode(piece)
            if self._eof:
                if buffer:
                    rest = bytes(buffer)
                    buffer.clear()
                    return _decode(rest)
                await trio.lowlevel.checkpoint()
                return None
            assert self._stream is not None
            try:
                data = await self._stream.receive_some(65536)
            except (trio.ClosedResourceError, trio.BrokenResourceError):
                data = b""  # closed by us, or the pipe broke: either way nothing more comes
            if data:
                buffer += data
            else:
                self._eof = True

    def __aiter__(self) -> LineReader:
        return self

    async def __anext__(self) -> str:
        line = await self.receive_line()
        if line is None:
            raise StopAsyncIteration
        return line

    async def aclose(self) -> None:
        """Close the pipe; a pending :meth:`receive_line` returns what it has, then None."""
        self._eof = True
        if self._stream is not None:
            await self._stream.aclose()


def _decode(raw: bytes) -> str:
    return raw.decode("utf-8", "replace").removesuffix("\r")


class OSProcess:
    """One child process leading its own session and process group.

    Create it with :meth:`spawn`. ``pid`` is also the group id (``pgid``); ``create_time``
    (seconds since the epoch, from psutil) tells this process apart from a later one that
    reuses its pid, and is None when the system would not say.
    """

    def __init__(self, process: trio.Process, argv: Sequence[str], max_line: int) -> None:
        self._process = process
        self.argv = list(argv)
        self.pid: int = process.pid
        self.pgid: int = process.pid  # start_new_session: the child leads its own group
        self.create_time: float | None = _create_time(process.pid)
        self.stdout = LineReader(process.stdout, max_line)
        self.stderr = LineReader(process.stderr, max_line)

    def __repr__(self) -> str:
        state = "running" if self.returncode is None else describe_exit(self.returncode)
        return f"<OSProcess pid={self.pid} {self.argv[0]!r} {state}>"

    @classmethod
    async def spawn(
        cls,
        argv: Sequence[str],
        *,
        cwd: str | None = None,
        env: Mapping[str, str] | None = None,
        max_line: int = MAX_LINE,
    ) -> OSProcess:
        """Start ``argv`` in a new session and process group.

        Args:
            argv: the executable and its arguments (never a shell string).
            cwd: working directory; the runtime's when None.
            env: the whole environment of the child; the runtime's when None.
            max_line: longest output line in bytes before it is split.

        Raises:
            ExecutableNotFoundError, BadWorkingDirectoryError, ProcessConfigError: the command
                cannot run as given (checked before forking, with the reason).
            ProcessBrokenError: the operating system refused to start it.
        """
        argv = list(argv) if not isinstance(argv, (str, bytes)) else argv
        validate_command(argv, cwd=cwd, env=env)
        try:
            process = await trio.lowlevel.open_process(
                argv,
                cwd=cwd,
                env=dict(env) if env is not None else None,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                start_new_session=True,
            )
        except OSError as exc:
            # The file system may have changed since the check: name the reason if it is ours.
            validate_command(argv, cwd=cwd, env=env)
            raise ProcessBrokenError(f"could not start {argv[0]!r}: {exc}") from exc
        return cls(process, argv, max_line)

    @property
    def returncode(self) -> int | None:
        """The exit status once the process has been reaped (negative: killed by that signal)."""
        return self._process.returncode

    async def wait(self) -> int:
        """Wait until the process exits (pidfd on Linux, no polling) and return its exit status."""
        return await self._process.wait()

    def signal_group(self, sig: int) -> bool:
        """Send ``sig`` to every process of the group; False when the group is gone.

        Raises:
            ProcessBrokenError: the signal was refused (permission denied).
        """
        if self._process.returncode is not None and psutil.pid_exists(self.pgid):
            # Our leader is reaped, so its pid can only exist again as somebody else's process;
            # and a pid cannot be handed out while a group still carries it as its id. The
            # number belongs to someone else now: our group is gone.
            return False
        try:
            os.killpg(self.pgid, sig)
        except ProcessLookupError:
            return False
        except PermissionError as exc:
            raise ProcessBrokenError(
                f"cannot signal process group {self.pgid} of {self.argv[0]!r}: {exc}"
            ) from exc
        return True

    async def stop(self, timeout: float, *, kill_timeout: float = KILL_TIMEOUT) -> int:
        """Stop the whole group: SIGTERM, up to ``timeout`` seconds, then SIGKILL; reap.

        Descendants that moved to a group of their own are signalled too. Returns once the
        leader is reaped and no member is left; if this is cancelled first, the group is sent
        SIGKILL on the way out so nothing outlives the runtime's interest in it.

        Returns:
            The leader's exit status.

        Raises:
            ProcessBrokenError: the group could not be signalled, or survived SIGKILL for
                ``kill_timeout`` seconds.
        """
        if self.returncode is not None and not self._group_answers():
            return self.returncode  # exited, reaped, nothing left behind: the common crash path
        others: list[psutil.Process] = []
        try:
            others = await trio.to_thread.run_sync(self._others, self.returncode is None)
            self._signal_all(signal.SIGTERM, others)
            with trio.move_on_after(timeout):
                await self._wait_all(others)
                return self._reaped_code()
            log.info(
                "pid %d (%s) outlived SIGTERM by %gs; sending SIGKILL to its group",
                self.pid, self.argv[0], timeout,
            )
            others = _union(others, await trio.to_thread.run_sync(self._others, self.returncode is None))
            self._signal_all(signal.SIGKILL, others)
            with trio.move_on_after(kill_timeout):
                await self._wait_all(others)
                return self._reaped_code()
        except BaseException:
            # Cancelled (or failing) half way: leave nothing running behind us.
            self._signal_all(signal.SIGKILL, others, quiet=True)
            raise
        raise ProcessBrokenError(
            f"process group {self.pgid} of {self.argv[0]!r} survived SIGKILL for {kill_timeout:g}s"
        )

    async def aclose(self) -> None:
        """Close the output pipes (the readers then end). Does not stop the process."""
        await self.stdout.aclose()
        await self.stderr.aclose()

    # -- internals ---------------------------------------------------------------------

    def _reaped_code(self) -> int:
        code = self.returncode
        assert code is not None, "the leader is reaped before a stop returns"
        return code

    def _group_answers(self) -> bool:
        """Whether the group may still have members (zombies included); False means it is gone."""
        if self._process.returncode is not None and psutil.pid_exists(self.pgid):
            return False  # the number belongs to someone else now (see signal_group)
        try:
            os.killpg(self.pgid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True

    def _others(self, leader_alive: bool) -> list[psutil.Process]:
        """Live processes to stop besides the leader: its descendants and its group.

        Runs in a worker thread, so it must not touch the trio ``Process`` (reading its
        ``returncode`` may reap it and close its pidfd, which only the trio thread may do);
        the caller says whether the leader was still unreaped.
        """
        found: dict[int, psutil.Process] = {}
        if leader_alive:
            try:
                for child in psutil.Process(self.pid).children(recursive=True):
                    found[child.pid] = child
            except psutil.Error:
                pass  # it exited meanwhile; its group is still scanned below
        if leader_alive or not psutil.pid_exists(self.pgid):
            for member in _group_members(self.pgid, exclude=self.pid):
                found.setdefault(member.pid, member)
        return _live(found.values())

    def _signal_all(self, sig: int, others: Iterable[psutil.Process], *, quiet: bool = False) -> None:
        try:
            self.signal_group(sig)
        except ProcessBrokenError:
            if not quiet:
                raise
        for proc in others:
            try:
                proc.send_signal(sig)  # psutil refuses if the pid was reused meanwhile
            except psutil.Error:
                pass

    def _remaining(self, others: list[psutil.Process]) -> list[psutil.Process]:
        """Of ``others`` and the group, what still runs, once the leader is reaped (thread)."""
        return _union(_live(others), self._others(leader_alive=False))

    async def _wait_all(self, others: list[psutil.Process]) -> None:
        await self.wait()
        while True:
            if not others and not self._group_answers():
                return  # no syscall-heavy scan when the group is plainly gone
            others = await trio.to_thread.run_sync(self._remaining, others)
            if not others:
                return
            await trio.sleep(POLL_INTERVAL)


def _create_time(pid: int) -> float | None:
    try:
        return psutil.Process(pid).create_time()
    except psutil.Error:
        return None


def _group_members(pgid: int, *, exclude: int | None = None) -> list[psutil.Process]:
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


def _live(processes: Iterable[psutil.Process]) -> list[psutil.Process]:
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


def _union(first: list[psutil.Process], second: list[psutil.Process]) -> list[psutil.Process]:
    merged = {proc.pid: proc for proc in first}
    for proc in second:
        merged.setdefault(proc.pid, proc)
    return list(merged.values())


def _orphans(pid: int, create_time: float) -> list[psutil.Process]:
    """The live processes of the group a previous runtime started as ``pid`` (thread)."""
    try:
        leader = psutil.Process(pid)
        if abs(leader.create_time() - create_time) > CREATE_TIME_TOLERANCE:
            # The pid is someone else's now; and while our old group had any member left, the
            # kernel would not have handed its number out again. Nothing of ours remains.
            return []
    except psutil.NoSuchProcess:
        # The leader is gone, but members of its group may remain: a group id is the leader's
        # pid, so the group is ours if its members started after our leader did.
        return [
            proc
            for proc in _live(_group_members(pid))
            if _create_time(proc.pid) is not None
            and _create_time(proc.pid) >= create_time - CREATE_TIME_TOLERANCE  # type: ignore[operator]
        ]
    except psutil.Error as exc:
        raise ProcessBrokenError(f"cannot inspect pid {pid} left by a previous runtime: {exc}") from exc
    found = {leader.pid: leader}
    try:
        for child in leader.children(recursive=True):
            found[child.pid] = child
    except psutil.Error:
        pass
    for member in _group_members(pid):
        found.setdefault(member.pid, member)
    return _live(found.values())


async def reap_orphan_group(
    pid: int,
    create_time: float | None,
    *,
    timeout: float,
    kill_timeout: float = KILL_TIMEOUT,
) -> bool:
    """Stop the process group a previous (crashed) runtime started as ``pid``, if it remains.

    The group is identified by its leader's pid *and* creation time: a pid since reused by an
    unrelated process is left alone, and so is a pid recorded without a creation time.
    Members get SIGTERM, ``timeout`` seconds, then SIGKILL.

    Returns:
        True if processes of that group were found and stopped; False if none remained.

    Raises:
        ProcessBrokenError: they could not be inspected or signalled, or survived SIGKILL.
    """
    if create_time is None:
        return False
    members = await trio.to_thread.run_sync(_orphans, pid, create_time)
    if not members:
        return False
    log.warning(
        "stopping %d process(es) of group %d left behind by a previous runtime", len(members), pid
    )
    for sig, wait in ((signal.SIGTERM, timeout), (signal.SIGKILL, kill_timeout)):
        for proc in members:
            try:
                proc.send_signal(sig)
            except psutil.NoSuchProcess:
                continue
            except psutil.Error as exc:
                raise ProcessBrokenError(f"cannot signal pid {proc.pid}: {exc}") from exc
        with trio.move_on_after(wait):
            while members:
                await trio.sleep(POLL_INTERVAL)
                members = await trio.to_thread.run_sync(_live, members)
            return True
    raise ProcessBrokenError(
        f"process group {pid} left by a previous runtime survived SIGKILL for {kill_timeout:g}s"
    )
