"""web layer of Vareon Runtime: the Quart-Trio front on Hypercorn (see docs/architecture.md)."""

from web.app import create_app as create_app
from web.component import component as component
from web.permissions import public as public
from web.permissions import requires as requires
from web.permissions import websocket_auth as websocket_auth
from web.server import WebServer as WebServer

__all__ = ["WebServer", "component", "create_app", "public", "requires", "websocket_auth"]
