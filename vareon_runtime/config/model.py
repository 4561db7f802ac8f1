"""``Config``: the whole configuration, the kernel's sections plus those the components declare.

:class:`Config` itself holds the kernel's sections. The model a runtime validates its file with
adds one attribute per component section (``config.myntrix``): :meth:`Config.with_sections`
builds it from the :class:`~vareon_runtime.component.ConfigSection` declarations, once per set of
sections. A component reads its own section, typed, with :meth:`Config.section`.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar, TypeVar

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, create_model

from ..component import ConfigSection
from .sections import (
    AuthConfig,
    DatabaseConfig,
    EmailConfig,
    OutboundConfig,
    RuntimeConfig,
    ServerConfig,
    SupervisorConfig,
)

__all__ = ["Config"]

M = TypeVar("M", bound=BaseModel)

_MODELS: dict[tuple[ConfigSection, ...], type[Config]] = {}


class Config(BaseModel):
    """The whole configuration: one attribute per ``config.toml`` section."""

    model_config = ConfigDict(extra="forbid")

    runtime: RuntimeConfig = Field(
        default_factory=RuntimeConfig, description="The process: name, data, logs, stopping."
    )
    server: ServerConfig = Field(
        default_factory=ServerConfig, description="The embedded HTTP and WebSocket server."
    )
    database: DatabaseConfig = Field(
        default_factory=DatabaseConfig,
        description="Storage: SQLite in the data directory by default, or PostgreSQL.",
    )
    supervisor: SupervisorConfig = Field(
        default_factory=SupervisorConfig,
        description="Default restart policy of the domain supervisors.",
    )
    auth: AuthConfig = Field(
        default_factory=AuthConfig, description="Accounts, tokens and login protection."
    )
    email: EmailConfig = Field(
        default_factory=EmailConfig, description="Outgoing mail for account verification."
    )
    outbound: OutboundConfig = Field(
        default_factory=OutboundConfig,
        description="Outbound calls users aim (api tasks, and HTTP calls of the domains to come): where they may go.",
    )

    component_sections: ClassVar[tuple[ConfigSection, ...]] = ()
    """The sections the components of this model declared, in their order."""

    # Absolute path of the file this was loaded from; None for defaults or a model built in code.
    _source: Path | None = PrivateAttr(default=None)

    @classmethod
    def with_sections(cls, sections: Sequence[ConfigSection]) -> type[Config]:
        """The model of a configuration with the kernel's sections and ``sections``.

        Raises:
            ValueError: a section takes a kernel section's name.
        """
        key = tuple(sections)
        if not key:
            return Config
        found = _MODELS.get(key)
        if found is not None:
            return found
        fields: dict[str, Any] = {}
        for section in key:
            if section.name in Config.model_fields:
                raise ValueError(f"[{section.name}] is a kernel section; a component cannot declare it")
            fields[section.name] = (section.model, Field(default_factory=section.model, description=section.description))
        model = create_model("Config", __base__=Config, __module__=__name__, **fields)
        model.component_sections = key
        _MODELS[key] = model
        return model

    @classmethod
    def section_models(cls) -> dict[str, type[BaseModel]]:
        """Every section of this model by name: the kernel's, then the components'."""
        models: dict[str, type[BaseModel]] = {}
        for name, info in cls.model_fields.items():
            assert isinstance(info.annotation, type) and issubclass(info.annotation, BaseModel)
            models[name] = info.annotation
        return models

    def section(self, model: type[M]) -> M:
        """The values of the component section whose model is ``model``.

        A configuration built without that component's declaration (a test's, or code's)
        answers the model's defaults, which are valid by construction.
        """
        for section in type(self).component_sections:
            if section.model is model:
                value = getattr(self, section.name)
                assert isinstance(value, model)
                return value
        return model()

    @property
    def source_path(self) -> Path | None:
        """The absolute path of the config file this was loaded from, or None."""
        return self._source

    @property
    def data_dir_path(self) -> Path:
        """The data directory as an absolute path.

        A relative ``data_dir`` is resolved against the config file's directory, or against the
        current directory when the configuration did not come from a file.
        """
        base = self._source.parent if self._source is not None else Path.cwd()
        return (base / self.runtime.data_dir.expanduser()).resolve()

    @property
    def database_url(self) -> str:
        """The configured database URL, or the SQLite file ``vareon.db`` in the data directory."""
        if self.database.url is not None:
            return self.database.url
        return f"sqlite:///{(self.data_dir_path / 'vareon.db').as_posix()}"
