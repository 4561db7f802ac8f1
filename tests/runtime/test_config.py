"""config.toml, VAREON_* overrides, the generated default file and its documentation."""

from __future__ import annotations

import re
import stat
from pathlib import Path

import pytest
from pydantic import BaseModel, ConfigDict, Field, SecretStr

from vareon_runtime.component import Component, ConfigSection
from vareon_runtime.config import (
    Config,
    config_model,
    load_config,
    render_default_config,
    write_default_config,
)
from vareon_runtime.errors import ConfigError

REPO = Path(__file__).resolve().parents[2]
# The installed configuration: the kernel's sections and every installed component's.
INSTALLED = config_model()
SECRET = "s3cr3t-" + "x" * 40


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_defaults_without_a_file() -> None:
    config = load_config(environ={})
    assert config.server.port == 8000
    assert config.server.host == "127.0.0.1"
    assert config.server.max_body_size == 1024 * 1024
    assert config.database.url is None
    assert config.database.sqlite_synchronous == "full"
    assert config.auth.jwt_secret is None
    assert config.runtime.shutdown_timeout == 10.0
    assert config.source_path is None
    assert config.model_dump() == INSTALLED().model_dump()


def test_bundled_config_toml_loads_as_the_defaults() -> None:
    config = load_config(REPO / "config.toml", environ={})
    assert config.model_dump() == INSTALLED().model_dump()
    assert config.source_path == REPO / "config.toml"


def test_bundled_config_toml_is_the_rendered_default() -> None:
    # If this fails after adding a key: regenerate config.toml with render_default_config().
    assert (REPO / "config.toml").read_text(encoding="utf-8") == render_default_config()


def test_rendered_config_lists_every_key_with_its_description() -> None:
    text = render_default_config()
    for section, model in INSTALLED.section_models().items():
        assert f"\n[{section}]\n" in text
        for key, field in model.model_fields.items():
            assert re.search(rf"^(# )?{key} = ", text, re.MULTILINE), key
            assert field.description
    assert '# url = "postgresql+psycopg://' in text


def test_write_default_config_writes_a_loadable_file_and_the_data_dir(tmp_path: Path) -> None:
    target = tmp_path / "box" / "config.toml"
    written = write_default_config(target)
    assert written == target
    assert target.read_text(encoding="utf-8") == render_default_config()
    config = load_config(target, environ={})
    assert config.model_dump() == INSTALLED().model_dump()
    data_dir = tmp_path / "box" / "data"
    assert data_dir.is_dir()
    assert config.data_dir_path == data_dir
    assert stat.S_IMODE(data_dir.stat().st_mode) & 0o077 == 0


def test_write_default_config_refuses_to_overwrite(tmp_path: Path) -> None:
    target = write(tmp_path, "[server]\nport = 9\n")
    with pytest.raises(ConfigError, match=r"config\.toml: already exists; not overwriting"):
        write_default_config(target)
    assert target.read_text(encoding="utf-8") == "[server]\nport = 9\n"


def test_unknown_key_names_file_section_and_known_keys(tmp_path: Path) -> None:
    path = write(tmp_path, "[server]\nprot = 8080\n")
    expected = (
        "config.toml: unknown key 'prot' in [server]; known keys: "
        "enabled, host, port, max_body_size, upload_max_size, trusted_proxies; did you mean 'port'?"
    )
    with pytest.raises(ConfigError, match=re.escape(expected)):
        load_config(path, environ={})


def test_unknown_section_is_an_error(tmp_path: Path) -> None:
    path = write(tmp_path, "[servers]\nport = 8080\n")
    with pytest.raises(
        ConfigError,
        match=re.escape(
            "config.toml: unknown section [servers]; known sections: "
            "runtime, server, database, supervisor, auth, email, outbound"
        ),
    ):
        load_config(path, environ={})


def test_key_outside_a_section_is_an_error(tmp_path: Path) -> None:
    path = write(tmp_path, "port = 8080\n")
    with pytest.raises(ConfigError, match="unknown key 'port' outside any section"):
        load_config(path, environ={})


def test_password_in_the_file_points_to_the_env_key(tmp_path: Path) -> None:
    path = write(tmp_path, '[email]\npassword = "hunter2"\n')
    with pytest.raises(ConfigError, match="named by password_env") as info:
        load_config(path, environ={})
    assert "hunter2" not in str(info.value)


