"""Boot and stop one runtime: config -> store (and accounts) -> root supervisor (components).

The root supervisor's first children are the kernel's own: the journal, and the mailer when
``[email] smtp_host`` is set; then the components in their order.

Stopping (SIGINT, SIGTERM or :meth:`Runtime.stop`) goes the other way: the root supervisor stops
its children in reverse start order (the web front first, as it starts last), then the store
commits whatever is queued and closes. Nothing acknowledged is lost.
"""

from __future__ import annotations

import gc
import logging
import os
import signal
from collections.abc import Sequence

import trio

from .version import __version__
from .bus import EventBus
from .component import Component, RuntimeContext, discover_components
from .config import Config
from .journal import Journal
from .registry import Registry
from .store import Store
from .supervisor import Backoff, ChildSpec, Supervisor

__all__ = [
    "GC_YOUNG_THRESHOLD",
    "Runtime",
    "return_free_memory",
    "run_until_signal",
    "settle_collector",
    "store_for",
]

log = logging.getLogger("vareon.runtime")

GC_YOUNG_THRESHOLD = 10_000
"""Allocations of container objects between two young collections (CPython's default is 700)."""


def settle_collector() -> None:
    """Tune CPython's cyclic collector for a long-running runtime, once boot is done.

    Everything boot made lives as long as the process: :func:`gc.freeze` moves it out of the
    collector's sight, so collections under load stop re-walking it. Young collections are made
    rarer (:data:`GC_YOUNG_THRESHOLD`), so that a burst of short-lived objects (ten thousand task
    runs due on one minute, a flood of requests) is not interrupted by hundreds of collections,
    each of which also walks everything still alive from the burst
    (docs/decisions/0008-gc-freeze-after-boot.md). Then the C heap's free pages go back to the
    system (:func:`return_free_memory`).
    """
    gc.freeze()
    young, middle, old = gc.get_threshold()
    if 0 < young < GC_YOUNG_THRESHOLD:  # 0: the collector is off; leave it so
        gc.set_threshold(GC_YOUNG_THRESHOLD, middle, old)
    return_free_memory()


def return_free_memory() -> bool:
    """Give the C heap's free pages back to the system (glibc's ``malloc_trim``).

    Boot frees a good deal it allocated (a first boot's migrations above all); glibc keeps those
    pages in the process until told otherwise: about 1 MiB of the idle RSS on a warm start
    (docs/decisions/0027-edge-budget.md). Where the C library has no ``malloc_trim`` (musl,
    Android's bionic) nothing happens.

    Returns:
        Whether the C library had it.
    """
    import ctypes  # loaded already: trio's thread cache uses it

    try:
        trim = ctypes.CDLL(None).malloc_trim
    except (OSError, AttributeError):
        return False
    trim.argtypes = [ctypes.c_size_t]
    trim.restype = ctypes.c_int
    trim(0)
    return True


def store_for(config: Config, components: Sequence[Component] | None = None) -> Store:
    """The (not yet started) store of ``config``, its data directory made private (0700).

    Args:
        components: whose migrations the store applies besides the kernel's; by default the
            installed ones.
    """
    data_dir = config.data_dir_path
    data_dir.mkdir(parents=True, exist_ok=True)
    os.chmod(data_dir, 0o700)
    db = config.database
    return Store(
        config.database_url,
        sqlite_synchronous=db.sqlite_synchronous,
        write_batch_max=db.write_batch_max,
        read_pool_size=db.read_pool_size,
        busy_timeout=db.busy_timeout,
        migrations=[c.migrations for c in components or () if c.migrations],
    )


class Runtime:
    """One Vareon runtime.

    Args:
        config: the loaded configuration.
        components: the components to run; by default those installed under
            ``vareon.components``.
    """

    def __init__(self, config: Config, *, components: Sequence[Component] | None = None) -> None:
        self.config = config
        self.components = list(components) if components is not None else discover_components()
        self._stop = trio.Event()
        self.context: RuntimeContext | None = None

    @property
    def root(self) -> Supervisor:
        """The root supervisor (available once started)."""
        if self.context is None or self.context.root is None:
            raise RuntimeError("the runtime has not started")
        return self.context.root

    def stop(self) -> None:
        """Ask the runtime to stop cleanly; :meth:`run` returns once everything has stopped."""
        self._stop.set()

    async def run(self, *, task_status: trio.TaskStatus[Runtime] = trio.TASK_STATUS_IGNORED) -> None:
        """Boot, report started, run until :meth:`stop`, then stop everything in reverse.

        Raises:
            RestartIntensityError: the root supervisor gave up (a module kept crashing).
            StoreError: the database could not be opened or migrated.
            ConfigError: the JWT key file is unusable, or ``[auth] bootstrap_admin`` is set
                without its password variable.
        """
        config = self.config
        data_dir = config.data_dir_path
        store = store_for(config, self.components)
        # Imported here: argon2 and PyJWT are not needed by `vareon init` or `vareon --help`.
        from .auth import Auth

        auth = Auth(config, store)  # reads or generates the JWT key; no I/O on the database yet
        bus = EventBus()
        registry = Registry()
        context = RuntimeContext(
            config=config,
            store=store,
            bus=bus,
            registry=registry,
            version=__version__,
            auth=auth,
            components=tuple(self.components),
        )
        self.context = context

        async with trio.open_nursery() as nursery:
            await nursery.start(store.run)
            try:
                # Accounts before components: a module may rely on its first admin existing.
                await auth.ensure_bootstrap_admin()
                root, children = self._build_root(context)
                context.root = root
                async with trio.open_nursery() as modules:
                    await modules.start(root.run)
                    log.info(
                        "runtime %s %s started: %d modules, data in %s",
                        config.runtime.name, __version__, len(children), data_dir,
                    )
                    settle_collector()
                    task_status.started(self)
                    await self._stop.wait()
                    log.info("stopping")
                    await root.stop()  # root.run returns after stopping children in reverse
            finally:
                with trio.CancelScope(shield=True):
                    await store.close()
        log.info("stopped; %s", store.stats)

    def _build_root(self, context: RuntimeContext) -> tuple[Supervisor, list[ChildSpec]]:
        """Build the components' children and the root supervisor over them, in their order."""
        config = context.config
        children = [
            spec
            for spec in (c.build(context) for c in sorted(self.components, key=lambda c: (c.order, c.name)))
            if spec is not None
        ]
        sup = config.supervisor
        bus, store = context.bus, context.store
        kernel = [ChildSpec("journal", lambda: Journal(bus, store))]
        mailer = context.auth.mailer
        if mailer is not None:
            # Before the components, so it stops after them; the same object on every restart,
            # so the mails queued by the auth service survive a crash of the sender.
            kernel.append(ChildSpec("mailer", lambda: mailer))
        root = Supervisor(
            "root",
            [*kernel, *children],
            max_restarts=sup.max_restarts,
            period=sup.period,
            shutdown_timeout=config.runtime.shutdown_timeout,
            backoff=Backoff(sup.backoff_initial, sup.backoff_max),
            registry=context.registry,
            bus=bus,
        )
        return root, children


async def run_until_signal(runtime: Runtime) -> None:
    """Run ``runtime`` until SIGINT or SIGTERM, then stop it cleanly."""
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async with trio.open_nursery() as nursery:
            await nursery.start(runtime.run)
            async for signum in signals:
                log.info("received %s", signal.Signals(signum).name)
                runtime.stop()
                break
