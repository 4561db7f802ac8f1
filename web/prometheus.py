"""``GET /metrics``: the runtime in Prometheus's text format, for a box watched for months.

What it shows, read from the live state at each scrape (a custom collector on a registry of this
runtime's own, never the process-wide default):

- the supervision tree: children by supervisor, kind and status, and their restarts (the
  :class:`~vareon_runtime.status_board.StatusBoard` of the ``prometheus`` component; without
  it, the root's modules), live actors by kind (the registry);
- the store: write queue depth, writes by outcome, batches, transactions, reads, and the commit
  latency of each group commit (``Store.commit_latency``);
- the event bus: events published, open subscriptions;
- HTTP: answers by method, route template and status with their latency, requests in flight;
  WebSocket clients, connections, who ended them, events dropped for slow clients
  (:mod:`web.traffic`, the only part counted as it happens);
- telemetry rows written (the newest row's id: ``rate()`` gives rows per second);
- the scheduler's lateness: how long after its fire time each cron run started (read from the
  scheduler's run history at each scrape);
- the process: resident memory, CPU seconds, open files (prometheus_client's process collector).

Who may scrape (``[metrics]``, :mod:`web.metrics_export`): this machine without a token (the
client's address is loopback, or there is none: a Unix socket, an in-process client). A request
that carries ``X-Forwarded-For``, ``Forwarded`` or ``X-Real-IP`` from a peer that is not a
trusted proxy came through a proxy, so it counts as remote; behind a trusted proxy the client is
found as for the login limits (:func:`web.client.current_client`). Remote scrapes need
``allow_remote = true`` and ``Authorization: Bearer <token>``, the token from the variable named
by ``token_env``. The route is ``@public`` for the access layer (no user token) and checks this
itself; it is left out of the API document, whose answers are JSON.

``prometheus_client`` is imported at the first scrape, not before (decision 0028).
"""

from __future__ import annotations

import hmac
import ipaddress
import logging
from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from quart import Blueprint, Response, current_app, request
from quart.blueprints import BlueprintSetupState
from quart_schema import hide
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from actors.myntrix.scheduler import RunTrigger, Tasks
from vareon_runtime.clock import utcnow
from vareon_runtime.component import RuntimeContext
from vareon_runtime.errors import (
    AuthenticationError,
    NotFoundError,
    NotRegisteredError,
    PermissionDeniedError,
    VareonError,
)
from vareon_runtime.latency import LatencyHistogram
from vareon_runtime.status_board import StatusBoard
from vareon_runtime.store import TelemetryRecord
from vareon_runtime.supervisor import ChildStatus

from .client import current_client
from .context import EXTENSION as CONTEXT_EXTENSION
from .metrics_export import MetricsConfig, metrics_token
from .permissions import bearer_token, public
from .traffic import Traffic, install_traffic

if TYPE_CHECKING:
    from prometheus_client.core import Metric
    from prometheus_client.registry import CollectorRegistry

__all__ = ["EXTENSION", "LATENESS_BUCKETS", "Exporter", "blueprint", "is_local_request"]

log = logging.getLogger("vareon.web.metrics")

EXTENSION = "vareon.prometheus"
"""Where the app keeps its :class:`Exporter` (absent when ``[metrics] enabled = false``)."""

LATENESS_BUCKETS: tuple[float, ...] = (0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0)
"""Upper bounds in seconds of a cron run's lateness (from its fire time to its start)."""

_FORWARDING_HEADERS = ("X-Forwarded-For", "Forwarded", "X-Real-IP")
# Runs are written a moment after they start (in batches): the history is read up to this long
# ago, so a run is not missed for having been written after its window was read.
_HISTORY_LAG = timedelta(seconds=10)
_HISTORY_PAGE = 500
_HISTORY_PAGES_MAX = 20

blueprint = Blueprint("prometheus", __name__)


@blueprint.record_once
def _install(state: BlueprintSetupState) -> None:
    """Make the app's exporter and count its traffic, when ``[metrics]`` is enabled."""
    app = state.app
    ctx: RuntimeContext = app.extensions[CONTEXT_EXTENSION]
    settings = ctx.config.section(MetricsConfig)
    if not settings.enabled:
        return
    exporter = Exporter(ctx, settings, metrics_token(settings))
    install_traffic(app, exporter.traffic)
    app.extensions[EXTENSION] = exporter


