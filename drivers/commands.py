"""Commands as the process runner takes them: :func:`validate_command` checks an argv list
against this host before anything is forked, :func:`describe_exit` says how a process ended."""

from __future__ import annotations

import os
import shutil
import signal
from collections.abc import Mapping, Sequence

from .errors import BadWorkingDirectoryError, ExecutableNotFoundError, ProcessConfigError

__all__ = ["describe_exit", "validate_command"]


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
