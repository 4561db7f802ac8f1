"""web layer of Vareon Runtime: the Quart-Trio front on Hypercorn (see docs/architecture.md).

The face is lazy: finding the ``web`` component (``vareon init``, ``vareon user``, the store
looking for every component's migrations) must not import Quart, Hypercorn and the routes; a
name below is imported from its module when first asked for.
"""

from __future__ import annotations

import importlib
import typing

if typing.TYPE_CHECKING:
    from web.app import create_app as create_app
    from web.component import component as component
    from web.permissions import public as public
    from web.permissions import requires as requires
    from web.permissions import websocket_auth as websocket_auth
    from web.server import WebServer as WebServer

_HOMES = {
    "create_app": "web.app",
    "component": "web.component",
    "public": "web.permissions",
    "requires": "web.permissions",
    "websocket_auth": "web.permissions",
    "WebServer": "web.server",
}

__all__ = sorted(_HOMES)


def __getattr__(name: str) -> typing.Any:
    """The public ``name``, imported from its module now (and kept).

    Raises:
        AttributeError: ``name`` is not one of :data:`__all__`.
    """
    try:
        home = _HOMES[name]
    except KeyError:
        raise AttributeError(f"module 'web' has no attribute {name!r}") from None
    value = getattr(importlib.import_module(home), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
