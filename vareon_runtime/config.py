"""The runtime's configuration: ``config.toml`` plus ``VAREON_<SECTION>_<KEY>`` overrides.

The file is read with :mod:`tomllib` into pydantic models that forbid unknown keys, so a misspelled
key is an error naming the key and the file instead of a silently ignored line. Every field's
``description`` is written for a user: it becomes the comment above the key in the generated
``config.toml`` (:func:`render_default_config`) and the meaning column of
``docs/configuration.md``.

Secrets are never defaulted in code: ``[auth] jwt_secret`` unset means a key generated once and
kept in the data directory, and passwords (bootstrap admin, SMTP) are only read from the
environment variables the file names.
"""

from __future__ import annotations

import difflib
import ipaddress
import os
import re
import textwrap
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)

from vareon_runtime.errors import ConfigError

__all__ = [
    "AuthConfig",
    "Config",
    "DatabaseConfig",
    "EmailConfig",
    "MyntrixConfig",
    "RuntimeConfig",
    "ServerConfig",
    "SupervisorConfig",
    "load_config",
    "render_default_config",
    "write_default_config",
]

ENV_PREFIX = "VAREON_"
MIB = 1024 * 1024
JWT_SECRET_MIN_LENGTH = 32
_ENV_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_DB_URL_RE = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")


def _lower(value: Any) -> Any:
    # Lets `log_level = "INFO"` or VAREON_RUNTIME_LOG_LEVEL=DEBUG through; choices are lowercase.
    return value.lower() if isinstance(value, str) else value


def _comma_list(value: Any) -> Any:
    # A list from an environment variable: "10.0.0.1, 10.0.0.0/8"; empty means none.
    if isinstance(value, str):
        return [item.strip() for item in value.split(",") if item.strip()]
    return value


def _ip_networks(values: list[str]) -> list[str]:
    """Normalise IP addresses and CIDR networks ("10.0.0.1" -> "10.0.0.1/32")."""
    problems: list[str] = []
    networks: list[str] = []
    for value in values:
        try:
            networks.append(str(ipaddress.ip_network(value)))
        except ValueError:
            try:
                loose = ipaddress.ip_network(value, strict=False)
            except ValueError:
                problems.append(f"{value!r} is not an IP address or network")
            else:
                problems.append(f"{value!r} has host bits set (did you mean {str(loose)!r}?)")
    if problems:
        raise ValueError(
            "must be IP addresses or networks such as '10.0.0.1' or '10.0.0.0/8': "
            + "; ".join(problems)
        )
    return networks


def _env_var_name(value: str) -> str:
    if not _ENV_NAME_RE.match(value):
        raise ValueError(f"must be an environment variable name like 'VAREON_X', not {value!r}")
    return value


class RuntimeConfig(BaseModel):
    """``[runtime]``: the process as a whole."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(
        "vareon",
        min_length=1,
        description="Name of this runtime, shown in logs and the API; useful to tell boxes apart.",
    )
    data_dir: Path = Field(
        Path("data"),
        description=(
            "Directory for the database, the generated JWT key and uploads. A relative path is"
            " relative to the directory of this config file."
        ),
    )
    log_level: Literal["debug", "info", "warning", "error"] = Field(
        "info", description="Least severe log level written: debug, info, warning or error."
    )
    log_format: Literal["plain", "json"] = Field(
        "plain",
        description=(
            "Log line format on stderr: plain (one readable line per record) or json (one JSON"
            " object per line, for log collectors)."
        ),
    )
    shutdown_timeout: float = Field(
        10.0,
        gt=0,
        description=(
            "Seconds a clean stop (SIGINT or SIGTERM) may take before the remaining tasks are"
            " cancelled."
        ),
    )

    _normalise = field_validator("log_level", "log_format", mode="before")(_lower)


class ServerConfig(BaseModel):
    """``[server]``: the embedded HTTP and WebSocket front."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = Field(
        True, description="Serve the HTTP and WebSocket API; false runs the actors headless."
    )
    host: str = Field(
        "127.0.0.1",
        min_length=1,
        description=(
            "Address to listen on. 127.0.0.1 accepts connections from this machine only; use"
            ' "0.0.0.0" (every IPv4 interface) or "::" (IPv6 too) to reach the runtime from the'
            " network, preferably behind a TLS reverse proxy."
        ),
    )
    port: int = Field(
        8000, ge=0, le=65535, description="TCP port to listen on; 0 picks a free port."
    )
    max_body_size: int = Field(
        1 * MIB,
        gt=0,
        description=(
            "Largest request body in bytes (1048576 = 1 MiB); a larger request gets 413 before"
            " its body is read. Uploads have their own limit, upload_max_size."
        ),
    )
    upload_max_size: int = Field(
        512 * MIB,
        gt=0,
        description="Largest file upload in bytes (536870912 = 512 MiB); a larger one gets 413.",
    )
    trusted_proxies: list[str] = Field(
        default_factory=list,
        examples=[["127.0.0.1", "10.0.0.0/8"]],
        description=(
            "Reverse proxies (IP addresses or networks such as 10.0.0.0/8) whose"
            " X-Forwarded-For header is believed. A request from one of them is counted, for the"
            " login and registration limits, under the rightmost address in X-Forwarded-For that"
            " is not itself a trusted proxy. Empty (the default) ignores the header: behind a"
            " proxy every client then shares the proxy's address, and its login lockout. As an"
            " environment variable: a comma-separated list."
        ),
    )

    _split = field_validator("trusted_proxies", mode="before")(_comma_list)
    _check_proxies = field_validator("trusted_proxies")(_ip_networks)


