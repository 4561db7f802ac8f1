"""OS processes in their own session and process group, stopped as a whole: the one process
runner of the runtime (agents, script tasks; workflow steps, training jobs and the terminal to
come).

:meth:`OSProcess.spawn` runs an argv list (never a shell string) with ``start_new_session=True``:
the child leads a new session and process group (``pgid == pid``), so one ``killpg`` reaches it
and every descendant that stayed in the group, and a terminal's SIGHUP or the runtime's own
SIGINT never reaches it. stdin is ``/dev/null``; stdout and stderr are pipes read line by line
(:class:`~drivers.lines.LineReader`; :meth:`OSProcess.watch` hands each line to a callback).
Given an ``owner`` (``agent/<uuid>``), the child's environment carries it
(:data:`~drivers.identity.OWNER_VARIABLE`), and so does every descendant's.

Exit is noticed without polling: :meth:`OSProcess.wait` is trio's ``Process.wait``, which on
Linux waits for the process's pidfd to become readable. Processes that are not our children (the
grandchildren, or a group left behind by a crashed runtime) have no pidfd we could wait on; only
while stopping them are they checked every ``POLL_INTERVAL``.

:meth:`OSProcess.stop` sends SIGTERM to the group, to the descendants that left it, and to the
processes carrying the owner's mark (a daemon that left with ``setsid`` and lost its parent: our
child, as the runtime is a subreaper, see :mod:`drivers.subreaper`), waits the stop timeout,
then sends SIGKILL, and returns only once the leader is reaped and none of them is left.
:func:`~drivers.orphans.reap_orphan_group` does the same for what a previous runtime left.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
from collections.abc import Callable, Iterable, Mapping, Sequence

import psutil
import trio

from .commands import describe_exit, validate_command
from .errors import ProcessBrokenError
from .identity import OWNER_VARIABLE, create_time
from .lines import MAX_LINE, LineReader
from .orphans import KILL_TIMEOUT, POLL_INTERVAL, group_members, live, marked, signal_all, union
from .subreaper import adopt, adopted_children, disown, enable_subreaper, own, reap_adopted, spawning

__all__ = ["OSProcess"]

log = logging.getLogger("vareon.drivers.process")

LineSink = Callable[[str, str], None]
"""Takes ``(stream, line)``: ``stream`` is ``stdout`` or ``stderr``."""


class OSProcess:
    """One child process leading its own session and process group.

    Create it with :meth:`spawn`. ``pid`` is also the group id (``pgid``); ``create_time``
    (seconds since the epoch, from psutil) tells this process apart from a later one that
    reuses its pid, and is None when the system would not say.
    """

    def __init__(self, process: trio.Process, argv: Sequence[str], max_line: int, owner: str | None = None) -> None:
        self._process = process
        self.argv = list(argv)
        self.owner = owner
        self.pid: int = process.pid
        self.pgid: int = process.pid  # start_new_session: the child leads its own group
        self.create_time: float | None = create_time(process.pid)
        own(process.pid)
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
        owner: str | None = None,
    ) -> OSProcess:
        """Start ``argv`` in a new session and process group.

        Args:
            argv: the executable and its arguments (never a shell string).
            cwd: working directory; the runtime's when None.
            env: the whole environment of the child; the runtime's when None.
            max_line: longest output line in bytes before it is split.
            owner: who started it (``agent/<uuid>``), marked in its environment so that what it
                leaves behind, even outside its group, is found and stopped with it.

        Raises:
            ExecutableNotFoundError, BadWorkingDirectoryError, ProcessConfigError: the command
                cannot run as given (checked before forking, with the reason).
            ProcessBrokenError: the operating system refused to start it.
        """
        argv = list(argv) if not isinstance(argv, (str, bytes)) else argv
        validate_command(argv, cwd=cwd, env=env)
        enable_subreaper()
        reap_adopted()
        child_env = dict(os.environ if env is None else env)
        if owner is not None:
            child_env[OWNER_VARIABLE] = owner
        elif env is None:
            child_env.pop(OWNER_VARIABLE, None)  # the runtime's own mark (a test runtime) is not the child's
        with spawning():  # until the child is known as trio's, nothing is reaped as adopted
            try:
                process = await trio.lowlevel.open_process(
                    argv,
                    cwd=cwd,
                    env=child_env,
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE,
                    start_new_session=True,
                )
            except OSError as exc:
                # The file system may have changed since the check: name the reason if it is ours.
                validate_command(argv, cwd=cwd, env=env)
                raise ProcessBrokenError(f"could not start {argv[0]!r}: {exc}") from exc
            return cls(process, argv, max_line, owner)

    @property
    def returncode(self) -> int | None:
        """The exit status once the process has been reaped (negative: killed by that signal)."""
        code = self._process.returncode  # may reap it: trio polls
        if code is not None:
            disown(self.pid)
        return code

    async def wait(self) -> int:
        """Wait until the process exits (pidfd on Linux, no polling) and return its exit status."""
        code = await self._process.wait()
        disown(self.pid)
        return code

    async def watch(self, on_line: LineSink, *, drain: float) -> int:
        """Hand each output line to ``on_line(stream, line)`` until the process exits, then give
        the pipes ``drain`` seconds to deliver their last lines (something the process left in
        the background may hold them open); return the exit status."""
        async with trio.open_nursery() as nursery:
            drained = (trio.Event(), trio.Event())
            nursery.start_soon(_pump, self.stdout, "stdout", on_line, drained[0])
            nursery.start_soon(_pump, self.stderr, "stderr", on_line, drained[1])
            code = await self.wait()
            with trio.move_on_after(drain):
                for event in drained:
                    await event.wait()
            nursery.cancel_scope.cancel()
        return code

    def signal_group(self, sig: int) -> bool:
        """Send ``sig`` to every process of the group; False when the group is gone.

        Raises:
            ProcessBrokenError: the signal was refused (permission denied).
        """
        if self.returncode is not None and psutil.pid_exists(self.pgid):
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
        if not await self.lingering():
            code = self.returncode
            assert code is not None
            return code  # exited, reaped, nothing left behind: the common crash path
        others: list[psutil.Process] = []
        try:
            others = await trio.to_thread.run_sync(self._others, self.returncode is None)
            self._signal_all(signal.SIGTERM, others)
            with trio.move_on_after(timeout):
                await self._wait_all(others)
                return self._stopped()
            log.info(
                "pid %d (%s) outlived SIGTERM by %gs; sending SIGKILL to its group",
                self.pid, self.argv[0], timeout,
            )
            others = union(others, await trio.to_thread.run_sync(self._others, self.returncode is None))
            self._signal_all(signal.SIGKILL, others)
            with trio.move_on_after(kill_timeout):
                await self._wait_all(others)
                return self._stopped()
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

    def _stopped(self) -> int:
        code = self.returncode
        assert code is not None, "the leader is reaped before a stop returns"
        reap_adopted()  # the marked processes we killed that were our children now
        return code

    async def lingering(self) -> bool:
        """Whether anything of it still runs: the leader unreaped, a member of its group, or a
        process that carries its owner mark."""
        if self.returncode is None or self._group_answers():
            return True
        if self.owner is None:
            return False
        return bool(await trio.to_thread.run_sync(self._marked))

    def _marked(self) -> list[psutil.Process]:
        """The live processes with this owner's mark that left the group (thread): among our
        children when we are a subreaper, else among all processes."""
        assert self.owner is not None
        if not enable_subreaper():
            return [proc for proc in marked(self.owner) if proc.pid != self.pid]
        found: dict[int, psutil.Process] = {}
        for child in adopted_children(self.owner):
            found[child.pid] = child
            try:
                found.update((grandchild.pid, grandchild) for grandchild in child.children(recursive=True))
            except psutil.Error:
                pass  # it exited meanwhile
        return live(found.values())

    def _group_answers(self) -> bool:
        """Whether the group may still have members (zombies included); False means it is gone."""
        if self.returncode is not None and psutil.pid_exists(self.pgid):
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
        if self.owner is not None:
            found.update((proc.pid, proc) for proc in self._marked())
        if leader_alive:
            try:
                for child in psutil.Process(self.pid).children(recursive=True):
                    found[child.pid] = child
            except psutil.Error:
                pass  # it exited meanwhile; its group is still scanned below
        if leader_alive or not psutil.pid_exists(self.pgid):
            for member in group_members(self.pgid, exclude=self.pid):
                found.setdefault(member.pid, member)
        # Those that are (or, their parent dying first, will be) our zombies are to be reaped.
        adopt(found.values())
        return live(found.values())

    def _signal_all(self, sig: int, others: Iterable[psutil.Process], *, quiet: bool = False) -> None:
        try:
            self.signal_group(sig)
        except ProcessBrokenError:
            if not quiet:
                raise
        # One that may not be signalled (a setuid program) is waited for, and the stop fails
        # once the kill timeout has passed.
        signal_all(others, sig, quiet=True)

    def _remaining(self, others: list[psutil.Process]) -> list[psutil.Process]:
        """Of ``others`` and the group, what still runs, once the leader is reaped (thread)."""
        return union(live(others), self._others(leader_alive=False))

    async def _wait_all(self, others: list[psutil.Process]) -> None:
        await self.wait()
        while True:
            if not others and not self._group_answers() and self.owner is None:
                return  # no syscall-heavy scan when the group is plainly gone
            others = await trio.to_thread.run_sync(self._remaining, others)
            if not others:
                return
            await trio.sleep(POLL_INTERVAL)


async def _pump(reader: LineReader, stream: str, on_line: LineSink, drained: trio.Event) -> None:
    try:
        async for text in reader:
            on_line(stream, text)
    finally:
        drained.set()
