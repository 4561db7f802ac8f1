"""Reading ``config.toml`` plus ``VAREON_<SECTION>_<KEY>`` overrides into a :class:`Config`.

The file is read with :mod:`tomllib` into pydantic models that forbid unknown keys, so a
misspelled key is an error naming the key and the file instead of a silently ignored line. The
sections are the kernel's and those of the installed components
(:func:`~vareon_runtime.component.discover_components`).

Secrets are never defaulted in code: ``[auth] jwt_secret`` unset means a key generated once and
kept in the data directory, and passwords (bootstrap admin, SMTP) are only read from the
environment variables the file names.
"""

from __future__ import annotations

import difflib
import os
import tomllib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from ..component import Component, config_sections, discover_components
from ..errors import ConfigError
from .model import Config
from .sections import ENV_PREFIX

__all__ = ["config_model", "load_config"]

Sections = Mapping[str, type[BaseModel]]


def config_model(components: Sequence[Component] | None = None) -> type[Config]:
    """The model of a configuration of ``components`` (the installed ones by default).

    Raises:
        ConfigError: a component cannot be loaded, or two declare one section differently.
    """
    found = discover_components() if components is None else components
    return Config.with_sections(config_sections(found, reserved=tuple(Config.model_fields)))


def _is_optional(model: type[BaseModel], key: str) -> bool:
    return model.model_fields[key].default is None


def _is_secret(sections: Sections, section: str, key: str) -> bool:
    model = sections.get(section)
    if model is None or key not in model.model_fields:
        return False
    return "SecretStr" in str(model.model_fields[key].annotation)


def _unknown_key_message(sections: Sections, section: str, key: str) -> str:
    known = list(sections[section].model_fields)
    message = f"unknown key {key!r} in [{section}]; known keys: {', '.join(known)}"
    close = difflib.get_close_matches(key, known, n=1)
    if key.endswith("password") and f"{key}_env" in known:
        message += f"; a password is read from the environment variable named by {key}_env"
    elif close:
        message += f"; did you mean {close[0]!r}?"
    return message


def _env_overrides(
    sections: Sections, environ: Mapping[str, str]
) -> dict[tuple[str, str], tuple[str, str | None]]:
    """Collect ``VAREON_<SECTION>_<KEY>`` variables of known sections.

    Returns:
        ``{(section, key): (variable name, value)}``; an empty value of a key that defaults to
        unset becomes None (unset).

    Raises:
        ConfigError: a variable names a known section but an unknown key.
    """
    overrides: dict[tuple[str, str], tuple[str, str | None]] = {}
    for name in sorted(environ):
        if not name.startswith(ENV_PREFIX):
            continue
        section, _, key = name[len(ENV_PREFIX) :].lower().partition("_")
        model = sections.get(section)
        if model is None:
            continue  # VAREON_MOCK_SYSTEM_METRICS and friends belong to other features
        if key not in model.model_fields:
            raise ConfigError(f"environment variable {name}: {_unknown_key_message(sections, section, key)}")
        value: str | None = environ[name]
        if value == "" and _is_optional(model, key):
            value = None
        overrides[(section, key)] = (name, value)
    return overrides


def _expected(err: Mapping[str, Any]) -> str:
    """Turn a pydantic error into the 'what was expected' half of a message."""
    kind = err["type"]
    ctx = err.get("ctx") or {}
    if kind == "literal_error":
        return f"one of {ctx['expected']}"
    msg: str = err["msg"]
    prefix = "Input should be "
    if msg.startswith(prefix):
        text = msg[len(prefix) :]
        if kind.endswith(("_parsing", "_type")):
            text = text.split(",")[0]  # drop pydantic's "unable to parse string as an integer"
        return text
    return msg[:1].lower() + msg[1:]


def _error_line(
    sections: Sections, err: Mapping[str, Any], source: str, env_names: Mapping[tuple[str, str], str]
) -> str:
    """Say which file or variable, which key, what was expected and what came."""
    loc = tuple(str(part) for part in err["loc"])
    kind = err["type"]
    value = err.get("input")
    section = loc[0] if loc else ""
    if len(loc) >= 2 and (loc[0], loc[1]) in env_names:
        source = f"environment variable {env_names[(loc[0], loc[1])]}"
    if kind == "extra_forbidden":
        if len(loc) == 1:
            names = ", ".join(sections)
            if isinstance(value, dict):
                return f"{source}: unknown section [{section}]; known sections: {names}"
            return (
                f"{source}: unknown key {section!r} outside any section; keys belong under a"
                f" section header, one of: {names}"
            )
        return f"{source}: {_unknown_key_message(sections, section, loc[1])}"
    if len(loc) == 1:
        if kind in ("model_type", "model_attributes_type", "dict_type"):
            return f"{source}: [{section}] must be a table (a [{section}] header), not {value!r}"
        if kind == "value_error":
            return f"{source}: [{section}] {err['ctx']['error']}"
        return f"{source}: [{section}] {err['msg']}"
    key = ".".join(loc[1:])
    if kind == "value_error":
        return f"{source}: [{section}] {key} {err['ctx']['error']}"
    shown = "" if _is_secret(sections, section, loc[1]) else f", not {value!r}"
    return f"{source}: [{section}] {key} must be {_expected(err)}{shown}"


def load_config(
    path: str | os.PathLike[str] | None = None,
    *,
    environ: Mapping[str, str] | None = None,
    components: Sequence[Component] | None = None,
) -> Config:
    """Read a ``config.toml`` and apply ``VAREON_<SECTION>_<KEY>`` environment overrides.

    Args:
        path: The TOML file; None uses the defaults (plus the environment).
        environ: Where the overrides come from; defaults to ``os.environ``.
        components: Whose sections the file may hold besides the kernel's; by default the
            installed ones (``vareon.components``).

    Returns:
        The validated configuration, remembering the file for resolving relative paths.

    Raises:
        ConfigError: the file is missing or not valid TOML, a key is unknown or has a bad value,
            or a variable names an unknown key of a known section. The message names the file or
            the variable and the key.
    """
    source_path: Path | None = None
    data: dict[str, Any] = {}
    label = "<defaults>"
    if path is not None:
        label = os.fspath(path)
        source_path = Path(path).expanduser().resolve()
        try:
            with open(source_path, "rb") as file:
                data = tomllib.load(file)
        except FileNotFoundError:
            raise ConfigError(
                f"{label}: no such config file; create one with `vareon init` or pass another"
                " path"
            ) from None
        except IsADirectoryError:
            raise ConfigError(f"{label}: is a directory, expected a TOML file") from None
        except OSError as exc:
            raise ConfigError(f"{label}: cannot read: {exc.strerror or exc}") from exc
        except UnicodeDecodeError as exc:
            raise ConfigError(
                f"{label}: not UTF-8 text ({exc.reason} at byte {exc.start})"
            ) from exc
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{label}: invalid TOML: {exc}") from exc

    model = config_model(components)
    sections = model.section_models()
    env_names: dict[tuple[str, str], str] = {}
    for (section, key), (name, value) in _env_overrides(
        sections, os.environ if environ is None else environ
    ).items():
        table = data.setdefault(section, {})
        if isinstance(table, dict):  # not a table: validation reports the file's mistake
            table[key] = value
            env_names[(section, key)] = name

    try:
        config = model.model_validate(data)
    except ValidationError as exc:
        lines = [_error_line(sections, err, label, env_names) for err in exc.errors()]
        raise ConfigError("\n".join(lines)) from None
    config._source = source_path
    return config