class DatabaseConfig(BaseModel):
    """``[database]``: where state is stored and how the single writer batches."""

    model_config = ConfigDict(extra="forbid")

    url: str | None = Field(
        None,
        examples=["postgresql+psycopg://vareon@localhost/vareon"],
        description=(
            "SQLAlchemy database URL. Unset means the SQLite file <data_dir>/vareon.db; for"
            " PostgreSQL use postgresql+psycopg://user@host/db (put the password in"
            " VAREON_DATABASE_URL rather than in this file)."
        ),
    )
    sqlite_synchronous: Literal["full", "normal"] = Field(
        "full",
        description=(
            "SQLite durability: full keeps every acknowledged write through a power loss; normal"
            " is faster but only survives a crash of the process, not of the machine."
        ),
    )
    write_batch_max: int = Field(
        512, ge=1, description="Most writes committed together in one transaction (group commit)."
    )
    read_pool_size: int = Field(
        4, ge=1, description="Database connections kept for reads, beside the single writer."
    )
    busy_timeout: float = Field(
        5.0,
        gt=0,
        description="Seconds to wait for a database lock held by someone else before failing.",
    )

    _normalise = field_validator("sqlite_synchronous", mode="before")(_lower)

    @field_validator("url")
    @classmethod
    def _check_url(cls, value: str | None) -> str | None:
        if value is not None and not _DB_URL_RE.match(value):
            raise ValueError(
                "must be a database URL such as 'postgresql+psycopg://user@host/db' or"
                f" 'sqlite:////absolute/path.db', not {value!r}; leave it unset for the default"
                " SQLite file in the data directory"
            )
        return value


class SupervisorConfig(BaseModel):
    """``[supervisor]``: defaults for the domain supervisors' restart policy."""

    model_config = ConfigDict(extra="forbid")

    max_restarts: int = Field(
        10,
        ge=0,
        description=(
            "Restarts a supervisor allows within period seconds before it stops its children"
            " and reports the failure upwards."
        ),
    )
    period: float = Field(
        60.0, gt=0, description="Window in seconds over which max_restarts is counted."
    )
    backoff_initial: float = Field(
        0.1,
        ge=0,
        description="Seconds to wait before the first restart; doubled (with jitter) each time.",
    )
    backoff_max: float = Field(
        30.0, ge=0, description="Upper bound in seconds of the wait between restarts."
    )

    @model_validator(mode="after")
    def _check_backoff(self) -> SupervisorConfig:
        if self.backoff_max < self.backoff_initial:
            raise ValueError(
                f"backoff_max ({self.backoff_max}) must be at least backoff_initial"
                f" ({self.backoff_initial})"
            )
        return self


