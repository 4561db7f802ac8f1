"""Resources: a domain's persisted entities (agents, devices, tasks), one way for every domain.

- :class:`Resources` holds one table and its wire shape: :meth:`~Resources.get` (404 for an
  unknown id, an id that is not a UUID included), :meth:`~Resources.list` into one
  :class:`~actors.kit.wire.Page` with the declared filters, the row writes a face's
  ``create``/``update``/``delete`` are made of, per-id locks (so a delete never interleaves
  with an update of the same entity), and the announcements on ``<noun>.<id>.created`` /
  ``.updated`` / ``.deleted`` that dashboards and the 3D scene follow.
- :class:`EntityActors` holds an actor per entity under the domain's supervisor
  (``<noun>/<id>`` in the registry): started at boot, started again when a request finds it
  failed, released (its link closed, its process stopped) and removed with its entity.

A domain's face derives from :class:`Resources` and writes only what is its own: which checks
a create makes, what an update replaces. The web front turns a face into routes with
:func:`web.kit.resource_routes`.
"""

from __future__ import annotations

import enum
import logging
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, ClassVar, Generic, TypeVar

import trio
from pydantic import BaseModel
from sqlalchemy import ColumnElement, Executable, Select, delete, func, insert, select, update
from sqlalchemy.orm import InstrumentedAttribute, Session

from vareon_runtime.actor import Actor, ActorRef
from vareon_runtime.bus import EventBus
from vareon_runtime.errors import (
    ActorStoppedError,
    AskTimeoutError,
    ConflictError,
    DuplicateChildError,
    NotFoundError,
    UnavailableError,
    UnknownChildError,
)
from vareon_runtime.messages import Message
from vareon_runtime.store import Store
from vareon_runtime.supervisor import ChildSpec, ChildStatus, Restart, Supervisor

from .parsing import check_page, enum_value, parse_id
from .wire import Page

__all__ = ["EntityActors", "Filter", "KeyedLocks", "Resources"]

log = logging.getLogger("vareon.kit.resources")

T = TypeVar("T")


class KeyedLocks:
    """A :class:`trio.Lock` per key, made on first use."""

    def __init__(self) -> None:
        self._locks: dict[str, trio.Lock] = {}

    def __call__(self, key: str) -> trio.Lock:
        lock = self._locks.get(key)
        if lock is None:
            lock = self._locks[key] = trio.Lock()
        return lock

    def forget(self, key: str) -> None:
        """Drop the lock of a key that is gone (a deleted entity)."""
        lock = self._locks.get(key)
        if lock is not None and not lock.locked():
            del self._locks[key]


@dataclass(frozen=True)
class Filter:
    """A list filter: the column it compares, and the enum its value must be one of (or None)."""

    column: InstrumentedAttribute[Any]
    values: type[enum.Enum] | None = None

    def where(self, value: Any) -> ColumnElement[bool]:
        if isinstance(value, bool):
            return self.column.is_(value)
        if self.values is not None:
            value = enum_value(self.values, value, what=self.column.key).value
        elif isinstance(value, enum.Enum):
            value = value.value
        return self.column == value