def test_bad_type_says_what_was_expected_and_what_came(tmp_path: Path) -> None:
    path = write(tmp_path, '[server]\nport = "abc"\n')
    with pytest.raises(
        ConfigError, match=re.escape("config.toml: [server] port must be a valid integer, not 'abc'")
    ):
        load_config(path, environ={})


def test_bad_choice_lists_the_choices(tmp_path: Path) -> None:
    path = write(tmp_path, '[runtime]\nlog_format = "xml"\n')
    with pytest.raises(
        ConfigError,
        match=re.escape("[runtime] log_format must be one of 'plain' or 'json', not 'xml'"),
    ):
        load_config(path, environ={})


def test_out_of_range_and_cross_field_checks(tmp_path: Path) -> None:
    path = write(tmp_path, "[server]\nport = 70000\n[supervisor]\nbackoff_max = 0.01\n")
    with pytest.raises(ConfigError) as info:
        load_config(path, environ={})
    message = str(info.value)
    assert "[server] port must be less than or equal to 65535, not 70000" in message
    assert "[supervisor] backoff_max (0.01) must be at least backoff_initial (0.1)" in message


def test_log_level_is_case_insensitive(tmp_path: Path) -> None:
    path = write(tmp_path, '[runtime]\nlog_level = "DEBUG"\n')
    assert load_config(path, environ={}).runtime.log_level == "debug"


def test_toml_syntax_error_names_the_file_and_position(tmp_path: Path) -> None:
    path = write(tmp_path, "[server]\nport 8000\n")
    with pytest.raises(ConfigError, match=r"config\.toml: invalid TOML: .*line 2, column 6"):
        load_config(path, environ={})


def test_missing_file_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"nope\.toml: no such config file; create one"):
        load_config(tmp_path / "nope.toml", environ={})


def test_environment_overrides_the_file(tmp_path: Path) -> None:
    path = write(tmp_path, "[server]\nport = 9000\n")
    config = load_config(
        path,
        environ={
            "VAREON_SERVER_PORT": "0",
            "VAREON_SERVER_ENABLED": "false",
            "VAREON_DATABASE_URL": "postgresql+psycopg://vareon@db/vareon",
            "VAREON_AUTH_JWT_SECRET": SECRET,
            "VAREON_SUPERVISOR_PERIOD": "2.5",
        },
    )
    assert config.server.port == 0
    assert config.server.enabled is False
    assert config.database_url == "postgresql+psycopg://vareon@db/vareon"
    assert config.supervisor.period == 2.5
    assert isinstance(config.auth.jwt_secret, SecretStr)
    assert config.auth.jwt_secret.get_secret_value() == SECRET
    assert SECRET not in repr(config)
    assert SECRET not in str(config.model_dump())


def test_empty_environment_value_unsets_an_optional_key(tmp_path: Path) -> None:
    path = write(tmp_path, '[database]\nurl = "postgresql+psycopg://vareon@db/vareon"\n')
    config = load_config(path, environ={"VAREON_DATABASE_URL": ""})
    assert config.database.url is None


def test_bad_environment_value_names_the_variable() -> None:
    with pytest.raises(
        ConfigError,
        match=re.escape(
            "environment variable VAREON_SERVER_PORT: [server] port must be a valid integer,"
            " not 'abc'"
        ),
    ):
        load_config(environ={"VAREON_SERVER_PORT": "abc"})


def test_short_jwt_secret_is_refused_without_echoing_it() -> None:
    with pytest.raises(ConfigError, match="jwt_secret must be at least 32 characters") as info:
        load_config(environ={"VAREON_AUTH_JWT_SECRET": "tiny-secret"})
    assert "tiny-secret" not in str(info.value)


def test_environment_unknown_key_in_known_section_is_an_error() -> None:
    with pytest.raises(
        ConfigError,
        match=re.escape(
            "environment variable VAREON_SERVER_PROT: unknown key 'prot' in [server]; known keys:"
            " enabled, host, port, max_body_size, upload_max_size"
        ),
    ):
        load_config(environ={"VAREON_SERVER_PROT": "1"})