class AuthConfig(BaseModel):
    """``[auth]``: users, tokens and login protection."""

    model_config = ConfigDict(extra="forbid")

    jwt_secret: SecretStr | None = Field(
        None,
        examples=["<openssl rand -hex 32>"],
        description=(
            f"Key signing access tokens, at least {JWT_SECRET_MIN_LENGTH} characters. Unset"
            " (recommended) means a random key generated at first start and kept in the data"
            " directory (mode 0600); to share one key between runtimes set VAREON_AUTH_JWT_SECRET"
            " rather than writing it here."
        ),
    )
    access_token_ttl: int = Field(
        900, gt=0, description="Lifetime of an access token in seconds (900 = 15 minutes)."
    )
    refresh_token_ttl: int = Field(
        1209600, gt=0, description="Lifetime of a refresh token in seconds (1209600 = 14 days)."
    )
    allow_registration: bool = Field(
        True, description="Let anyone create an account; false means only admins add users."
    )
    bootstrap_admin: str | None = Field(
        None,
        min_length=1,
        examples=["admin"],
        description=(
            "Username of an admin account created at start when no user of that name exists; its"
            " password comes from the variable named by bootstrap_admin_password_env."
        ),
    )
    bootstrap_admin_password_env: str = Field(
        "VAREON_ADMIN_PASSWORD",
        description=(
            "Name of the environment variable holding the bootstrap admin's password; a"
            " password is never read from this file."
        ),
    )
    login_max_failures: int = Field(
        5,
        ge=1,
        description=(
            "Failed logins within login_lockout seconds after which the username, or the client"
            " address (an IPv6 /64), is locked."
        ),
    )
    login_lockout: int = Field(
        300,
        gt=0,
        description="Seconds a locked username or address stays locked (300 = 5 minutes).",
    )
    registration_max: int = Field(
        5,
        ge=1,
        description=(
            "Accounts one client address (an IPv6 /64) may register within registration_window"
            " seconds; more get 429. Each registration costs a password hash."
        ),
    )
    registration_window: int = Field(
        3600,
        gt=0,
        description="Window in seconds over which registration_max is counted (3600 = 1 hour).",
    )

    _check_env_name = field_validator("bootstrap_admin_password_env")(_env_var_name)

    @field_validator("jwt_secret")
    @classmethod
    def _check_secret(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and len(value.get_secret_value()) < JWT_SECRET_MIN_LENGTH:
            raise ValueError(
                f"must be at least {JWT_SECRET_MIN_LENGTH} characters, not"
                f" {len(value.get_secret_value())}; generate one with `openssl rand -hex 32`"
                " or leave it unset to have one generated in the data directory"
            )
        return value


class EmailConfig(BaseModel):
    """``[email]``: outgoing mail for account verification."""

    model_config = ConfigDict(extra="forbid")

    smtp_host: str | None = Field(
        None,
        min_length=1,
        examples=["smtp.example.com"],
        description=(
            "SMTP server for verification mails. Unset means no mail is sent and verification"
            " tokens are written to the log instead."
        ),
    )
    smtp_port: int = Field(587, ge=1, le=65535, description="SMTP server port.")
    smtp_starttls: bool = Field(
        True, description="Upgrade the SMTP connection with STARTTLS before logging in."
    )
    username: str | None = Field(
        None,
        min_length=1,
        examples=["vareon@example.com"],
        description="SMTP login name; unset means the server is used without logging in.",
    )
    password_env: str = Field(
        "VAREON_SMTP_PASSWORD",
        description=(
            "Name of the environment variable holding the SMTP password; a password is never"
            " read from this file."
        ),
    )
    from_address: str = Field(
        "vareon@localhost", min_length=1, description="Sender address of outgoing mails."
    )

    _check_env_name = field_validator("password_env")(_env_var_name)


class MyntrixConfig(BaseModel):
    """``[myntrix]``: agents, host monitoring, devices, telemetry and scheduled tasks."""

    model_config = ConfigDict(extra="forbid")

    metrics_interval: float = Field(
        5.0, gt=0, description="Seconds between two samples of the host's CPU, memory, disk and load."
    )
    metrics_history: int = Field(
        720,
        ge=1,
        description=(
            "Samples of host metrics kept in memory for the history (720 at 5 s is one hour);"
            " the oldest is dropped."
        ),
    )
    agent_log_lines: int = Field(
        5000,
        ge=1,
        description="Output lines kept in the database per agent; older lines are pruned.",
    )
    device_command_timeout: float = Field(
        5.0,
        gt=0,
        description=(
            "Seconds a device has to finish its reply to a command before the command fails with"
            " 504; a device's configuration can set its own (commandTimeout)."
        ),
    )
    device_reconnect_max: float = Field(
        30.0,
        gt=0,
        description=(
            "Longest wait in seconds between two attempts to reconnect a device whose link dropped"
            " (the wait starts short and doubles)."
        ),
    )
    telemetry_flush_interval: float = Field(
        0.25,
        gt=0,
        description="Seconds telemetry samples wait in memory, at most, before they are written together.",
    )
    telemetry_keep_days: float = Field(
        7.0,
        ge=0,
        description="Days of device telemetry kept in the database; older samples are pruned. 0 keeps everything.",
    )
    scheduler_timezone: str = Field(
        "UTC",
        min_length=1,
        description="IANA time zone (such as Europe/Berlin) of a scheduled task that names none.",
    )
    task_misfire_grace: float = Field(
        300.0,
        ge=0,
        description=(
            "Seconds after a missed fire time (the runtime was down) within which a task whose"
            " misfire policy is run_once still runs once; a task can set its own."
        ),
    )
    task_runs_keep: int = Field(
        1000,
        ge=1,
        description="Runs kept in the history per task; older runs are pruned.",
    )

    @field_validator("scheduler_timezone")
    @classmethod
    def _known_timezone(cls, value: str) -> str:
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"{value!r} is not an IANA time zone name (such as UTC or Europe/Berlin)") from None
        return value


