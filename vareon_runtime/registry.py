"""Actors addressed by name (``agent/<uuid>``, ``device/<uuid>``, ``scheduler``), and the faces
of the running domains by type.

A *face* is the object a domain module offers the rest of the runtime (the web front, other
domains, the CLI): ``Agents``, ``Devices``, ``Tasks``, ``Jobs``. A module provides its face once
it has started and withdraws it when it stops, so ``registry.face(Agents)`` is a dictionary
lookup on every request, never an actor ask; and a module that is not running (not installed,
disabled, restarting) is a :class:`~vareon_runtime.errors.NotRegisteredError` the web front turns
into a 503.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from typing import TypeVar

from .actor import ActorRef
from .errors import NameTakenError, NotRegisteredError

__all__ = ["Registry"]

F = TypeVar("F")


class Registry:
    """A name -> :class:`ActorRef` map in which a taken name cannot be registered twice."""

    def __init__(self) -> None:
        self._refs: dict[str, ActorRef] = {}
        self._faces: dict[type, object] = {}

    def register(self, name: str, ref: ActorRef) -> None:
        """Register ``ref`` under ``name``.

        Raises:
            NameTakenError: the name is already registered.
        """
        if name in self._refs:
            raise NameTakenError(
                f"the name {name!r} is already registered to {self._refs[name]!r}; "
                "unregister it first or choose another name"
            )
        self._refs[name] = ref

    def unregister(self, name: str) -> None:
        """Forget ``name``.

        Raises:
            NotRegisteredError: nobody holds the name.
        """
        if self._refs.pop(name, None) is None:
            raise NotRegisteredError(f"no actor is registered as {name!r}")

    def lookup(self, name: str) -> ActorRef:
        """Return the ref registered under ``name``.

        Raises:
            NotRegisteredError: nobody holds the name.
        """
        try:
            return self._refs[name]
        except KeyError:
            raise NotRegisteredError(f"no actor is registered as {name!r}") from None

    def __contains__(self, name: object) -> bool:
        return name in self._refs

    def __iter__(self) -> Iterator[str]:
        return iter(list(self._refs))

    def __len__(self) -> int:
        return len(self._refs)

    def count_by_kind(self) -> dict[str, int]:
        """Live actors per kind: the part of the name before ``/`` (``agent/…`` -> ``agent``).

        A stopped or failed actor stays registered (a user can start it again) but is not live:
        only refs whose mailbox is open count.
        """
        return dict(Counter(name.split("/", 1)[0] for name, ref in self._refs.items() if ref.alive))

    # ------------------------------------------------------------------ faces

    def provide(self, face: object) -> None:
        """Offer ``face`` under its type until :meth:`withdraw`.

        Raises:
            NameTakenError: another object of that type is provided (two modules of one kind).
        """
        kind = type(face)
        held = self._faces.get(kind)
        if held is not None and held is not face:
            raise NameTakenError(f"a {kind.__name__} is already provided ({held!r}); withdraw it first")
        self._faces[kind] = face

    def withdraw(self, face: object) -> None:
        """Stop offering ``face`` (a later one of the same type, provided meanwhile, stays)."""
        if self._faces.get(type(face)) is face:
            del self._faces[type(face)]

    def face(self, kind: type[F]) -> F:
        """The provided object of type ``kind``.

        Raises:
            NotRegisteredError: none is provided (its module is not installed, disabled, or
                restarting).
        """
        try:
            found = self._faces[kind]
        except KeyError:
            raise NotRegisteredError(f"no {kind.__name__} is provided: its module is not running") from None
        assert isinstance(found, kind)
        return found
