"""``lazy_face``: a package's public names imported from their modules when first asked for.

A package whose face would otherwise import everything behind it (``drivers``: pyserial and
paho; ``web``: Quart, Hypercorn and every route) declares where each name lives and gets the
module ``__getattr__`` and ``__dir__`` of PEP 562 from here, so importing the package costs
nothing until a name is used.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any

__all__ = ["lazy_face"]


def lazy_face(
    package: str, homes: Mapping[str, str], namespace: dict[str, Any]
) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """The ``__getattr__`` and ``__dir__`` of ``package`` whose names live in ``homes``.

    Args:
        package: the package's name, for the error.
        homes: each lazily imported name and the module it lives in.
        namespace: the package's ``globals()``; a name imported is kept there, so the import
            runs once per name.

    Returns:
        ``__getattr__`` (raising ``AttributeError`` for a name not in ``homes``) and ``__dir__``.
    """

    def __getattr__(name: str) -> Any:
        try:
            home = homes[name]
        except KeyError:
            raise AttributeError(f"module {package!r} has no attribute {name!r}") from None
        value = getattr(importlib.import_module(home), name)
        namespace[name] = value
        return value

    def __dir__() -> list[str]:
        return sorted({*namespace, *namespace.get("__all__", ()), *homes})

    return __getattr__, __dir__
