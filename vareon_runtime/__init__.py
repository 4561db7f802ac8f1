"""Vareon Runtime kernel: actors, supervision, registry, event bus, store, config, boot.

The layers above (``drivers``, ``actors``, ``web``) import from here; this package imports none of
them (they plug in through entry points, see :mod:`vareon_runtime.component`).
"""

from __future__ import annotations

from .version import __version__ as __version__

from .actor import DEFAULT_ASK_TIMEOUT as DEFAULT_ASK_TIMEOUT
from .actor import Actor as Actor
from .actor import ActorRef as ActorRef
from .actor import handles as handles
from .bus import Event as Event
from .bus import EventBus as EventBus
from .bus import Overflow as Overflow
from .bus import Subscription as Subscription
from .clock import isoformat as isoformat
from .clock import utcnow as utcnow
from .component import Component as Component
from .component import RuntimeContext as RuntimeContext
from .config import Config as Config
from .config import load_config as load_config
from .errors import *  # noqa: F403  (the error hierarchy is part of the face)
from .errors import __all__ as _error_names
from .messages import Message as Message
from .registry import Registry as Registry
from .runtime import Runtime as Runtime
from .store import Store as Store
from .supervisor import Backoff as Backoff
from .supervisor import ChildInfo as ChildInfo
from .supervisor import ChildSpec as ChildSpec
from .supervisor import ChildStatus as ChildStatus
from .supervisor import Restart as Restart
from .supervisor import Strategy as Strategy
from .supervisor import Supervisor as Supervisor

__all__ = [
    "DEFAULT_ASK_TIMEOUT",
    "Actor",
    "ActorRef",
    "Backoff",
    "ChildInfo",
    "ChildSpec",
    "ChildStatus",
    "Component",
    "Config",
    "Event",
    "EventBus",
    "Message",
    "Overflow",
    "Registry",
    "Restart",
    "Runtime",
    "RuntimeContext",
    "Store",
    "Strategy",
    "Subscription",
    "Supervisor",
    "__version__",
    "handles",
    "isoformat",
    "load_config",
    "utcnow",
    *_error_names,
]
