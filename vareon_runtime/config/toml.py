"""Writing the commented default ``config.toml`` (``vareon init``) from the section models."""

from __future__ import annotations

import os
import textwrap
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..component import Component
from ..errors import ConfigError
from .loading import config_model, load_config

__all__ = ["render_default_config", "write_default_config"]


def _toml_string(value: str) -> str:
    out = ['"']
    for char in value:
        if char in '"\\':
            out.append("\\" + char)
        elif char == "\n":
            out.append("\\n")
        elif char == "\t":
            out.append("\\t")
        elif ord(char) < 0x20 or ord(char) == 0x7F:
            out.append(f"\\u{ord(char):04x}")
        else:
            out.append(char)
    out.append('"')
    return "".join(out)


def _toml_value(value: Any) -> str:
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(item) for item in value) + "]"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, Path):
        return _toml_string(value.as_posix())
    if isinstance(value, str):
        return _toml_string(value)
    raise TypeError(f"no TOML form for {value!r}")


def _comment(text: str) -> list[str]:
    return textwrap.wrap(text, width=98, initial_indent="# ", subsequent_indent="# ")


_HEADER = """\
Vareon Runtime configuration.

Every key is listed with its default value; keys that are unset by default are shown commented
out with an example. Any key can also be set with an environment variable
VAREON_<SECTION>_<KEY>, which wins over this file, e.g. VAREON_SERVER_PORT=0 or
VAREON_DATABASE_URL=postgresql+psycopg://vareon@db/vareon. Relative paths are relative to the
directory of this file. Passwords never go in this file: see docs/configuration.md."""


def render_default_config(components: Sequence[Component] | None = None) -> str:
    """Render the commented default ``config.toml`` from the models: the kernel's sections, then
    each component's, with their comments.

    Args:
        components: whose sections to write besides the kernel's; the installed ones by default.

    Returns:
        TOML text listing every section and key with its description as comments; keys unset by
        default are commented out with an example. Loading it gives the defaults.
    """
    lines: list[str] = []
    for paragraph in _HEADER.split("\n\n"):
        lines.extend(_comment(" ".join(paragraph.split())))
        lines.append("#")
    lines[-1:] = []
    model_of = config_model(components)
    for section, model in model_of.section_models().items():
        lines.append("")
        lines.extend(_comment(model_of.model_fields[section].description or section))
        lines.append(f"[{section}]")
        for key, field in model.model_fields.items():
            lines.append("")
            lines.extend(_comment(field.description or key))
            default = field.get_default(call_default_factory=True)
            if default is None:
                if field.examples:
                    lines.append(f"# {key} = {_toml_value(field.examples[0])}")
                else:  # a component's key without an example: say so rather than invent a value
                    lines.append(f"# {key} is unset by default")
            else:
                lines.append(f"{key} = {_toml_value(default)}")
    return "\n".join(lines) + "\n"


def write_default_config(path: str | os.PathLike[str], components: Sequence[Component] | None = None) -> Path:
    """Write the default ``config.toml`` and create the data directory beside it.

    Args:
        path: Where to write the file; missing parent directories are created.
        components: whose sections to write besides the kernel's; the installed ones by default.

    Returns:
        The absolute path of the written file.

    Raises:
        ConfigError: the file already exists (it is never overwritten) or cannot be written.
    """
    label = os.fspath(path)
    target = Path(path).expanduser().resolve()
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(
            f"{label}: cannot create directory {target.parent}: {exc.strerror or exc}"
        ) from exc
    try:
        # Mode "x": never overwrite, even if the file appears between a check and the write.
        with open(target, "x", encoding="utf-8") as file:
            file.write(render_default_config(components))
    except FileExistsError:
        raise ConfigError(
            f"{label}: already exists; not overwriting it. Remove it or choose another path"
        ) from None
    except OSError as exc:
        raise ConfigError(f"{label}: cannot write: {exc.strerror or exc}") from exc
    config = load_config(target, environ={}, components=components)
    try:
        # The data directory will hold the JWT key and the database: keep it private.
        config.data_dir_path.mkdir(mode=0o700, parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(
            f"{label}: cannot create data directory {config.data_dir_path}:"
            f" {exc.strerror or exc}"
        ) from exc
    return target
