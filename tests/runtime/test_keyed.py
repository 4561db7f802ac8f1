"""``Keyed``: the one plug-in registry of every domain (drivers, actions, and those to come)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from vareon_runtime.errors import (
    DuplicateKeyError,
    InvalidRequestError,
    UnknownKeyError,
)
from vareon_runtime.keyed import Keyed


def test_an_entry_comes_back_under_its_key() -> None:
    kinds: Keyed[int] = Keyed("thing")
    kinds.register("one", 1)
    assert kinds["one"] == 1 and "one" in kinds and len(kinds) == 1 and list(kinds) == ["one"]


def test_a_duplicate_key_is_refused_naming_what_holds_it() -> None:
    kinds: Keyed[int] = Keyed("thing")
    kinds.register("one", 1)
    with pytest.raises(DuplicateKeyError, match=r"a thing is already registered as 'one' \(1\)"):
        kinds.register("one", 2)
    with pytest.raises(DuplicateKeyError):
        kinds.register_lazy("one", lambda: 3)
    assert kinds["one"] == 1


def test_an_unknown_key_is_a_422_naming_the_known_ones() -> None:
    kinds: Keyed[int] = Keyed("task action", field="action")
    kinds.register("script", 1)
    kinds.register_lazy("agent", lambda: 2)
    with pytest.raises(UnknownKeyError) as info:
        kinds["scirpt"]
    error = info.value
    assert isinstance(error, InvalidRequestError) and isinstance(error, LookupError)
    assert str(error) == "no task action is registered as 'scirpt'; known: agent, script"
    assert error.details == {"field": "action", "key": "scirpt", "known": ["agent", "script"]}


def test_the_registry_may_make_its_own_unknown_key_error() -> None:
    class NoSuchDriver(UnknownKeyError):
        pass

    kinds: Keyed[int] = Keyed("driver", unknown=lambda key, known: NoSuchDriver(f"no {key}", key=key, known=known))
    with pytest.raises(NoSuchDriver, match="no ftp"):
        kinds["ftp"]


def test_a_malformed_key_is_refused_at_registration() -> None:
    def lowercase(key: str) -> None:
        if key != key.lower():
            raise ValueError(f"{key!r} is not lowercase")

    kinds: Keyed[int] = Keyed("scheme", check_key=lowercase)
    with pytest.raises(ValueError, match="'TCP' is not lowercase"):
        kinds.register("TCP", 1)
    with pytest.raises(ValueError, match="non-empty string"):
        kinds.register("", 1)
    assert len(kinds) == 0


def test_a_lazy_entry_is_made_once_on_first_use() -> None:
    made: list[int] = []

    def make() -> int:
        made.append(1)
        return 42

    kinds: Keyed[int] = Keyed("thing")
    kinds.register_lazy("answer", make)
    assert kinds.keys() == ["answer"] and made == []
    assert kinds["answer"] == 42 and kinds["answer"] == 42
    assert made == [1]


def test_a_lazy_path_is_not_imported_before_use(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "keyed_plugin.py").write_text("def make():\n    return 'made'\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "keyed_plugin", raising=False)
    kinds: Keyed[str] = Keyed("plug-in")
    kinds.register_lazy("plugin", "keyed_plugin:make")
    assert "keyed_plugin" not in sys.modules
    assert kinds["plugin"] == "made" and "keyed_plugin" in sys.modules
    with pytest.raises(ValueError, match="'module:attribute'"):
        kinds.register_lazy("bad", "keyed_plugin")
