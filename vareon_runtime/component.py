"""Components: how the layers above the kernel plug into a runtime without being imported by it.

A component is a :class:`Component` declaration published under the entry point group
``vareon.components`` (``agents = "actors.myntrix.agents.component:component"``). It declares, in one
place, everything the kernel needs to know of it:

- ``build``: its child of the root supervisor (a :class:`~vareon_runtime.supervisor.ChildSpec`),
  or None when its configuration disables it;
- ``order``: lower starts first and stops last (the domains before the web front);
- ``config``: its section of ``config.toml`` (a :class:`ConfigSection`), which ``load_config``
  validates, ``VAREON_<SECTION>_<KEY>`` overrides and ``vareon init`` writes with its comments;
- ``migrations``: the package holding its Alembic revisions, applied by the store at start.

Its routes are the web front's business: a web module publishes its blueprint under
``vareon.routes`` (the web layer may import the domains; nothing here imports the web).

A declaration module should stay light (a config model, the kernel): it is imported to read the
configuration, also by ``vareon init``; ``build`` imports the domain's actors when the runtime
starts it.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from importlib.metadata import entry_points
from typing import TYPE_CHECKING

from pydantic import BaseModel

from .bus import EventBus
from .clock import utcnow
from .errors import ConfigError
from .registry import Registry
from .supervisor import ChildSpec

if TYPE_CHECKING:
    from .auth import Auth
    from .config import Config
    from .store import Store
    from .supervisor import Supervisor

__all__ = [
    "COMPONENT_GROUP",
    "Component",
    "ConfigSection",
    "RuntimeContext",
    "config_sections",
    "discover_components",
]

COMPONENT_GROUP = "vareon.components"


@dataclass(frozen=True)
class ConfigSection:
    """A component's section of ``config.toml``.

    Attributes:
        name: the ``[name]`` of the section (and the ``<SECTION>`` of its variables).
        model: its pydantic model; each field's ``description`` is the comment above the key.
        description: the comment above the section header.

    Several components may declare the same section (the three Myntrix components share
    ``[myntrix]``) as long as they declare the same model.
    """

    name: str
    model: type[BaseModel]
    description: str


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
    components: tuple[Component, ...] = ()


@dataclass(frozen=True)
class Component:
    """One part of the runtime (a domain, the web front) as a child of the root supervisor.

    Attributes:
        name: its name under the root supervisor (and its entry point's name).
        build: its child, from the runtime's context; None when the configuration disables it.
        order: lower starts first and stops last.
        config: its section of ``config.toml``, if it has one.
        migrations: the importable package holding its Alembic revisions, if it has tables.
    """

    name: str
    build: Callable[[RuntimeContext], ChildSpec | None]
    order: int = 100
    config: ConfigSection | None = None
    migrations: str | None = None


def discover_components() -> list[Component]:
    """Every component published under ``vareon.components``, sorted by entry point name.

    Raises:
        ConfigError: an entry point cannot be loaded (a broken install), is not a
            :class:`Component`, does not carry its entry point's name, or takes a name another
            one has.
    """
    components: list[Component] = []
    seen: dict[str, str] = {}
    for point in sorted(entry_points(group=COMPONENT_GROUP), key=lambda p: p.name):
        if point.name in seen:
            raise ConfigError(
                f"two components are named {point.name!r} ({seen[point.name]} and {point.value}); rename one of them"
            )
        seen[point.name] = point.value
        try:
            loaded = point.load()
        except Exception as exc:
            raise ConfigError(
                f"component {point.name!r} ({point.value}) failed to load: {exc}; "
                "reinstall the package (pip install -e .)"
            ) from exc
        if not isinstance(loaded, Component):
            raise ConfigError(
                f"component entry point {point.name!r} ({point.value}) names a"
                f" {type(loaded).__name__}, not a vareon_runtime.component.Component"
            )
        if loaded.name != point.name:
            raise ConfigError(
                f"component entry point {point.name!r} ({point.value}) declares the name"
                f" {loaded.name!r}; the two must agree"
            )
        components.append(loaded)
    return components


def config_sections(components: Iterable[Component], *, reserved: Sequence[str] = ()) -> list[ConfigSection]:
    """The config sections ``components`` declare, each once, in the components' order.

    Raises:
        ConfigError: two components declare one section with different models, or a section
            takes a name in ``reserved`` (the kernel's own).
    """
    found: dict[str, tuple[ConfigSection, str]] = {}
    for component in sorted(components, key=lambda c: (c.order, c.name)):
        section = component.config
        if section is None:
            continue
        if section.name in reserved:
            raise ConfigError(
                f"component {component.name!r} declares the section [{section.name}], which is the"
                " kernel's own; choose another name"
            )
        held = found.get(section.name)
        if held is not None and held[0].model is not section.model:
            raise ConfigError(
                f"components {held[1]!r} and {component.name!r} both declare [{section.name}] with"
                f" different models ({held[0].model.__name__}, {section.model.__name__})"
            )
        found.setdefault(section.name, (section, component.name))
    return [section for section, _ in found.values()]
