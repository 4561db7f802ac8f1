"""Task actions: what a scheduled task does when it fires, in a registry keyed by kind.

A task names its action's ``kind`` and carries the kind's ``parameters``. :data:`ACTIONS` holds
the kinds this runtime knows; a kind is an :class:`Action`: a pydantic model for its parameters
(``extra="forbid"``, camelCase aliases and snake_case names both accepted), whether only an admin
may define it, a :meth:`~Action.check` of the parameters against this host (no network), and
:meth:`~Action.run`, which does the work once and says how it went in an :class:`ActionOutcome`.

The kinds:

- ``script`` (admin only: it executes on the host): ``argv`` without a shell, ``cwd``, ``env``
  merged over a minimal environment (``PATH``, ``HOME``, locale, ...; none of the runtime's own
  variables, which may hold its secrets), ``expectedExitCode`` (0). The process leads its own
  process group; stdout and stderr lines go to the run's log (stderr lines prefixed
  ``stderr: ``). The run owns the whole group: once the process exits, or the run is cancelled
  (timeout, cancel), the group gets SIGTERM, ``stopTimeout`` seconds, then SIGKILL, so nothing it
  started outlives the run (keep a daemon alive with an agent, not a task).
- ``api``: one HTTP request with httpx (``method``, ``url`` http/https only, ``headers``,
  ``body``: a string is sent as text, anything else as JSON), succeeding when the status is
  ``expectedStatus`` (one code or a list; any 2xx when absent). The status and the first
  :data:`BODY_LOG_LIMIT` bytes of the response body go to the log. A connection error or a
  timeout is a failed outcome with the reason. Redirects are not followed (a 3xx is the answer:
  a task should name the URL it means, and a redirect must not carry its headers elsewhere).
- ``agent``: ``start``, ``stop`` or ``restart`` of an agent through its actor
  (:func:`actors.myntrix.agents_of`). Like ``supervisorctl``, which prints ``ERROR (already
  started)`` but exits 0, starting a running agent or stopping a stopped one succeeds, saying so
  in the log: the agent is in the state the task asked for.

Secrets: header values (``Authorization``, cookies, API keys), ``env`` values and URL parts
(password, query values) whose names look secret are never written to a log, and
:meth:`ActionParameters.masked` replaces them with :data:`MASK` for the wire. A client that sends
a task back unchanged sends :data:`MASK`; :meth:`ActionRegistry.validate` given the ``previous``
parameters puts the stored secret back in its place.

``workflow`` and ``pipeline`` register here when their modules exist
(``ACTIONS.register("workflow", ...)``).
"""

from __future__ import annotations

import logging
import os
import re
import shlex
import urllib.parse
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Annotated, Any, Literal, Protocol, runtime_checkable

import trio
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from pydantic.alias_generators import to_camel

from drivers import (
    BadWorkingDirectoryError,
    LineReader,
    OSProcess,
    ProcessBrokenError,
    ProcessConfigError,
    describe_exit,
    validate_command,
)
from vareon_runtime.bus import EventBus
from vareon_runtime.errors import (
    ConflictError,
    InvalidRequestError,
    NotRegisteredError,
    ServiceError,
    VareonError,
)
from vareon_runtime.registry import Registry

from ..component import agents_of
from ..schemas import AgentStatus

__all__ = [
    "ACTIONS",
    "BODY_LOG_LIMIT",
    "MASK",
    "SAFE_ENV_NAMES",
    "Action",
    "ActionContext",
    "ActionOutcome",
    "ActionParameters",
    "ActionRegistry",
    "AgentAction",
    "AgentParameters",
    "ApiAction",
    "ApiParameters",
    "ScriptAction",
    "ScriptParameters",
    "UnknownActionError",
    "looks_secret",
    "script_env",
]

log = logging.getLogger("vareon.myntrix.scheduler.actions")

MASK = "********"
"""What a secret value is replaced with on the wire."""