class Resources(Generic[T]):
    """One table of a domain's entities (see the module docstring).

    A subclass sets the class attributes; it overrides :meth:`wire` when its wire shape is more
    than :attr:`item` read from the row.
    """

    noun: ClassVar[str]
    """What one entity is called: ``agent``; its events are ``agent.<id>.<change>``."""

    title: ClassVar[str]
    """What the web front calls the module when it is not running (``Myntrix module``)."""

    record: ClassVar[type[Any]]
    """The ORM class of the table; it has ``id`` and ``created_at``."""

    item: ClassVar[type[BaseModel]]
    """The wire model of one entity, read from a row's attributes."""

    filters: ClassVar[Mapping[str, Filter]] = {}
    """The filters :meth:`list` takes, by name."""

    actors: EntityActors | None = None
    """The entities' actors, for a domain with an actor per entity."""

    def __init__(self, store: Store, bus: EventBus) -> None:
        self.store = store
        self.bus = bus
        self.locks = KeyedLocks()

    # ------------------------------------------------------------------ the domain's part

    def wire(self, row: Any) -> T:
        """The wire shape of a row (runs in the store's thread): :attr:`item` of its attributes."""
        return self.item.model_validate(row)  # type: ignore[return-value]

    def query(self) -> Select[Any]:
        """The select a read starts from (a subclass may join what its wire shape needs)."""
        return select(self.record)

    def shape(self, items: list[T]) -> list[T]:
        """Finish what was read, outside the store's thread (the live ``lastSeen``)."""
        return items

    # ------------------------------------------------------------------ reads

    async def get(self, entity_id: str) -> T:
        """One entity.

        Raises:
            NotFoundError: none has that id (an id that is not a UUID included).
        """
        entity_id = parse_id(entity_id, self.noun)
        record = self.record

        def read(session: Session) -> T | None:
            row = session.execute(self.query().where(record.id == entity_id)).first()
            return self.wire(row[0] if len(row) == 1 else row) if row is not None else None

        found = await self.store.read(read)
        if found is None:
            raise NotFoundError(f"no {self.noun} has the id {entity_id!r}")
        return self.shape([found])[0]

    async def list(self, *, limit: int = 50, offset: int = 0, **filters: Any) -> Page[T]:
        """A page of entities, oldest first, and how many match in all.

        Raises:
            InvalidRequestError: ``limit`` outside 1..500, ``offset`` outside 0..OFFSET_MAX, a filter value
                that is not one of the known ones.
            TypeError: a filter this resource does not have (a bug of the caller).
        """
        check_page(limit, offset)
        conditions = []
        for name, value in filters.items():
            if name not in self.filters:
                raise TypeError(f"{type(self).__name__}.list() has no filter {name!r}; it has {sorted(self.filters)}")
            if value is not None:
                conditions.append(self.filters[name].where(value))
        record = self.record

        def page(session: Session) -> Page[T]:
            rows = session.execute(
                self.query().where(*conditions).order_by(record.created_at, record.id).limit(limit).offset(offset)
            ).all()
            total = session.scalar(select(func.count()).select_from(record).where(*conditions)) or 0
            return Page([self.wire(row[0] if len(row) == 1 else row) for row in rows], total)

        found = await self.store.read(page)
        return Page(self.shape(found.items), found.total)

    async def ids(self) -> list[str]:
        """Every entity's id, oldest first (to start their actors at boot)."""
        record = self.record

        def read(session: Session) -> list[str]:
            return list(session.scalars(select(record.id).order_by(record.created_at, record.id)).all())

        return await self.store.read(read)

    # ------------------------------------------------------------------ writes

    def new_id(self) -> str:
        """A fresh id."""
        return str(uuid.uuid4())

    async def insert(self, values: Mapping[str, Any]) -> None:
        """Add the row ``values`` (its ``id`` included)."""
        record = self.record

        def write(session: Session) -> None:
            session.add(record(**values))

        await self.store.write(write)

    async def insert_many(self, rows: Sequence[Mapping[str, Any]]) -> None:
        """Add the rows (each with its ``id`` and the same columns) in one transaction: one
        ``executemany`` insert, not a unit of work per row."""
        table = self.record.__table__
        batch = list(rows)

        def write(session: Session) -> None:
            session.connection().execute(insert(table), batch)

        try:
            await self.store.write(write)
        finally:
            # The store may hold its last write's function until its next write: let go of the
            # rows now rather than keep them (and what they hold) until then.
            batch.clear()

    async def change(self, entity_id: str, values: Mapping[str, Any]) -> None:
        """Set ``values`` on one row."""
        record = self.record

        def write(session: Session) -> None:
            session.execute(update(record).where(record.id == entity_id).values(**values))

        await self.store.write(write)

    async def remove(self, entity_id: str, *also: Executable) -> None:
        """Delete one row, after the statements ``also`` (its dependents) in the same transaction."""
        record = self.record

        def write(session: Session) -> None:
            for statement in also:
                session.execute(statement)
            session.execute(delete(record).where(record.id == entity_id))

        await self.store.write(write)

    async def rewrite(
        self,
        entity_id: str,
        values: Mapping[str, Any],
        *,
        release: Message | None = None,
        release_timeout: float = 10.0,
        tell: Message | None = None,
    ) -> T:
        """Write ``values`` to an entity's row (its lock held by the caller), then announce it
        updated and answer it.

        Args:
            release: the entity's actor reads its row when it starts, and the change is one it
                must start again for (a new configuration): it is asked ``release`` (let go of
                its process, its link), removed, and started again once the row is written.
            tell: otherwise, asked of the running actor (a new name to show); None: nothing.
        """
        actors = self.actors
        if release is not None and actors is not None:
            await actors.release(entity_id, release, timeout=release_timeout)
            await self.change(entity_id, values)
            await actors.start(entity_id)
        else:
            await self.change(entity_id, values)
            if tell is not None and actors is not None:
                await actors.ask(entity_id, tell, timeout=release_timeout, locked=True)
        return self.announce("updated", await self.get(entity_id))

    @asynccontextmanager
    async def locked(self, entity_id: str) -> AsyncIterator[str]:
        """Hold the entity's lock (its id checked; yields the canonical id)."""
        entity_id = parse_id(entity_id, self.noun)
        async with self.locks(entity_id):
            yield entity_id

    # ------------------------------------------------------------------ events

    def announce(self, change: str, item: T) -> T:
        """Publish ``item`` as written on ``<noun>.<id>.<change>`` (created, updated)."""
        data = item.model_dump(mode="json", by_alias=True)  # type: ignore[attr-defined]
        self.bus.publish(f"{self.noun}.{data['id']}.{change}", data)
        return item

    def announce_deleted(self, entity_id: str) -> None:
        """Publish ``<noun>.<id>.deleted``."""
        self.locks.forget(entity_id)
        self.bus.publish(f"{self.noun}.{entity_id}.deleted", {"id": entity_id})


