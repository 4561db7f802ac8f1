"""Components: how the layers above the kernel plug into a runtime without being imported by it.

A component is a callable ``(RuntimeContext) -> Component | None`` published under the entry
point group ``vareon.components`` (``None`` when its config disables it). The runtime starts the
components' child specs under its root supervisor in ``order`` (lower first) and stops them in
reverse, so the web front (a high order) starts last and stops first.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from importlib.metadata import entry_points
from typing import TYPE_CHECKING

from .bus import EventBus
from .clock import utcnow
from .config import Config
from .errors import ConfigError
from .registry import Registry
from .supervisor import ChildSpec

if TYPE_CHECKING:
    from .auth import Auth
    from .store import Store
    from .supervisor import Supervisor

__all__ = ["COMPONENT_GROUP", "Component", "ComponentFactory", "RuntimeContext", "discover_components"]

COMPONENT_GROUP = "vareon.components"


@dataclass
class RuntimeContext:
    """What every component gets: the shared kernel services of one runtime."""

    config: Config
    store: Store
    bus: EventBus
    registry: Registry
    version: str
    auth: Auth
    started_at: datetime = field(default_factory=utcnow)
    started_monotonic: float = field(default_factory=time.monotonic)
    root: Supervisor | None = None


@dataclass(frozen=True)
class Component:
    """One module of the runtime (myntrix, web, ...) as a child of the root supervisor."""

    spec: ChildSpec
    order: int = 100


ComponentFactory = Callable[[RuntimeContext], "Component | None"]


def discover_components() -> list[ComponentFactory]:
    """Load every factory published under ``vareon.components``, sorted by entry point name.

    Raises:
        ConfigError: an entry point cannot be loaded (a broken install).
    """
    factories: list[ComponentFactory] = []
    for point in sorted(entry_points(group=COMPONENT_GROUP), key=lambda p: p.name):
        try:
            factories.append(point.load())
        except Exception as exc:
            raise ConfigError(
                f"component {point.name!r} ({point.value}) failed to load: {exc}; "
                "reinstall the package (pip install -e .)"
            ) from exc
    return factories
