"""The ``script`` task action: run a program on the host, without a shell (admin only).

Parameters: ``argv`` (never a shell command line), ``cwd``, ``env`` merged over a minimal
environment (``PATH``, ``HOME``, locale, ...: :data:`SAFE_ENV_NAMES`; none of the runtime's own
variables, which may hold its secrets), ``expectedExitCode`` (0), ``stopTimeout``. The process
leads its own process group; stdout and stderr lines go to the run's log (stderr lines prefixed
``stderr: ``). The run owns the whole group: once the process exits, or the run is cancelled
(timeout, cancel), the group gets SIGTERM, ``stopTimeout`` seconds, then SIGKILL, so nothing it
started outlives the run (keep a daemon alive with an agent, not a task). ``env`` values whose
names look secret are masked on the wire.
"""

from __future__ import annotations

import logging
import os
import re
import shlex
from collections.abc import Callable, Mapping
from typing import Annotated, Any

import trio
from pydantic import BaseModel, Field, field_validator

from drivers import (
    BadWorkingDirectoryError,
    LineReader,
    OSProcess,
    ProcessBrokenError,
    ProcessConfigError,
    describe_exit,
    validate_command,
)
from vareon_runtime.errors import InvalidRequestError

from .action import ActionContext, ActionOutcome, ActionParameters, BaseAction
from .masking import mask_map, unmask_map

__all__ = ["SAFE_ENV_NAMES", "ScriptAction", "ScriptParameters", "script_env"]

log = logging.getLogger("vareon.myntrix.scheduler.actions.script")

SAFE_ENV_NAMES = frozenset(
    {
        "PATH", "HOME", "USER", "LOGNAME", "SHELL", "LANG", "LANGUAGE", "TZ", "TMPDIR",
        # Termux: programs find their prefix through these, and shebangs of scripts work only
        # with termux-exec preloaded.
        "PREFIX", "ANDROID_ROOT", "ANDROID_DATA", "LD_PRELOAD",
    }
)
"""The runtime's variables a script inherits (plus ``LC_*``); everything else, its secrets
included, stays out unless the task's ``env`` sets it."""

_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_DEFAULT_STOP_TIMEOUT = 5.0
_DRAIN_TIMEOUT = 0.5  # seconds an exited script's pipes get to deliver their last lines


def script_env(params: ScriptParameters, environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment of a script: the safe part of the runtime's (``environ``, ``os.environ``
    when None), ``PYTHONUNBUFFERED=1`` so Python output is not held back in a pipe, then the
    task's ``env``."""
    source = os.environ if environ is None else environ
    env = {name: value for name, value in source.items() if name in SAFE_ENV_NAMES or name.startswith("LC_")}
    env.setdefault("PATH", os.defpath)
    env["PYTHONUNBUFFERED"] = "1"
    env.update(params.env)
    return env


class ScriptParameters(ActionParameters):
    """``script``: run a program without a shell."""

    argv: list[Annotated[str, Field(max_length=4096)]] = Field(
        min_length=1,
        max_length=1024,
        description="The executable and its arguments, as a list; never a shell command line.",
        examples=[["python3", "backup.py", "--full"]],
    )
    cwd: str | None = Field(None, max_length=4096, description="Working directory; the runtime's when absent.")
    env: dict[str, Annotated[str, Field(max_length=32768)]] = Field(
        default_factory=dict,
        repr=False,  # values may be secrets
        description=(
            "Variables set for the script, over a minimal environment (PATH, HOME, USER, LANG, LC_*, TZ,"
            " TMPDIR); none of the runtime's other variables are passed."
        ),
    )
    expected_exit_code: int = Field(0, ge=0, le=255, description="The exit code that means success.")
    stop_timeout: float = Field(
        _DEFAULT_STOP_TIMEOUT, ge=0, le=300, description="Seconds between SIGTERM and SIGKILL when the run is stopped."
    )

    @field_validator("argv", mode="before")
    @classmethod
    def _argv_list(cls, value: Any) -> Any:
        if isinstance(value, str):
            raise ValueError(
                f"must be a list of the executable and its arguments such as {value.split() or ['python3']!r},"
                f" not the shell command line {value!r} (tasks never run a shell)"
            )
        return value

    @field_validator("argv")
    @classmethod
    def _executable_named(cls, value: list[str]) -> list[str]:
        if not value[0].strip():
            raise ValueError("the first item, the executable, must not be empty")
        if any("\x00" in item for item in value):
            raise ValueError("must not contain NUL characters")
        return value

    @field_validator("env")
    @classmethod
    def _env_names(cls, value: dict[str, str]) -> dict[str, str]:
        for name, item in value.items():
            if not _ENV_NAME.match(name):
                raise ValueError(f"{name!r} is not a valid environment variable name (letters, digits, _)")
            if name.upper().startswith("VAREON_"):
                raise ValueError(f"{name!r}: VAREON_* variables are the runtime's own, not a task's")
            if "\x00" in item:
                raise ValueError(f"the value of {name!r} must not contain NUL characters")
        return value

    def masked(self) -> dict[str, Any]:
        data = super().masked()
        data["env"] = mask_map(self.env)
        return data

    def unmasked(self, previous: BaseModel) -> ScriptParameters:
        assert isinstance(previous, ScriptParameters)
        return self.model_copy(update={"env": unmask_map(self.env, previous.env, fold=False)})