def test_environment_of_other_features_is_ignored() -> None:
    config = load_config(
        environ={
            "VAREON_MOCK_SYSTEM_METRICS": "1",
            "VAREON_ADMIN_PASSWORD": "pw",
            "VAREON_SMTP_PASSWORD": "pw",
            "PATH": "/usr/bin",
        }
    )
    assert config.model_dump() == INSTALLED().model_dump()


def test_data_dir_is_relative_to_the_config_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    etc = tmp_path / "etc"
    etc.mkdir()
    path = write(etc, '[runtime]\ndata_dir = "state"\n')
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    config = load_config(path, environ={})
    assert config.data_dir_path == (etc / "state").resolve()
    assert config.data_dir_path.is_absolute()


def test_data_dir_without_a_file_is_relative_to_cwd(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    assert load_config(environ={}).data_dir_path == (tmp_path / "data").resolve()


def test_absolute_data_dir_is_kept(tmp_path: Path) -> None:
    absolute = tmp_path / "var" / "vareon"
    path = write(tmp_path, f"[runtime]\ndata_dir = {str(absolute)!r}\n")
    assert load_config(path, environ={}).data_dir_path == absolute.resolve()


def test_default_database_url_is_sqlite_in_the_data_dir(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, ""), environ={})
    data_dir = (tmp_path / "data").resolve()
    assert config.database_url == f"sqlite:///{data_dir.as_posix()}/vareon.db"


def _doc_tables() -> dict[str, str]:
    text = (REPO / "docs" / "configuration.md").read_text(encoding="utf-8")
    tables: dict[str, str] = {}
    for match in re.finditer(r"^### `\[(\w+)\]`\n(.*?)(?=^#)", text, re.MULTILINE | re.DOTALL):
        tables[match.group(1)] = match.group(2)
    return tables


def test_docs_describe_every_key_of_every_section() -> None:
    tables = _doc_tables()
    sections = INSTALLED.section_models()
    assert set(tables) == set(sections)
    for section, model in sections.items():
        rows = [line for line in tables[section].splitlines() if line.startswith("| `")]
        documented = {line.split("`")[1] for line in rows}
        assert documented == set(model.model_fields), section
        for key in model.model_fields:
            assert f"`VAREON_{section.upper()}_{key.upper()}`" in tables[section], key


def test_outbound_allow_from_the_file_and_the_environment(tmp_path: Path) -> None:
    assert load_config(environ={}).outbound.allow == []
    path = write(tmp_path, '[outbound]\nallow = ["10.0.0.5", "192.168.1.0/24", "Printer.Local.", "fd00::/8"]\n')
    assert load_config(path, environ={}).outbound.allow == ["10.0.0.5/32", "192.168.1.0/24", "printer.local", "fd00::/8"]
    env = {"VAREON_OUTBOUND_ALLOW": "127.0.0.1, nas.lan"}
    assert load_config(path, environ=env).outbound.allow == ["127.0.0.1/32", "nas.lan"]
    bad = write(tmp_path, '[outbound]\nallow = ["http://10.0.0.5/", "nas.lan:8080", "10.0.0.5/8", "*.lan"]\n')
    with pytest.raises(ConfigError) as info:
        load_config(bad, environ={})
    message = str(info.value)
    assert "config.toml: [outbound] allow must be IP addresses, networks or host names" in message
    assert "'http://10.0.0.5/' is none of these (write the host alone" in message
    assert "'nas.lan:8080' is none of these" in message and "'*.lan' is none of these" in message
    assert "'10.0.0.5/8' has host bits set (did you mean '10.0.0.0/8'?)" in message