class Config(BaseModel):
    """The whole configuration: one attribute per ``config.toml`` section."""

    model_config = ConfigDict(extra="forbid")

    runtime: RuntimeConfig = Field(
        default_factory=RuntimeConfig, description="The process: name, data, logs, stopping."
    )
    server: ServerConfig = Field(
        default_factory=ServerConfig, description="The embedded HTTP and WebSocket server."
    )
    database: DatabaseConfig = Field(
        default_factory=DatabaseConfig,
        description="Storage: SQLite in the data directory by default, or PostgreSQL.",
    )
    supervisor: SupervisorConfig = Field(
        default_factory=SupervisorConfig,
        description="Default restart policy of the domain supervisors.",
    )
    auth: AuthConfig = Field(
        default_factory=AuthConfig, description="Accounts, tokens and login protection."
    )
    email: EmailConfig = Field(
        default_factory=EmailConfig, description="Outgoing mail for account verification."
    )
    myntrix: MyntrixConfig = Field(
        default_factory=MyntrixConfig,
        description="Agents, host monitoring, devices, telemetry and scheduled tasks (Myntrix).",
    )

    # Absolute path of the file this was loaded from; None for defaults or a model built in code.
    _source: Path | None = PrivateAttr(default=None)

    @property
    def source_path(self) -> Path | None:
        """The absolute path of the config file this was loaded from, or None."""
        return self._source

    @property
    def data_dir_path(self) -> Path:
        """The data directory as an absolute path.

        A relative ``data_dir`` is resolved against the config file's directory, or against the
        current directory when the configuration did not come from a file.
        """
        base = self._source.parent if self._source is not None else Path.cwd()
        return (base / self.runtime.data_dir.expanduser()).resolve()

    @property
    def database_url(self) -> str:
        """The configured database URL, or the SQLite file ``vareon.db`` in the data directory."""
        if self.database.url is not None:
            return self.database.url
        return f"sqlite:///{(self.data_dir_path / 'vareon.db').as_posix()}"


def _sections() -> dict[str, type[BaseModel]]:
    sections: dict[str, type[BaseModel]] = {}
    for name, field in Config.model_fields.items():
        assert isinstance(field.annotation, type) and issubclass(field.annotation, BaseModel)
        sections[name] = field.annotation
    return sections


_SECTIONS = _sections()


def _is_optional(model: type[BaseModel], key: str) -> bool:
    return model.model_fields[key].default is None


def _is_secret(section: str, key: str) -> bool:
    model = _SECTIONS.get(section)
    if model is None or key not in model.model_fields:
        return False
    return "SecretStr" in str(model.model_fields[key].annotation)


def _unknown_key_message(section: str, key: str) -> str:
    known = list(_SECTIONS[section].model_fields)
    message = f"unknown key {key!r} in [{section}]; known keys: {', '.join(known)}"
    close = difflib.get_close_matches(key, known, n=1)
    if key.endswith("password") and f"{key}_env" in known:
        message += f"; a password is read from the environment variable named by {key}_env"
    elif close:
        message += f"; did you mean {close[0]!r}?"
    return message


