"""The ``script`` task action: run a program on the host, without a shell (admin only).

Parameters: ``argv`` (never a shell command line), ``cwd``, ``env`` merged over a minimal
environment (``PATH``, ``HOME``, locale, ...: :data:`SAFE_ENV_NAMES`; none of the runtime's own
variables, which may hold its secrets), ``expectedExitCode`` (0), ``stopTimeout``. The process
leads its own process group and carries the run's owner mark; stdout and stderr lines go to the
run's log (stderr lines prefixed ``stderr: ``). The run owns the whole group, and what left it:
once the process exits, or the run is cancelled (timeout, cancel), they get SIGTERM,
``stopTimeout`` seconds, then SIGKILL, so nothing it started outlives the run (keep a daemon
alive with an agent, not a task). ``env`` values whose
names look secret are masked on the wire.
"""

from __future__ import annotations

import logging
import os
import shlex
from collections.abc import Mapping
from typing import Any

import trio
from pydantic import BaseModel, Field

from actors.kit.processes import Argv, Environment, check_command
from drivers.commands import describe_exit
from drivers.errors import ProcessBrokenError, ProcessConfigError
from drivers.process import OSProcess

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

    argv: Argv = Field(
        description="The executable and its arguments, as a list; never a shell command line.",
        examples=[["python3", "backup.py", "--full"]],
    )
    cwd: str | None = Field(None, max_length=4096, description="Working directory; the runtime's when absent.")
    env: Environment = Field(
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
        check_command(params.argv, cwd=params.cwd, env=script_env(params), field="parameters", what="the script")

    async def run(self, params: BaseModel, ctx: ActionContext) -> ActionOutcome:
        """Run the script to its end; its lines go to ``ctx.log``.

        Returns:
            ok when it exited with ``expectedExitCode``; ``exit_code`` is negative when a
            signal killed it.
        """
        assert isinstance(params, ScriptParameters)
        try:
            proc = await OSProcess.spawn(params.argv, cwd=params.cwd, env=script_env(params), owner=f"task-run/{ctx.run_id}")
        except (ProcessConfigError, ProcessBrokenError) as exc:
            ctx.log(f"could not start: {exc}")
            return ActionOutcome(ok=False, error=f"could not start the script: {exc}")
        ctx.started_process(proc.pid, proc.create_time)
        ctx.log(f"started pid {proc.pid}: {shlex.join(params.argv)}")
        try:
            code = await proc.watch(lambda stream, line: ctx.log(line if stream == "stdout" else f"stderr: {line}"), drain=_DRAIN_TIMEOUT)
            # Then stop what it left in its group (or outside it) and close the pipes.
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


async def _stop_group(proc: OSProcess, timeout: float, ctx: ActionContext, *, stopping: bool = False) -> None:
    """SIGTERM the script's group, ``timeout`` seconds, SIGKILL; nothing of it is left after."""
    try:
        if await proc.lingering():
            if stopping:
                ctx.log(f"stopping pid {proc.pid} and its process group (SIGTERM, {timeout:g}s, SIGKILL)")
            else:
                ctx.log(f"stopping what it left running in its process group (SIGTERM, {timeout:g}s, SIGKILL)")
            await proc.stop(timeout)
    except ProcessBrokenError as exc:
        ctx.log(f"could not stop the process group {proc.pgid}: {exc}")
        log.error("task %s run %s: %s", ctx.task_id, ctx.run_id, exc)