def test_trusted_proxies_from_the_file_and_the_environment(tmp_path: Path) -> None:
    assert load_config(environ={}).server.trusted_proxies == []
    path = write(tmp_path, '[server]\ntrusted_proxies = ["10.0.0.1", "192.168.0.0/16", "::1", "fd00::/8"]\n')
    config = load_config(path, environ={})
    assert config.server.trusted_proxies == ["10.0.0.1/32", "192.168.0.0/16", "::1/128", "fd00::/8"]
    # A list in one variable: comma-separated; empty means none.
    env = {"VAREON_SERVER_TRUSTED_PROXIES": " 172.16.0.0/12 ,10.1.2.3"}
    assert load_config(path, environ=env).server.trusted_proxies == ["172.16.0.0/12", "10.1.2.3/32"]
    assert load_config(path, environ={"VAREON_SERVER_TRUSTED_PROXIES": ""}).server.trusted_proxies == []
    # Host bits after the prefix are a mistake worth naming, not a guess.
    bad = write(tmp_path, '[server]\ntrusted_proxies = ["10.0.0.1", "proxy.local", "10.0.0.1/8"]\n')
    with pytest.raises(ConfigError) as info:
        load_config(bad, environ={})
    message = str(info.value)
    assert "config.toml: [server] trusted_proxies must be IP addresses or networks" in message
    assert "'proxy.local' is not an IP address or network" in message
    assert "'10.0.0.1/8' has host bits set (did you mean '10.0.0.0/8'?)" in message


def test_registration_limits(tmp_path: Path) -> None:
    auth = load_config(environ={}).auth
    assert (auth.allow_registration, auth.registration_max, auth.registration_window) == (True, 5, 3600)
    path = write(tmp_path, "[auth]\nregistration_max = 0\n")
    with pytest.raises(ConfigError, match=re.escape("[auth] registration_max must be greater than or equal to 1, not 0")):
        load_config(path, environ={})


class _Gadgets(BaseModel):
    model_config = ConfigDict(extra="forbid")

    limit: int = Field(3, ge=1, description="How many gadgets.")
    token: SecretStr | None = Field(None, description="A gadget token.")


class _OtherGadgets(BaseModel):
    limit: int = 1


def _gadgets(name: str = "gadgets", model: type[BaseModel] = _Gadgets, *, section: str = "gadgets") -> Component:
    return Component(name, lambda ctx: None, config=ConfigSection(section, model, "Gadgets."))


def test_a_component_section_is_read_checked_and_overridden(tmp_path: Path) -> None:
    components = [_gadgets()]
    path = write(tmp_path, "[gadgets]\nlimit = 7\n")
    config = load_config(path, environ={}, components=components)
    assert config.section(_Gadgets).limit == 7
    overridden = load_config(
        path, environ={"VAREON_GADGETS_LIMIT": "9", "VAREON_GADGETS_TOKEN": SECRET}, components=components
    )
    assert overridden.section(_Gadgets).limit == 9
    assert SECRET not in repr(overridden) and SECRET not in str(overridden.model_dump())
    with pytest.raises(ConfigError, match=r"unknown key 'limt' in \[gadgets\].*did you mean 'limit'"):
        load_config(write(tmp_path, "[gadgets]\nlimt = 7\n"), environ={}, components=components)
    with pytest.raises(ConfigError, match=r"\[gadgets\] limit must be greater than or equal to 1"):
        load_config(environ={"VAREON_GADGETS_LIMIT": "0"}, components=components)


def test_a_section_of_a_component_not_installed_is_unknown(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"unknown section \[gadgets\]"):
        load_config(write(tmp_path, "[gadgets]\nlimit = 7\n"), environ={}, components=[])
    # and its variables are someone else's: ignored, as any VAREON_* of another feature
    assert load_config(environ={"VAREON_GADGETS_LIMIT": "9"}, components=[]).model_dump() == Config().model_dump()


def test_a_model_without_the_section_answers_its_defaults() -> None:
    assert Config().section(_Gadgets) == _Gadgets()


def test_components_sharing_a_section_must_share_its_model() -> None:
    shared = config_model([_gadgets("one"), _gadgets("two")])
    assert list(shared.section_models())[-1] == "gadgets"
    with pytest.raises(ConfigError, match=r"'one' and 'two' both declare \[gadgets\] with different models"):
        config_model([_gadgets("one"), _gadgets("two", _OtherGadgets)])


def test_a_component_cannot_take_a_kernel_section() -> None:
    with pytest.raises(ConfigError, match=r"declares the section \[server\], which is the kernel's own"):
        config_model([_gadgets(section="server")])


def test_the_rendered_default_config_holds_component_sections() -> None:
    text = render_default_config([_gadgets()])
    assert "# Gadgets.\n[gadgets]\n" in text and "# How many gadgets.\nlimit = 3\n" in text
    assert "# A gadget token.\n# token is unset by default\n" in text
