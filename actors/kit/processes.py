"""What a domain checks before it lets a user define a program the host will run (an agent, a
script task; workflow steps and training jobs to come), in the words of its request: the shape
of its ``argv`` and ``env`` (:data:`Argv`, :data:`Environment`, one spelling for every domain),
then whether it can run here (:func:`check_command`)."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Annotated, Any

from pydantic import AfterValidator, BeforeValidator, Field

from drivers.commands import validate_command
from drivers.errors import BadWorkingDirectoryError, ProcessConfigError
from vareon_runtime.errors import InvalidRequestError

__all__ = ["Argv", "Environment", "check_command"]

_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def _not_a_shell_line(value: Any) -> Any:
    if isinstance(value, str):
        raise ValueError(
            f"must be a list of the executable and its arguments such as {value.split() or ['python3', 'app.py']!r},"
            f" not the shell command line {value!r} (no shell runs it)"
        )
    return value


def _executable_named(value: list[str]) -> list[str]:
    if not value[0].strip():
        raise ValueError("the first item, the executable, must not be empty")
    if any("\x00" in item for item in value):
        raise ValueError("must not contain NUL characters")
    return value


def _variables(value: dict[str, str]) -> dict[str, str]:
    for name, item in value.items():
        if not _ENV_NAME.match(name):
            raise ValueError(f"{name!r} is not a valid environment variable name (letters, digits, _)")
        if name.upper().startswith("VAREON_"):
            raise ValueError(f"{name!r}: VAREON_* variables are the runtime's own, not a program's")
        if "\x00" in item:
            raise ValueError(f"the value of {name!r} must not contain NUL characters")
    return value


Argv = Annotated[
    list[Annotated[str, Field(max_length=4096)]],
    BeforeValidator(_not_a_shell_line),
    Field(min_length=1, max_length=1024),
    AfterValidator(_executable_named),
]
"""A program as a list: the executable and its arguments, never a shell command line."""

Environment = Annotated[
    dict[Annotated[str, Field(max_length=256)], Annotated[str, Field(max_length=32768)]], AfterValidator(_variables)
]
"""Variables set for a program: names of letters, digits and ``_``, none of the runtime's own
``VAREON_*``."""


def check_command(argv: Sequence[str], *, cwd: str | None, env: Mapping[str, str], field: str, what: str) -> None:
    """Refuse a command that cannot run on this host, saying why and which field to fix.

    Args:
        argv, cwd, env: the command as the process runner will start it.
        field: where the command sits in the request (``configuration``, ``parameters``): the
            error names ``<field>.argv`` or ``<field>.cwd``.
        what: what is refused, for the message (``the configuration``, ``the script``).

    Raises:
        InvalidRequestError: no such executable, not executable, or a bad working directory;
            ``details`` holds the field and the reason.
    """
    try:
        validate_command(argv, cwd=cwd, env=env)
    except ProcessConfigError as exc:
        where = f"{field}.cwd" if isinstance(exc, BadWorkingDirectoryError) else f"{field}.argv"
        hint = ""
        if where.endswith(".argv") and len(argv) == 1 and " " in argv[0]:
            hint = f" (argv is a list: did you mean {argv[0].split()!r}?)"
        raise InvalidRequestError(f"{what} cannot run: {exc}{hint}", details={"field": where, "reason": str(exc)}) from exc
