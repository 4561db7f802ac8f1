"""``[metrics]`` and the ``prometheus`` component: what ``GET /metrics`` needs before the runtime
starts (entry point ``vareon.components: prometheus``).

The component's one child is the :class:`~vareon_runtime.status_board.StatusBoard`, made in
``build`` (before the root supervisor starts anything, so it sees every child's first status),
provided in the registry while it runs; ``/metrics`` (:mod:`web.prometheus`) counts the tree's
children by state from it. With ``[metrics] enabled = false`` there is no board, no request is
counted, and ``/metrics`` is a 404.

This module stays light (pydantic and the kernel): it is imported to read the configuration,
also by ``vareon init``.
"""

from __future__ import annotations

import os

from pydantic import BaseModel, ConfigDict, Field, field_validator

from vareon_runtime.component import Component, ConfigSection, RuntimeContext
from vareon_runtime.errors import ConfigError
from vareon_runtime.supervisor import ChildSpec

__all__ = ["METRICS_TOKEN_MIN_LENGTH", "SECTION", "MetricsConfig", "component", "metrics_token"]

METRICS_TOKEN_MIN_LENGTH = 16
_ENV_NAME_CHARACTERS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_")


class MetricsConfig(BaseModel):
    """``[metrics]``: ``GET /metrics`` in Prometheus's text format."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = Field(
        True,
        description=(
            "Serve GET /metrics in Prometheus's text format (actors by state, restarts, the"
            " store's queue and commit latency, HTTP requests by route and status, WebSocket"
            " clients, telemetry rows, scheduler lateness) and count what it shows; false"
            " answers 404 and counts nothing."
        ),
    )
    allow_remote: bool = Field(
        False,
        description=(
            "Let clients other than this machine scrape /metrics, with the header"
            " Authorization: Bearer <the token in the variable named by token_env>. False (the"
            " default) serves it to this machine only (loopback, without a token); a request"
            " that came through a reverse proxy counts as remote (see [server] trusted_proxies)."
        ),
    )
    token_env: str = Field(
        "VAREON_METRICS_TOKEN",
        description=(
            "Name of the environment variable holding the token remote scrapes send (at least"
            f" {METRICS_TOKEN_MIN_LENGTH} characters, e.g. `openssl rand -hex 32`); needed when"
            " allow_remote is true. A token is never read from this file."
        ),
    )

    @field_validator("token_env")
    @classmethod
    def _check_env_name(cls, value: str) -> str:
        if not value or value[0].isdigit() or not set(value) <= _ENV_NAME_CHARACTERS:
            raise ValueError(f"must be an environment variable name like 'VAREON_X', not {value!r}")
        return value


SECTION = ConfigSection("metrics", MetricsConfig, "GET /metrics in Prometheus's text format: who may scrape it.")


def metrics_token(settings: MetricsConfig) -> str | None:
    """The token remote scrapes must send, or None when remote scrapes are off.

    Raises:
        ConfigError: remote scrapes are on and the variable is unset or too short.
    """
    if not settings.allow_remote:
        return None
    token = os.environ.get(settings.token_env, "")
    if len(token) < METRICS_TOKEN_MIN_LENGTH:
        state = "is not set" if not token else f"holds {len(token)} characters"
        raise ConfigError(
            f"[metrics] allow_remote is true, but {settings.token_env} {state}; put a token of at"
            f" least {METRICS_TOKEN_MIN_LENGTH} characters in it (`openssl rand -hex 32`) or set"
            " allow_remote = false to serve /metrics to this machine only"
        )
    return token


def _build(ctx: RuntimeContext) -> ChildSpec | None:
    settings = ctx.config.section(MetricsConfig)
    if not settings.enabled or not ctx.config.server.enabled:
        return None  # nobody could scrape it
    metrics_token(settings)  # a missing token stops the start, not the first scrape
    from vareon_runtime.status_board import StatusBoard

    board = StatusBoard(ctx.bus, ctx.registry)

    def factory() -> StatusBoard:
        return board  # the same board on every restart: its subscription outlives a crash

    return ChildSpec("status-board", factory, shutdown=1.0)


component = Component(name="prometheus", build=_build, order=1, config=SECTION)
"""The ``prometheus`` component."""
