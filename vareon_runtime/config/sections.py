"""The kernel's sections of ``config.toml``: ``[runtime]``, ``[server]``, ``[database]``,
``[supervisor]``, ``[auth]``, ``[email]`` and ``[outbound]``.

Every field's ``description`` is written for a user: it becomes the comment above the key in
the generated ``config.toml`` and the meaning column of ``docs/configuration.md``. Each model
forbids unknown keys. The sections of the layers above (``[myntrix]`` and the domains to come)
are declared by their components (:class:`~vareon_runtime.component.ConfigSection`).
"""

from __future__ import annotations

import ipaddress
import re
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

__all__ = [
    "ENV_PREFIX",
    "JWT_SECRET_MIN_LENGTH",
    "MIB",
    "AuthConfig",
    "DatabaseConfig",
    "EmailConfig",
    "OutboundConfig",
    "RuntimeConfig",
    "ServerConfig",
    "SupervisorConfig",
]

ENV_PREFIX = "VAREON_"
MIB = 1024 * 1024
JWT_SECRET_MIN_LENGTH = 32
_ENV_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_DB_URL_RE = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")
_HOST_LABEL_RE = re.compile(r"^(?!-)[a-z0-9_-]{1,63}(?<!-)$")


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


def _destinations(values: list[str]) -> list[str]:
    """Normalise outbound destinations: IP addresses and networks as for trusted proxies, host
    names in lower case without a trailing dot."""
    problems: list[str] = []
    kept: list[str] = []
    for value in values:
        text = value.strip()
        try:
            kept.append(str(ipaddress.ip_network(text.strip("[]"))))
            continue
        except ValueError:
            pass
        try:
            loose = ipaddress.ip_network(text.strip("[]"), strict=False)
        except ValueError:
            name = text.rstrip(".").lower()
            labels = name.split(".")
            if len(name) <= 253 and all(_HOST_LABEL_RE.match(label) for label in labels) and not labels[-1].isdigit():
                kept.append(name)
            else:
                problems.append(
                    f"{value!r} is none of these (write the host alone, without scheme, port, path or wildcard)"
                )
        else:
            problems.append(f"{value!r} has host bits set (did you mean {str(loose)!r}?)")
    if problems:
        raise ValueError(
            "must be IP addresses, networks or host names such as '127.0.0.1', '127.0.0.0/8' or"
            " 'localhost': " + "; ".join(problems)
        )
    return kept


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
            "Failed logins within login_lockout seconds after which the client address (an IPv6"
            " /64), or that address for that username, is locked; a username alone is only slowed"
            " down, never locked."
        ),
    )
    login_lockout: int = Field(
        300,
        gt=0,
        description="Seconds a locked address (or address and username) stays locked (300 = 5 minutes).",
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


class OutboundConfig(BaseModel):
    """``[outbound]``: where the calls users aim (api tasks; workflow, pipeline and provider HTTP
    calls as they come) may go. The rule is drivers.outbound's (decision 0024)."""

    model_config = ConfigDict(extra="forbid")

    allow: list[str] = Field(
        default_factory=list,
        examples=[["127.0.0.1", "::1", "localhost"]],
        description=(
            "Internal destinations (IP addresses, networks, host names, such as"
            ' ["127.0.0.1", "::1", "localhost"]) that operators may aim outbound'
            " calls at, such as an api task. Public addresses"
            " need no entry; loopback, private, link-local (169.254.169.254, cloud metadata),"
            " unspecified, multicast and reserved addresses are for admins only unless listed"
            " here. A name allows what it resolves to, except this host (loopback, 0.0.0.0),"
            " which only its address allows. As an environment variable: a comma-separated list."
        ),
    )

    _split = field_validator("allow", mode="before")(_comma_list)
    _check_allow = field_validator("allow")(_destinations)