@blueprint.get("/metrics")
@public
@hide  # not JSON: Prometheus's text format; listed in docs/configuration.md instead
async def metrics() -> Response:
    """The runtime's metrics, in Prometheus's text format (see the module docstring)."""
    exporter: Exporter | None = current_app.extensions.get(EXTENSION)
    if exporter is None:
        raise NotFoundError(
            "/metrics is off ([metrics] enabled = false); set it to true in config.toml to serve it"
        )
    exporter.admit()
    body, content_type = await exporter.scrape()
    return Response(body, status=200, content_type=content_type)


def is_local_request(peer: str | None, client: str | None, forwarded: bool) -> bool:
    """Whether a request came from this machine.

    Args:
        peer: the socket's peer address (Quart's ``remote_addr``: ``<local>`` when none).
        client: the client's address behind trusted proxies (:func:`web.client.current_client`).
        forwarded: the request carries a forwarding header.
    """
    if forwarded and client == peer:
        return False  # forwarded by a proxy that is not trusted: its client is somewhere else
    if client is None or client == "<local>":
        return True  # a Unix socket or an in-process client: no network in between
    try:
        return ipaddress.ip_address(client).is_loopback
    except ValueError:
        return False


class Exporter:
    """One app's ``/metrics``: its access rule, its traffic, its Prometheus registry.

    Args:
        ctx: the runtime whose state it shows.
        settings: ``[metrics]``.
        token: what remote scrapes must send (None: remote scrapes are refused).
    """

    def __init__(self, ctx: RuntimeContext, settings: MetricsConfig, token: str | None) -> None:
        self.ctx = ctx
        self.settings = settings
        self._token = token
        self.traffic = Traffic()
        self.telemetry_rows: int | None = None
        self.lateness = LatencyHistogram(LATENESS_BUCKETS)
        self.skipped_runs = 0
        self.unexamined_runs = 0
        self.source_errors: dict[str, int] = {}
        self._history_since: datetime = ctx.started_at
        self._registry: CollectorRegistry | None = None

    # -- who may scrape --------------------------------------------------------------------

    def admit(self) -> None:
        """Let the current request through, or refuse it.

        Raises:
            PermissionDeniedError: a remote client while remote scrapes are off.
            AuthenticationError: a remote client without the right token.
        """
        headers = request.headers
        forwarded = any(name in headers for name in _FORWARDING_HEADERS)
        if is_local_request(request.remote_addr, current_client(), forwarded):
            return
        if self._token is None:
            raise PermissionDeniedError(
                "/metrics is served to this machine only ([metrics] allow_remote = false); scrape"
                " it from here, or set allow_remote = true and a token in"
                f" {self.settings.token_env}"
            )
        supplied = bearer_token(headers.get("Authorization"))
        if supplied is None:
            raise AuthenticationError(
                f"a remote scrape of /metrics needs Authorization: Bearer <the token in {self.settings.token_env}>"
            )
        if not hmac.compare_digest(supplied.encode(), self._token.encode()):
            raise AuthenticationError(f"that is not the metrics token (the one in {self.settings.token_env})")

    # -- scraping ----------------------------------------------------------------------------

    async def scrape(self) -> tuple[bytes, str]:
        """Read what needs the database, then render every metric: the body and its type."""
        await self.refresh()
        from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4, generate_latest

        return generate_latest(self.registry()), CONTENT_TYPE_PLAIN_0_0_4

    def registry(self) -> CollectorRegistry:
        """This runtime's Prometheus registry (made at the first scrape)."""
        if self._registry is None:
            from prometheus_client import PlatformCollector, ProcessCollector
            from prometheus_client.registry import CollectorRegistry

            registry = CollectorRegistry(auto_describe=False)
            ProcessCollector(registry=registry)
            PlatformCollector(registry=registry)
            registry.register(_RuntimeCollector(self))  # type: ignore[arg-type]
            self._registry = registry
        return self._registry

    async def refresh(self) -> None:
        """Read the figures kept in the database: telemetry rows, cron runs since the last read.

        A source that fails is counted in ``vareon_metrics_source_errors_total`` and logged; the
        scrape goes on with what is in memory (a store in trouble is what one scrapes to see).
        """
        try:
            self.telemetry_rows = await self.ctx.store.read(_newest_telemetry_id)
        except VareonError as exc:
            self._failed("telemetry", exc)
        try:
            tasks = self.ctx.registry.face(Tasks)
        except NotRegisteredError:
            return  # no scheduler running: no lateness to read
        try:
            await self._read_runs(tasks)
        except VareonError as exc:
            self._failed("scheduler", exc)

    async def _read_runs(self, tasks: Tasks) -> None:
        since, until = self._history_since, utcnow() - _HISTORY_LAG
        if until <= since:
            return
        examined = 0
        for page_number in range(_HISTORY_PAGES_MAX):
            page = await tasks.history(since=since, until=until, limit=_HISTORY_PAGE, offset=page_number * _HISTORY_PAGE)
            for run in page.items:
                examined += 1
                if run.trigger is not RunTrigger.CRON or run.scheduled_for is None:
                    continue
                if run.status.value == "skipped":
                    self.skipped_runs += 1
                else:
                    self.lateness.observe(max(0.0, (run.start_time - run.scheduled_for).total_seconds()))
            if examined >= page.total or len(page.items) < _HISTORY_PAGE:
                break
        else:
            left = page.total - examined
            self.unexamined_runs += left
            log.warning("metrics: %d task runs between %s and %s were not examined for lateness (more than %d)", left, since, until, examined)
        self._history_since = until

    def _failed(self, source: str, exc: Exception) -> None:
        self.source_errors[source] = self.source_errors.get(source, 0) + 1
        log.warning("metrics: the %s figures could not be read: %s", source, exc)


