"""``Keyed``: things registered under string keys, the plug-in point every domain uses the same way.

Device link drivers by URL scheme, task actions by kind, and (as their domains arrive) workflow
step kinds, LLM providers and pipeline modules are each one :class:`Keyed` registry. Two rules
hold for all of them:

- **A duplicate key is refused** (:class:`~vareon_runtime.errors.DuplicateKeyError`): two
  plug-ins claiming one name is a bug to see at import, not a coin toss at run time.
- **An unknown key is a 422 that names the known ones**
  (:class:`~vareon_runtime.errors.UnknownKeyError`, or the registry's own subclass of it), so a
  user who misspelt ``tcp`` reads what would have worked.

An entry can be registered lazily, as a zero-argument factory or a ``"module:attribute"`` path
called on first use, so that an edge box without MQTT devices never imports the MQTT client.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from importlib import import_module
from typing import Generic, TypeVar

from .errors import DuplicateKeyError, UnknownKeyError

__all__ = ["Keyed"]

T = TypeVar("T")


def _split_path(path: str) -> tuple[str, str]:
    module, _, attribute = path.partition(":")
    if not module or not attribute:
        raise ValueError(f"a lazy entry is 'module:attribute', not {path!r}")
    return module, attribute


def _resolve(path: str) -> Callable[[], object]:
    module, attribute = _split_path(path)
    found: Callable[[], object] = getattr(import_module(module), attribute)
    return found


class Keyed(Generic[T]):
    """Entries of one kind under string keys.

    Args:
        what: what an entry is, for messages ("link driver", "task action").
        field: the request field that holds the key (``action``), put in an unknown key's details.
        unknown: builds the error for an unknown key from ``(key, known keys)``; by default an
            :class:`~vareon_runtime.errors.UnknownKeyError` saying "no <what> is registered as ...".
        check_key: refuses a malformed key at registration (raise ``ValueError``).
    """

    def __init__(
        self,
        what: str,
        *,
        field: str | None = None,
        unknown: Callable[[str, list[str]], UnknownKeyError] | None = None,
        check_key: Callable[[str], None] | None = None,
    ) -> None:
        self.what = what
        self.field = field
        self._unknown = unknown
        self._check_key = check_key
        self._entries: dict[str, T] = {}
        self._lazy: dict[str, Callable[[], T] | str] = {}

    def __repr__(self) -> str:
        return f"<Keyed {self.what}: {', '.join(self.keys()) or 'empty'}>"

    def register(self, key: str, entry: T) -> None:
        """Add ``entry`` under ``key``.

        Raises:
            DuplicateKeyError: the key is taken.
            ValueError: ``check_key`` refuses the key.
        """
        self._claim(key)
        self._entries[key] = entry

    def register_lazy(self, key: str, load: Callable[[], T] | str) -> None:
        """Add an entry made on first use by ``load``: a zero-argument factory, or the
        ``"module:attribute"`` path of one (so not even its module is imported before then).

        Raises:
            DuplicateKeyError: the key is taken.
            ValueError: ``check_key`` refuses the key, or ``load`` is a string that is not a
                ``"module:attribute"`` path.
        """
        if isinstance(load, str):
            _split_path(load)
        self._claim(key)
        self._lazy[key] = load

    def _claim(self, key: str) -> None:
        if not isinstance(key, str) or not key:
            raise ValueError(f"a {self.what} key is a non-empty string, not {key!r}")
        if self._check_key is not None:
            self._check_key(key)
        if key in self._entries or key in self._lazy:
            held = self._entries.get(key, self._lazy.get(key))
            raise DuplicateKeyError(f"a {self.what} is already registered as {key!r} ({held!r})")

    def __getitem__(self, key: str) -> T:
        """The entry of ``key`` (made now if it was registered lazily).

        Raises:
            UnknownKeyError: no entry has that key (422, naming the known ones).
        """
        try:
            return self._entries[key]
        except (KeyError, TypeError):
            pass
        load = self._lazy.get(key) if isinstance(key, str) else None
        if load is None:
            raise self.unknown(str(key))
        factory = _resolve(load) if isinstance(load, str) else load
        entry: T = factory()  # type: ignore[assignment]
        self._entries[key] = entry
        del self._lazy[key]
        return entry

    def unknown(self, key: str) -> UnknownKeyError:
        """The error for an unknown ``key``."""
        known = self.keys()
        if self._unknown is not None:
            return self._unknown(key, known)
        return UnknownKeyError(
            f"no {self.what} is registered as {key!r}; known: {', '.join(known) or 'none'}",
            key=key,
            known=known,
            field=self.field,
        )

    def keys(self) -> list[str]:
        """The keys, sorted (lazy entries included, without loading them)."""
        return sorted({*self._entries, *self._lazy})

    def __contains__(self, key: object) -> bool:
        return key in self._entries or key in self._lazy

    def __iter__(self) -> Iterator[str]:
        return iter(self.keys())

    def __len__(self) -> int:
        return len(self._entries) + len(self._lazy)