def _env_overrides(environ: Mapping[str, str]) -> dict[tuple[str, str], tuple[str, str | None]]:
    """Collect ``VAREON_<SECTION>_<KEY>`` variables of known sections.

    Returns:
        ``{(section, key): (variable name, value)}``; an empty value of a key that defaults to
        unset becomes None (unset).

    Raises:
        ConfigError: a variable names a known section but an unknown key.
    """
    overrides: dict[tuple[str, str], tuple[str, str | None]] = {}
    for name in sorted(environ):
        if not name.startswith(ENV_PREFIX):
            continue
        section, _, key = name[len(ENV_PREFIX) :].lower().partition("_")
        model = _SECTIONS.get(section)
        if model is None:
            continue  # VAREON_MOCK_SYSTEM_METRICS and friends belong to other features
        if key not in model.model_fields:
            raise ConfigError(f"environment variable {name}: {_unknown_key_message(section, key)}")
        value: str | None = environ[name]
        if value == "" and _is_optional(model, key):
            value = None
        overrides[(section, key)] = (name, value)
    return overrides


def _expected(err: Mapping[str, Any]) -> str:
    """Turn a pydantic error into the 'what was expected' half of a message."""
    kind = err["type"]
    ctx = err.get("ctx") or {}
    if kind == "literal_error":
        return f"one of {ctx['expected']}"
    msg: str = err["msg"]
    prefix = "Input should be "
    if msg.startswith(prefix):
        text = msg[len(prefix) :]
        if kind.endswith(("_parsing", "_type")):
            text = text.split(",")[0]  # drop pydantic's "unable to parse string as an integer"
        return text
    return msg[:1].lower() + msg[1:]


def _error_line(
    err: Mapping[str, Any], source: str, env_names: Mapping[tuple[str, str], str]
) -> str:
    """Say which file or variable, which key, what was expected and what came."""
    loc = tuple(str(part) for part in err["loc"])
    kind = err["type"]
    value = err.get("input")
    section = loc[0] if loc else ""
    if len(loc) >= 2 and (loc[0], loc[1]) in env_names:
        source = f"environment variable {env_names[(loc[0], loc[1])]}"
    if kind == "extra_forbidden":
        if len(loc) == 1:
            sections = ", ".join(_SECTIONS)
            if isinstance(value, dict):
                return f"{source}: unknown section [{section}]; known sections: {sections}"
            return (
                f"{source}: unknown key {section!r} outside any section; keys belong under a"
                f" section header, one of: {sections}"
            )
        return f"{source}: {_unknown_key_message(section, loc[1])}"
    if len(loc) == 1:
        if kind in ("model_type", "model_attributes_type", "dict_type"):
            return f"{source}: [{section}] must be a table (a [{section}] header), not {value!r}"
        if kind == "value_error":
            return f"{source}: [{section}] {err['ctx']['error']}"
        return f"{source}: [{section}] {err['msg']}"
    key = ".".join(loc[1:])
    if kind == "value_error":
        return f"{source}: [{section}] {key} {err['ctx']['error']}"
    shown = "" if _is_secret(section, loc[1]) else f", not {value!r}"
    return f"{source}: [{section}] {key} must be {_expected(err)}{shown}"


def load_config(
    path: str | os.PathLike[str] | None = None, *, environ: Mapping[str, str] | None = None
) -> Config:
    """Read a ``config.toml`` and apply ``VAREON_<SECTION>_<KEY>`` environment overrides.

    Args:
        path: The TOML file; None uses the defaults (plus the environment).
        environ: Where the overrides come from; defaults to ``os.environ``.

    Returns:
        The validated configuration, remembering the file for resolving relative paths.

    Raises:
        ConfigError: the file is missing or not valid TOML, a key is unknown or has a bad value,
            or a variable names an unknown key of a known section. The message names the file or
            the variable and the key.
    """
    source_path: Path | None = None
    data: dict[str, Any] = {}
    label = "<defaults>"
    if path is not None:
        label = os.fspath(path)
        source_path = Path(path).expanduser().resolve()
        try:
            with open(source_path, "rb") as file:
                data = tomllib.load(file)
        except FileNotFoundError:
            raise ConfigError(
                f"{label}: no such config file; create one with `vareon init` or pass another"
                " path"
            ) from None
        except IsADirectoryError:
            raise ConfigError(f"{label}: is a directory, expected a TOML file") from None
        except OSError as exc:
            raise ConfigError(f"{label}: cannot read: {exc.strerror or exc}") from exc
        except UnicodeDecodeError as exc:
            raise ConfigError(
                f"{label}: not UTF-8 text ({exc.reason} at byte {exc.start})"
            ) from exc
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{label}: invalid TOML: {exc}") from exc

    env_names: dict[tuple[str, str], str] = {}
    for (section, key), (name, value) in _env_overrides(
        os.environ if environ is None else environ
    ).items():
        table = data.setdefault(section, {})
        if isinstance(table, dict):  # not a table: validation reports the file's mistake
            table[key] = value
            env_names[(section, key)] = name

    try:
        config = Config.model_validate(data)
    except ValidationError as exc:
        lines = [_error_line(err, label, env_names) for err in exc.errors()]
        raise ConfigError("\n".join(lines)) from None
    config._source = source_path
    return config


