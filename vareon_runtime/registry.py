"""Actors addressed by name (``agent/<uuid>``, ``device/<uuid>``, ``scheduler``)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator

from .actor import ActorRef
from .errors import NameTakenError, NotRegisteredError

__all__ = ["Registry"]


class Registry:
    """A name -> :class:`ActorRef` map in which a taken name cannot be registered twice."""

    def __init__(self) -> None:
        self._refs: dict[str, ActorRef] = {}

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
