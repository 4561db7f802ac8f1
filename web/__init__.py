"""web layer of Vareon Runtime: the Quart-Trio front on Hypercorn (see docs/architecture.md).

The face is lazy: finding the ``web`` component (``vareon init``, ``vareon user``, the store
looking for every component's migrations) must not import Quart, Hypercorn and the routes; a
name below is imported from its module when first asked for.
"""

from __future__ import annotations

import typing

from vareon_runtime.lazy import lazy_face as _lazy_face

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


__getattr__, __dir__ = _lazy_face(__name__, _HOMES, globals())