def _toml_string(value: str) -> str:
    out = ['"']
    for char in value:
        if char in '"\\':
            out.append("\\" + char)
        elif char == "\n":
            out.append("\\n")
        elif char == "\t":
            out.append("\\t")
        elif ord(char) < 0x20 or ord(char) == 0x7F:
            out.append(f"\\u{ord(char):04x}")
        else:
            out.append(char)
    out.append('"')
    return "".join(out)


def _toml_value(value: Any) -> str:
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(item) for item in value) + "]"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, Path):
        return _toml_string(value.as_posix())
    if isinstance(value, str):
        return _toml_string(value)
    raise TypeError(f"no TOML form for {value!r}")


def _comment(text: str) -> list[str]:
    return textwrap.wrap(text, width=98, initial_indent="# ", subsequent_indent="# ")


_HEADER = """\
Vareon Runtime configuration.

Every key is listed with its default value; keys that are unset by default are shown commented
out with an example. Any key can also be set with an environment variable
VAREON_<SECTION>_<KEY>, which wins over this file, e.g. VAREON_SERVER_PORT=0 or
VAREON_DATABASE_URL=postgresql+psycopg://vareon@db/vareon. Relative paths are relative to the
directory of this file. Passwords never go in this file: see docs/configuration.md."""


def render_default_config() -> str:
    """Render the commented default ``config.toml`` from the models.

    Returns:
        TOML text listing every section and key with its description as comments; keys unset by
        default are commented out with an example. Loading it gives the defaults.
    """
    lines: list[str] = []
    for paragraph in _HEADER.split("\n\n"):
        lines.extend(_comment(" ".join(paragraph.split())))
        lines.append("#")
    lines[-1:] = []
    for section, model in _SECTIONS.items():
        lines.append("")
        lines.extend(_comment(Config.model_fields[section].description or section))
        lines.append(f"[{section}]")
        for key, field in model.model_fields.items():
            lines.append("")
            lines.extend(_comment(field.description or key))
            default = field.get_default(call_default_factory=True)
            if default is None:
                assert field.examples, f"[{section}] {key} defaults to None and needs an example"
                lines.append(f"# {key} = {_toml_value(field.examples[0])}")
            else:
                lines.append(f"{key} = {_toml_value(default)}")
    return "\n".join(lines) + "\n"


def write_default_config(path: str | os.PathLike[str]) -> Path:
    """Write the default ``config.toml`` and create the data directory beside it.

    Args:
        path: Where to write the file; missing parent directories are created.

    Returns:
        The absolute path of the written file.

    Raises:
        ConfigError: the file already exists (it is never overwritten) or cannot be written.
    """
    label = os.fspath(path)
    target = Path(path).expanduser().resolve()
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(
            f"{label}: cannot create directory {target.parent}: {exc.strerror or exc}"
        ) from exc
    try:
        # Mode "x": never overwrite, even if the file appears between a check and the write.
        with open(target, "x", encoding="utf-8") as file:
            file.write(render_default_config())
    except FileExistsError:
        raise ConfigError(
            f"{label}: already exists; not overwriting it. Remove it or choose another path"
        ) from None
    except OSError as exc:
        raise ConfigError(f"{label}: cannot write: {exc.strerror or exc}") from exc
    config = load_config(target, environ={})
    try:
        # The data directory will hold the JWT key and the database: keep it private.
        config.data_dir_path.mkdir(mode=0o700, parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(
            f"{label}: cannot create data directory {config.data_dir_path}:"
            f" {exc.strerror or exc}"
        ) from exc
    return target