def _newest_telemetry_id(session: Session) -> int:
    return int(session.scalar(select(func.max(TelemetryRecord.id))) or 0)


class _RuntimeCollector:
    """Every ``vareon_*`` metric, from the live state at each scrape."""

    def __init__(self, exporter: Exporter) -> None:
        self.exporter = exporter

    def collect(self) -> Iterator[Metric]:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        exporter = self.exporter
        ctx = exporter.ctx
        info = GaugeMetricFamily("vareon_runtime_info", "This runtime: its name and version.", labels=["name", "version"])
        info.add_metric([ctx.config.runtime.name, ctx.version], 1)
        yield info
        yield GaugeMetricFamily(
            "vareon_runtime_start_time_seconds", "When the runtime started (Unix time).", value=ctx.started_at.timestamp()
        )
        yield from self._supervision(ctx)
        yield from self._store(ctx)
        bus = ctx.bus
        yield CounterMetricFamily("vareon_bus_events_published", "Events published on the event bus.", value=bus.published)
        yield GaugeMetricFamily("vareon_bus_subscriptions", "Open subscriptions of the event bus.", value=bus.subscriber_count)
        yield from self._http(exporter.traffic)
        yield from self._websockets(exporter.traffic)
        if exporter.telemetry_rows is not None:
            yield CounterMetricFamily(
                "vareon_telemetry_rows",
                "Telemetry rows written: the newest row's id in the telemetry table (rate() gives rows per second).",
                value=exporter.telemetry_rows,
            )
        yield from self._scheduler(exporter)
        errors = CounterMetricFamily(
            "vareon_metrics_source_errors", "Scrapes whose reading of a source failed (see the log).", labels=["source"]
        )
        for source, count in sorted(exporter.source_errors.items()):
            errors.add_metric([source], count)
        yield errors

    def _supervision(self, ctx: RuntimeContext) -> Iterator[Metric]:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        children = GaugeMetricFamily(
            "vareon_supervised_children",
            "Children of each supervisor by kind and status (starting, running, backoff, stopping, stopped, failed).",
            labels=["supervisor", "kind", "status"],
        )
        restarts = CounterMetricFamily(
            "vareon_restarts", "Restarts of supervised children, by supervisor and kind.", labels=["supervisor", "kind"]
        )
        counts: dict[tuple[str, str, str], int] = {}
        restarted: dict[tuple[str, str], int] = {}
        try:
            board: StatusBoard | None = ctx.registry.face(StatusBoard)
        except NotRegisteredError:
            board = None
        if board is not None:
            counts.update(board.by_state())
            restarted.update(board.restarts())
        elif ctx.root is not None:  # no board (a runtime built without the component): the modules
            for child in ctx.root.which_children():
                key = ("root", child.kind, child.status.value)
                counts[key] = counts.get(key, 0) + 1
                restarted[("root", child.kind)] = restarted.get(("root", child.kind), 0) + child.restarts
        # Every status of each (supervisor, kind), zeros included: an alert on failed > 0 needs
        # the series to exist before the first failure.
        for supervisor, kind in sorted({(s, k) for s, k, _ in counts}):
            for status in ChildStatus:
                children.add_metric([supervisor, kind, status.value], counts.get((supervisor, kind, status.value), 0))
            restarts.add_metric([supervisor, kind], restarted.get((supervisor, kind), 0))
        yield children
        yield restarts
        if board is not None:
            yield CounterMetricFamily(
                "vareon_status_events_lost", "Status events the status board lost (it fell behind).", value=board.lost
            )
        actors = GaugeMetricFamily("vareon_actors", "Live actors (mailbox open) by kind of name.", labels=["kind"])
        for kind, count in sorted(ctx.registry.count_by_kind().items()):
            actors.add_metric([kind], count)
        yield actors

    def _store(self, ctx: RuntimeContext) -> Iterator[Metric]:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily

        store = ctx.store
        stats = store.stats
        yield GaugeMetricFamily("vareon_store_queue_depth", "Writes queued, not yet taken by the writer.", value=store.queue_depth)
        writes = CounterMetricFamily(
            "vareon_store_writes",
            "Writes by outcome: committed, failed (the caller got an error), cancelled (dropped from the queue).",
            labels=["outcome"],
        )
        for outcome in ("committed", "failed", "cancelled"):
            writes.add_metric([outcome], stats[outcome])
        yield writes
        yield CounterMetricFamily("vareon_store_batches", "Group commits: batches taken from the write queue.", value=stats["batches"])
        yield CounterMetricFamily(
            "vareon_store_transactions", "Write transactions (more than batches when a failed write forced re-runs).", value=stats["transactions"]
        )
        yield CounterMetricFamily("vareon_store_reads", "Reads finished.", value=stats["reads"])
        yield CounterMetricFamily("vareon_store_read_batches", "Thread hops the reads took (grouped reads).", value=stats["read_batches"])
        commit = HistogramMetricFamily(
            "vareon_store_commit_seconds", "Seconds from the writer taking a batch to its acknowledgement (its COMMIT and fsync included)."
        )
        latency = store.commit_latency
        commit.add_metric([], _buckets(latency), sum_value=latency.total)
        yield commit

    def _http(self, traffic: Traffic) -> Iterator[Metric]:
        from prometheus_client.core import GaugeMetricFamily, HistogramMetricFamily

        requests = HistogramMetricFamily(
            "vareon_http_request_duration_seconds",
            "HTTP answers by method, route template and status (0: the client left first), with their latency.",
            labels=["method", "route", "status"],
        )
        for (method, route, status), histogram in sorted(traffic.requests.items()):
            requests.add_metric([method, route, str(status)], _buckets(histogram), sum_value=histogram.total)
        yield requests
        yield GaugeMetricFamily("vareon_http_requests_in_flight", "HTTP requests being answered now.", value=traffic.in_flight)

    def _websockets(self, traffic: Traffic) -> Iterator[Metric]:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        clients = GaugeMetricFamily("vareon_websocket_clients", "WebSocket clients connected now, by route.", labels=["route"])
        connections = CounterMetricFamily("vareon_websocket_connections", "WebSocket connections accepted, by route.", labels=["route"])
        for route in sorted(traffic.websocket_connections):
            clients.add_metric([route], traffic.websocket_clients[route])
            connections.add_metric([route], traffic.websocket_connections[route])
        yield clients
        yield connections
        closes = CounterMetricFamily(
            "vareon_websocket_disconnects",
            "WebSocket connections ended, by route and by whom: server (closed or refused by the runtime) or client (closed or dropped).",
            labels=["route", "by"],
        )
        for (route, by), count in sorted(traffic.websocket_closes.items()):
            closes.add_metric([route, by], count)
        yield closes
        dropped = CounterMetricFamily(
            "vareon_websocket_dropped_events",
            "Events dropped for WebSocket clients that read too slowly (as their dropped frames told them), by route.",
            labels=["route"],
        )
        for route, count in sorted(traffic.websocket_dropped_events.items()):
            dropped.add_metric([route], count)
        yield dropped

    def _scheduler(self, exporter: Exporter) -> Iterator[Metric]:
        from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily

        try:
            exporter.ctx.registry.face(Tasks)
        except NotRegisteredError:
            return
        lateness = HistogramMetricFamily(
            "vareon_scheduler_lateness_seconds",
            "Seconds from a cron run's fire time to its start, for runs started since the runtime started.",
        )
        lateness.add_metric([], _buckets(exporter.lateness), sum_value=exporter.lateness.total)
        yield lateness
        yield CounterMetricFamily(
            "vareon_scheduler_skipped_runs", "Cron fire times skipped (overlap, or missed beyond the misfire grace).", value=exporter.skipped_runs
        )
        yield CounterMetricFamily(
            "vareon_scheduler_unexamined_runs",
            f"Runs not examined for lateness: more than {_HISTORY_PAGE * _HISTORY_PAGES_MAX} between two scrapes.",
            value=exporter.unexamined_runs,
        )


def _buckets(histogram: LatencyHistogram) -> list[tuple[str, float]]:
    from prometheus_client.utils import floatToGoString

    return [(floatToGoString(bound), count) for bound, count in histogram.cumulative()]