BODY_LOG_LIMIT = 4096
"""Bytes of an ``api`` response body copied to the run's log."""

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
_HEADER_NAME = re.compile(r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$")
_SECRET_WORDS = ("auth", "token", "secret", "password", "passwd", "pwd", "key", "cookie", "session", "signature", "credential")
_DEFAULT_STOP_TIMEOUT = 5.0
_DRAIN_TIMEOUT = 0.5  # seconds an exited script's pipes get to deliver their last lines


def looks_secret(name: str) -> bool:
    """Whether a header, variable or query parameter named ``name`` probably holds a secret."""
    lowered = name.lower()
    return any(word in lowered for word in _SECRET_WORDS)


# --------------------------------------------------------------------------- the contract


@dataclass(frozen=True)
class ActionContext:
    """What one run of an action may use; built by the run actor.

    Attributes:
        task_id, run_id: the task and this run.
        registry, bus: the runtime's (the ``agent`` action finds the agents face through it).
        log: appends one line to the run's captured log (bounded, never blocks).
    """

    task_id: str
    run_id: str
    registry: Registry
    bus: EventBus
    log: Callable[[str], None]


@dataclass(frozen=True)
class ActionOutcome:
    """How one run of an action went: ``ok``, and what the run record shows."""

    ok: bool
    exit_code: int | None = None
    http_status: int | None = None
    error: str | None = None


@runtime_checkable
class Action(Protocol):
    """One kind of task action (see the module docstring)."""

    kind: str
    parameters: type[BaseModel]
    admin_only: bool

    def check(self, params: BaseModel) -> None:
        """Check valid parameters against this host without network I/O.

        Raises:
            InvalidRequestError: they cannot work here; ``details`` names the field and why.
        """
        ...

    async def run(self, params: BaseModel, ctx: ActionContext) -> ActionOutcome:
        """Do the work once. Cancelled (timeout, cancel), it cleans up before it returns."""
        ...


class ActionParameters(BaseModel):
    """Base of the kinds' parameter models: camelCase aliases, both spellings in, nothing extra."""

    model_config = ConfigDict(
        alias_generator=to_camel, validate_by_name=True, validate_by_alias=True, extra="forbid", frozen=True
    )

    def masked(self) -> dict[str, Any]:
        """The parameters for the wire (camelCase, JSON types), secrets replaced by :data:`MASK`."""
        return self.model_dump(mode="json", by_alias=True)

    def unmasked(self, previous: BaseModel) -> ActionParameters:
        """These parameters with each :data:`MASK` that stands where ``previous`` had a secret
        replaced by that secret (a client sent back what it was shown)."""
        return self


class UnknownActionError(InvalidRequestError):
    """No action has the kind; the message names the known ones (422)."""

    def __init__(self, kind: str, known: list[str]) -> None:
        super().__init__(
            f"no task action has the kind {kind!r}; known: {', '.join(known) or 'none'}",
            details={"field": "action", "kind": kind, "known": known},
        )
        self.kind = kind
        self.known = known


class ActionRegistry:
    """Task actions by kind. Registering a kind twice is an error."""

    def __init__(self) -> None:
        self._actions: dict[str, Action] = {}

    def register(self, kind: str, action: Action) -> None:
        """Add ``action`` under ``kind``.

        Raises:
            ValueError: ``kind`` is taken, or is not the action's own kind.
        """
        if kind in self._actions:
            raise ValueError(f"a task action of kind {kind!r} is already registered ({self._actions[kind]!r})")
        if getattr(action, "kind", kind) != kind:
            raise ValueError(f"action {action!r} has the kind {action.kind!r}; register it under that name, not {kind!r}")
        self._actions[kind] = action

    def kinds(self) -> list[str]:
        """The known kinds, sorted."""
        return sorted(self._actions)

    def __contains__(self, kind: object) -> bool:
        return kind in self._actions

    def action(self, kind: str) -> Action:
        """The action of ``kind``.

        Raises:
            UnknownActionError: no such kind (422, naming the known ones).
        """
        try:
            return self._actions[kind]
        except (KeyError, TypeError):
            raise UnknownActionError(str(kind), self.kinds()) from None

    def validate(
        self,
        kind: str,
        parameters: Mapping[str, Any] | BaseModel | None,
        *,
        check: bool = True,
        previous: BaseModel | None = None,
    ) -> BaseModel:
        """Parse ``parameters`` for ``kind`` and, with ``check``, check them against this host.

        Args:
            kind: the action's kind.
            parameters: the task's parameters as received (either spelling of each name).
            check: also run :meth:`Action.check` (a task being created or changed); False to
                load a stored task whose executable may have gone meanwhile (its run fails then).
            previous: the task's current parameters, when changing it: a :data:`MASK` sent back
                keeps the stored secret.

        Raises:
            UnknownActionError: no such kind.
            InvalidRequestError: the parameters are invalid (pydantic's errors in ``details``,
                each ``loc`` starting with ``parameters``, inputs left out as they may be
                secrets), or cannot work on this host.
        """
        action = self.action(kind)
        if isinstance(parameters, BaseModel):
            parameters = parameters.model_dump(by_alias=True)
        try:
            params = action.parameters.model_validate(parameters if parameters is not None else {})
        except ValidationError as exc:
            errors = exc.errors(include_url=False, include_context=False, include_input=False)
            for error in errors:
                error["loc"] = ("parameters", *error["loc"])
            first = errors[0]
            where = ".".join(str(part) for part in first["loc"])
            raise InvalidRequestError(
                f"invalid {kind} parameters: {where}: {first['msg']}"
                + (f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""),
                details=errors,
            ) from exc
        if previous is not None and isinstance(params, ActionParameters) and type(previous) is type(params):
            params = params.unmasked(previous)
        if check:
            action.check(params)
        return params


def _refuse(field: str, reason: str) -> InvalidRequestError:
    return InvalidRequestError(f"{field}: {reason}", details={"field": field, "reason": reason})


def _mask_url(url: str) -> str:
    """``url`` with its password and the values of secret-looking query parameters masked."""
    parts = urllib.parse.urlsplit(url)
    netloc = parts.netloc
    if parts.password is not None:
        userinfo, _, hostport = netloc.rpartition("@")
        netloc = f"{userinfo.partition(':')[0]}:{MASK}@{hostport}"
    query = parts.query
    if query:
        pairs = urllib.parse.parse_qsl(query, keep_blank_values=True)
        if any(looks_secret(name) for name, _ in pairs):
            query = urllib.parse.urlencode(
                [(name, MASK if looks_secret(name) else value) for name, value in pairs], safe="*"
            )
    return urllib.parse.urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


def _unmask_url(url: str, previous: str) -> str:
    if MASK not in url or _mask_url(previous) != url:
        return url  # changed by the client (or never masked): take it as sent
    return previous


def _unmask_map(new: Mapping[str, str], old: Mapping[str, str], *, fold: bool) -> dict[str, str]:
    key = (lambda name: name.lower()) if fold else (lambda name: name)
    stored = {key(name): value for name, value in old.items()}
    return {
        name: stored[key(name)] if value == MASK and looks_secret(name) and key(name) in stored else value
        for name, value in new.items()
    }


# --------------------------------------------------------------------------- script


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
        data["env"] = {name: MASK if looks_secret(name) else value for name, value in self.env.items()}
        return data

    def unmasked(self, previous: BaseModel) -> ScriptParameters:
        assert isinstance(previous, ScriptParameters)
        return self.model_copy(update={"env": _unmask_map(self.env, previous.env, fold=False)})


class ScriptAction:
    """Run a program on the host (see the module docstring); admin only."""

    kind = "script"
    parameters: type[BaseModel] = ScriptParameters
    admin_only = True

    def __repr__(self) -> str:
        return "<ScriptAction>"

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


# --------------------------------------------------------------------------- api


_JsonBody = dict[str, Any] | list[Any] | str | int | float | bool | None


class ApiParameters(ActionParameters):
    """``api``: one HTTP request."""

    method: Literal["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"] = Field(
        "GET", description="The HTTP method."
    )
    url: str = Field(max_length=8192, repr=False, description="An http:// or https:// URL.", examples=["https://example.com/hook"])
    headers: dict[Annotated[str, Field(max_length=256)], Annotated[str, Field(max_length=8192)]] = Field(
        default_factory=dict,
        repr=False,
        description="Request headers; values of secret-looking ones (Authorization, API keys) are masked when shown.",
    )
    body: _JsonBody = Field(None, description="A string is sent as text; anything else as JSON.")
    expected_status: int | list[int] | None = Field(
        None, description="The status (or statuses) that mean success; any 2xx when absent."
    )
    timeout: float = Field(30.0, gt=0, le=3600, description="Seconds the whole request may take.")

    @field_validator("method", mode="before")
    @classmethod
    def _upper(cls, value: Any) -> Any:
        return value.upper() if isinstance(value, str) else value

    @field_validator("url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        parts = urllib.parse.urlsplit(value)
        if parts.scheme.lower() not in ("http", "https"):
            raise ValueError(f"must be an http:// or https:// URL, not {_mask_url(value)!r}")
        try:
            host = parts.hostname
            parts.port  # noqa: B018 - a bad port raises here
        except ValueError as exc:
            raise ValueError(f"is not a valid URL ({exc}): {_mask_url(value)!r}") from None
        if not host:
            raise ValueError(f"must name a host, as in https://example.com/path, not {_mask_url(value)!r}")
        if any(ch.isspace() for ch in value):
            raise ValueError("must not contain spaces (encode them as %20)")
        return value

    @field_validator("headers")
    @classmethod
    def _header_names(cls, value: dict[str, str]) -> dict[str, str]:
        for name, item in value.items():
            if not _HEADER_NAME.match(name):
                raise ValueError(f"{name!r} is not a valid header name")
            if "\r" in item or "\n" in item:
                raise ValueError(f"the value of header {name!r} must not contain line breaks")
        return value

    @field_validator("expected_status")
    @classmethod
    def _statuses(cls, value: int | list[int] | None) -> int | list[int] | None:
        codes = [value] if isinstance(value, int) else (value or [])
        if isinstance(value, list) and not value:
            raise ValueError("must list at least one status, or be left out for any 2xx")
        for code in codes:
            if not 100 <= code <= 599:
                raise ValueError(f"{code} is not an HTTP status (100 to 599)")
        return value

    def expects(self, status: int) -> bool:
        """Whether ``status`` means success."""
        if self.expected_status is None:
            return 200 <= status <= 299
        if isinstance(self.expected_status, int):
            return status == self.expected_status
        return status in self.expected_status

    def expected_text(self) -> str:
        if self.expected_status is None:
            return "2xx"
        if isinstance(self.expected_status, int):
            return str(self.expected_status)
        return " or ".join(str(code) for code in self.expected_status)

    def masked(self) -> dict[str, Any]:
        data = super().masked()
        data["url"] = _mask_url(self.url)
        data["headers"] = {name: MASK if looks_secret(name) else value for name, value in self.headers.items()}
        return data

    def unmasked(self, previous: BaseModel) -> ApiParameters:
        assert isinstance(previous, ApiParameters)
        return self.model_copy(
            update={
                "url": _unmask_url(self.url, previous.url),
                "headers": _unmask_map(self.headers, previous.headers, fold=True),
            }
        )


class ApiAction:
    """Make one HTTP request (see the module docstring)."""

    kind = "api"
    parameters: type[BaseModel] = ApiParameters
    admin_only = False

    def __repr__(self) -> str:
        return "<ApiAction>"

    def check(self, params: BaseModel) -> None:
        """Nothing to check beyond the parameters' shape without network I/O."""
        assert isinstance(params, ApiParameters)

    async def run(self, params: BaseModel, ctx: ActionContext) -> ActionOutcome:
        """Send the request; ok when the status is the expected one.

        Returns:
            ``http_status`` when an answer came; a failed outcome with the reason when none did.
        """
        assert isinstance(params, ApiParameters)
        import httpx  # only runtimes with api tasks pay for importing it

        shown = f"{params.method} {_mask_url(params.url)}"
        request: dict[str, Any] = {"headers": params.headers}
        if isinstance(params.body, str):
            request["content"] = params.body.encode()
            if not any(name.lower() == "content-type" for name in params.headers):
                request["headers"] = {**params.headers, "Content-Type": "text/plain; charset=utf-8"}
        elif params.body is not None:
            request["json"] = params.body
        ctx.log(f"{shown}")
        started = trio.current_time()
        try:
            async with httpx.AsyncClient(timeout=params.timeout, follow_redirects=False) as client:
                with trio.fail_after(params.timeout):
                    async with client.stream(params.method, params.url, **request) as response:
                        head = await _read_head(response, BODY_LOG_LIMIT)
        except (trio.TooSlowError, httpx.TimeoutException):
            reason = f"{shown}: no answer within {params.timeout:g}s"
            ctx.log(reason)
            return ActionOutcome(ok=False, error=reason)
        except (httpx.HTTPError, OSError, ValueError) as exc:
            # ValueError: httpx refuses some inputs only when sending (an IDNA host, a header value).
            reason = f"{shown} failed: {type(exc).__name__}: {_mask_url(str(exc)) if str(exc) else 'no reason given'}"
            ctx.log(reason)
            return ActionOutcome(ok=False, error=reason)
        elapsed = (trio.current_time() - started) * 1000
        status = response.status_code
        ctx.log(f"answered {status} {response.reason_phrase} in {elapsed:.0f} ms")
        for line in head.splitlines():
            ctx.log(line)
        if params.expects(status):
            return ActionOutcome(ok=True, http_status=status)
        return ActionOutcome(
            ok=False, http_status=status, error=f"{shown} answered {status}, expected {params.expected_text()}"
        )


async def _read_head(response: Any, limit: int) -> str:
    """The first ``limit`` bytes of the body, decoded, with a note when there was more.

    The rest is read and dropped (memory stays bounded; the request's timeout bounds the time):
    leaving httpx's stream half read leaves its generators to the garbage collector.
    """
    head = bytearray()
    total = 0
    async for chunk in response.aiter_bytes():
        total += len(chunk)
        if len(head) < limit:
            head += chunk[: limit - len(head)]
    text = bytes(head).decode(response.encoding or "utf-8", "replace")
    if total > limit:
        text += f"\n... (body cut at {limit} of {total} bytes)"
    return text


# --------------------------------------------------------------------------- agent


class AgentParameters(ActionParameters):
    """``agent``: start, stop or restart one agent."""

    agent_id: str = Field(description="The agent's id (a UUID).")
    operation: Literal["start", "stop", "restart"] = Field(description="start, stop or restart.")

    @field_validator("agent_id")
    @classmethod
    def _uuid(cls, value: str) -> str:
        try:
            return str(uuid.UUID(value))
        except ValueError:
            raise ValueError(f"must be an agent id (a UUID), not {value!r}") from None


class AgentAction:
    """Start, stop or restart an agent through its actor (see the module docstring)."""

    kind = "agent"
    parameters: type[BaseModel] = AgentParameters
    admin_only = False

    def __repr__(self) -> str:
        return "<AgentAction>"

    def check(self, params: BaseModel) -> None:
        """Nothing to check without I/O (whether the agent exists is known when the task runs)."""
        assert isinstance(params, AgentParameters)

    async def run(self, params: BaseModel, ctx: ActionContext) -> ActionOutcome:
        """Ask the agents face; ok when the agent is in the asked state afterwards."""
        assert isinstance(params, AgentParameters)
        operation, agent_id = params.operation, params.agent_id
        try:
            agents = await agents_of(ctx.registry)
        except NotRegisteredError:
            reason = f"the Myntrix module is not running, so agent {agent_id} cannot {operation}"
            ctx.log(reason)
            return ActionOutcome(ok=False, error=reason)
        except VareonError as exc:
            reason = f"the Myntrix module did not answer, so agent {agent_id} cannot {operation}: {exc}"
            ctx.log(reason)
            return ActionOutcome(ok=False, error=reason)
        ctx.log(f"agent {agent_id}: {operation}")
        try:
            agent = await getattr(agents, operation)(agent_id)
        except ConflictError as exc:
            # Already running (start) or stopped (stop): done, as supervisorctl counts it, when
            # the agent is in the state asked for; any other conflict is a failure.
            wanted = {"start": AgentStatus.RUNNING, "stop": AgentStatus.STOPPED}.get(operation)
            try:
                current = await agents.get(agent_id)
            except VareonError:
                current = None
            if current is not None and current.status is wanted:
                ctx.log(f"agent {agent_id}: nothing to do, {exc.message}")
                return ActionOutcome(ok=True)
            reason = f"agent {agent_id} could not {operation}: {exc.message}"
            ctx.log(reason)
            return ActionOutcome(ok=False, error=reason)
        except ServiceError as exc:
            reason = f"agent {agent_id} could not {operation}: {exc.message}"
            ctx.log(reason)
            return ActionOutcome(ok=False, error=reason)
        except VareonError as exc:
            reason = f"agent {agent_id} could not {operation}: {type(exc).__name__}: {exc}"
            ctx.log(reason)
            return ActionOutcome(ok=False, error=reason)
        pid = f" (pid {agent.pid})" if agent.pid is not None else ""
        ctx.log(f"agent {agent_id} ({agent.name}) is {agent.status.value}{pid}")
        return ActionOutcome(ok=True)


# --------------------------------------------------------------------------- the registry


ACTIONS = ActionRegistry()
"""The task actions of this runtime: ``agent``, ``api``, ``script`` (more register later)."""
ACTIONS.register("script", ScriptAction())
ACTIONS.register("api", ApiAction())
ACTIONS.register("agent", AgentAction())
