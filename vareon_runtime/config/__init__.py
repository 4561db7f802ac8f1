"""The runtime's configuration: ``config.toml`` plus ``VAREON_<SECTION>_<KEY>`` overrides.

- :mod:`~vareon_runtime.config.sections`: the kernel's sections (``[runtime]``, ``[server]``,
  ``[database]``, ``[supervisor]``, ``[auth]``, ``[email]``, ``[outbound]``);
- :mod:`~vareon_runtime.config.model`: :class:`Config`, the whole, with the sections the
  components declare (:meth:`Config.section` reads one);
- :mod:`~vareon_runtime.config.loading`: :func:`load_config`, errors that name the file or the
  variable and the key;
- :mod:`~vareon_runtime.config.toml`: :func:`render_default_config` and
  :func:`write_default_config` (``vareon init``).
"""

from vareon_runtime.config.loading import config_model as config_model
from vareon_runtime.config.loading import load_config as load_config
from vareon_runtime.config.model import Config as Config
from vareon_runtime.config.sections import ENV_PREFIX as ENV_PREFIX
from vareon_runtime.config.sections import JWT_SECRET_MIN_LENGTH as JWT_SECRET_MIN_LENGTH
from vareon_runtime.config.sections import MIB as MIB
from vareon_runtime.config.sections import AuthConfig as AuthConfig
from vareon_runtime.config.sections import DatabaseConfig as DatabaseConfig
from vareon_runtime.config.sections import EmailConfig as EmailConfig
from vareon_runtime.config.sections import OutboundConfig as OutboundConfig
from vareon_runtime.config.sections import RuntimeConfig as RuntimeConfig
from vareon_runtime.config.sections import ServerConfig as ServerConfig
from vareon_runtime.config.sections import SupervisorConfig as SupervisorConfig
from vareon_runtime.config.toml import render_default_config as render_default_config
from vareon_runtime.config.toml import write_default_config as write_default_config

__all__ = [
    "ENV_PREFIX",
    "JWT_SECRET_MIN_LENGTH",
    "MIB",
    "AuthConfig",
    "Config",
    "DatabaseConfig",
    "EmailConfig",
    "OutboundConfig",
    "RuntimeConfig",
    "ServerConfig",
    "SupervisorConfig",
    "config_model",
    "load_config",
    "render_default_config",
    "write_default_config",
]