@dataclass(eq=False)
class EntityActors:
    """An actor per entity under a domain's supervisor (see the module docstring).

    Attributes:
        supervisor: the domain's supervisor (it registers each actor as ``<noun>/<id>``).
        noun: what an entity is called.
        actor: makes an entity's actor from its id (again on each restart).
        locks: the per-entity locks of the domain's :class:`Resources` (starting an actor never
            interleaves with a delete or an update of its entity).
        shutdown: seconds an actor may take to stop, or how to find them from the entity's id
            (an agent's depends on its stop timeout).
        max_restarts, period: how often an actor may crash within the period before its
            supervisor marks it failed (a request starts it again).
    """

    supervisor: Supervisor
    noun: str
    actor: Callable[[str], Actor]
    locks: KeyedLocks
    shutdown: float | Callable[[str], Awaitable[float]] = 10.0
    max_restarts: int = 5
    period: float = 60.0

    async def spec(self, entity_id: str) -> ChildSpec:
        """The child spec of an entity's actor (``permanent``: it runs as long as its entity)."""
        shutdown = self.shutdown if isinstance(self.shutdown, (int, float)) else await self.shutdown(entity_id)
        return ChildSpec(
            self.name(entity_id),
            lambda: self.actor(entity_id),
            restart=Restart.PERMANENT,
            shutdown=shutdown,
            max_restarts=self.max_restarts,
            period=self.period,
        )

    def name(self, entity_id: str) -> str:
        """The actor's name: ``<noun>/<id>``."""
        return f"{self.noun}/{entity_id}"

    async def start(self, entity_id: str) -> ActorRef:
        """Start the actor of an entity whose row exists.

        Raises:
            ConflictError: its actor exists (another request is changing the entity).
        """
        try:
            ref = await self.supervisor.start_child(await self.spec(entity_id))
        except DuplicateChildError as exc:
            raise ConflictError(f"{self.noun} {entity_id} is being changed by another request; try again") from exc
        assert isinstance(ref, ActorRef)
        return ref

    async def boot(self, ids: Iterable[str]) -> None:
        """Start the actor of each entity; one that fails to start does not keep the others down
        (a request starts it again)."""
        for entity_id in ids:
            try:
                await self.start(entity_id)
            except Exception:
                log.exception("%s %s: its actor did not start", self.noun, entity_id)

    async def ref(self, entity_id: str) -> ActorRef:
        """The entity's actor, started again if it failed or never started."""
        async with self.locks(entity_id):
            return await self.ref_locked(entity_id)

    async def ref_locked(self, entity_id: str) -> ActorRef:
        """:meth:`ref` for a caller that holds the entity's lock."""
        name = self.name(entity_id)
        try:
            info = self.supervisor.child(name)
        except UnknownChildError:
            return await self.start(entity_id)
        if info.status in (ChildStatus.FAILED, ChildStatus.STOPPED):
            ref = await self.supervisor.restart_child(name)
            assert isinstance(ref, ActorRef)
            return ref
        return self.supervisor.ref(name)

    async def ask(self, entity_id: str, message: Message, *, timeout: float, locked: bool = False) -> Any:
        """Ask the entity's actor (started again if need be).

        Raises:
            UnavailableError: the actor did not answer in time, or stopped meanwhile.
            ServiceError: the actor refused (its own error).
        """
        ref = await (self.ref_locked(entity_id) if locked else self.ref(entity_id))
        try:
            return await ref.ask(message, timeout=timeout)
        except (AskTimeoutError, ActorStoppedError) as exc:
            raise UnavailableError(f"the {self.noun}'s actor is not answering ({exc}); try again") from exc

    async def release(self, entity_id: str, message: Message, *, timeout: float) -> None:
        """Ask the actor to let go of what it holds (``message``), then remove it. An actor
        that is not running, or stuck, is removed all the same (deleting stops it)."""
        name = self.name(entity_id)
        if name not in self.supervisor:
            return
        try:
            await self.supervisor.ref(name).ask(message, timeout=timeout)
        except (ActorStoppedError, UnknownChildError, AskTimeoutError):
            pass
        await self.supervisor.delete_child(name)