class ScriptAction(BaseAction):
    """Run a program on the host (see the module docstring); admin only."""

    kind = "script"
    parameters = ScriptParameters
    admin_only = True

    def check(self, params: BaseModel) -> None:
        """The executable exists and is executable (on the script's PATH), ``cwd`` is a directory.

        Raises:
            InvalidRequestError: with the field (``parameters.argv`` or ``parameters.cwd``) and why.
        """
        assert isinstance(params, ScriptParameters)
        try:
            validate_command(params.argv, cwd=params.cwd, env=script_env(params))
        except ProcessConfigError as exc:
            field = "parameters.cwd" if isinstance(exc, BadWorkingDirectoryError) else "parameters.argv"
            hint = ""
            if field == "parameters.argv" and len(params.argv) == 1 and " " in params.argv[0]:
                hint = f" (argv is a list: did you mean {params.argv[0].split()!r}?)"
            raise InvalidRequestError(
                f"the script cannot run: {exc}{hint}", details={"field": field, "reason": str(exc)}
            ) from exc

    async def run(self, params: BaseModel, ctx: ActionContext) -> ActionOutcome:
        """Run the script to its end; its lines go to ``ctx.log``.

        Returns:
            ok when it exited with ``expectedExitCode``; ``exit_code`` is negative when a
            signal killed it.
        """
        assert isinstance(params, ScriptParameters)
        try:
            proc = await OSProcess.spawn(params.argv, cwd=params.cwd, env=script_env(params))
        except (ProcessConfigError, ProcessBrokenError) as exc:
            ctx.log(f"could not start: {exc}")
            return ActionOutcome(ok=False, error=f"could not start the script: {exc}")
        ctx.started_process(proc.pid, proc.create_time)
        ctx.log(f"started pid {proc.pid}: {shlex.join(params.argv)}")
        try:
            async with trio.open_nursery() as nursery:
                drained = [trio.Event(), trio.Event()]
                nursery.start_soon(_pipe_to_log, proc.stdout, ctx.log, "", drained[0])
                nursery.start_soon(_pipe_to_log, proc.stderr, ctx.log, "stderr: ", drained[1])
                code = await proc.wait()
                # Something it left in the background may hold the pipes open: give the last
                # lines a moment, then stop the group and close the pipes (the readers end).
                with trio.move_on_after(_DRAIN_TIMEOUT):
                    for event in drained:
                        await event.wait()
                await _stop_group(proc, params.stop_timeout, ctx)
                await proc.aclose()
        except BaseException:
            # Cancelled (timeout, cancel, runtime stopping) or failing: nothing it started may
            # outlive the run.
            with trio.CancelScope(shield=True):
                await _stop_group(proc, params.stop_timeout, ctx, stopping=True)
                await proc.aclose()
            raise
        ctx.log(describe_exit(code))
        if code == params.expected_exit_code:
            return ActionOutcome(ok=True, exit_code=code)
        expected = f", expected {params.expected_exit_code}"
        return ActionOutcome(ok=False, exit_code=code, error=f"the script {describe_exit(code)}{expected}")


async def _pipe_to_log(reader: LineReader, write: Callable[[str], None], prefix: str, done: trio.Event) -> None:
    try:
        async for line in reader:
            write(prefix + line)
    finally:
        done.set()


async def _stop_group(proc: OSProcess, timeout: float, ctx: ActionContext, *, stopping: bool = False) -> None:
    """SIGTERM the script's group, ``timeout`` seconds, SIGKILL; nothing of it is left after."""
    try:
        if proc.returncode is None or proc.signal_group(0):
            if stopping:
                ctx.log(f"stopping pid {proc.pid} and its process group (SIGTERM, {timeout:g}s, SIGKILL)")
            else:
                ctx.log(f"stopping what it left running in its process group (SIGTERM, {timeout:g}s, SIGKILL)")
            await proc.stop(timeout)
    except ProcessBrokenError as exc:
        ctx.log(f"could not stop the process group {proc.pgid}: {exc}")
        log.error("task %s run %s: %s", ctx.task_id, ctx.run_id, exc)
