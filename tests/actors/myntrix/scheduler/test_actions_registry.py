"""The task action registry: kinds, unknown kinds, duplicates, validation errors."""

from __future__ import annotations

import importlib
import pkgutil

import pytest
import trio
from pydantic import BaseModel

from actors.myntrix.scheduler import actions
from actors.myntrix.scheduler.actions import (
    ACTIONS,
    Action,
    ActionContext,
    ActionOutcome,
    ActionParameters,
    ActionRegistry,
    UnknownActionError,
    looks_secret,
)
from vareon_runtime.errors import InvalidRequestError


class EchoParameters(ActionParameters):
    text: str


class Echo:
    """A kind as a later module (workflow, pipeline) would register it."""

    kind = "echo"
    parameters: type[BaseModel] = EchoParameters
    admin_only = False

    def check(self, params: BaseModel) -> None:
        assert isinstance(params, EchoParameters)
        if params.text == "forbidden":
            raise InvalidRequestError("parameters.text: not that word", details={"field": "parameters.text"})

    async def run(self, params: BaseModel, ctx: ActionContext) -> ActionOutcome:
        assert isinstance(params, EchoParameters)
        ctx.log(params.text)
        await trio.lowlevel.checkpoint()
        return ActionOutcome(ok=True)


def test_the_runtime_knows_agent_api_and_script() -> None:
    assert ACTIONS.kinds() == ["agent", "api", "script"]
    assert [ACTIONS.action(kind).admin_only for kind in ACTIONS.kinds()] == [False, False, True]
    for kind in ACTIONS.kinds():
        action = ACTIONS.action(kind)
        assert isinstance(action, Action) and action.kind == kind
        assert action.parameters.model_config.get("extra") == "forbid"


def test_an_unknown_kind_is_422_naming_the_known_ones() -> None:
    with pytest.raises(UnknownActionError, match="no task action has the kind 'shell'; known: agent, api, script") as caught:
        ACTIONS.validate("shell", {"argv": ["ls"]})
    error = caught.value
    assert isinstance(error, InvalidRequestError) and error.status == 422
    assert error.details == {"field": "action", "key": "shell", "kind": "shell", "known": ["agent", "api", "script"]}
    with pytest.raises(UnknownActionError):
        ACTIONS.action("workflow")  # not until the workflow module registers it


async def test_a_new_kind_registers_validates_and_runs() -> None:
    registry = ActionRegistry()
    registry.register("echo", Echo())
    assert registry.kinds() == ["echo"] and "echo" in registry
    params = registry.validate("echo", {"text": "hi"})
    assert params == EchoParameters(text="hi")
    with pytest.raises(InvalidRequestError, match="not that word"):
        registry.validate("echo", {"text": "forbidden"})
    assert registry.validate("echo", {"text": "forbidden"}, check=False) == EchoParameters(text="forbidden")
    lines: list[str] = []
    ctx = ActionContext("t", "r", registry=None, bus=None, log=lines.append)  # type: ignore[arg-type]
    assert await registry.action("echo").run(params, ctx) == ActionOutcome(ok=True)
    assert lines == ["hi"]


def test_registering_a_kind_twice_fails_loudly() -> None:
    registry = ActionRegistry()
    registry.register("echo", Echo())
    with pytest.raises(ValueError, match="a task action is already registered as 'echo'"):
        registry.register("echo", Echo())
    with pytest.raises(ValueError, match="has the kind 'echo'; register it under that name, not 'other'"):
        registry.register("other", Echo())


def test_validation_errors_carry_pydantics_details_under_parameters() -> None:
    with pytest.raises(InvalidRequestError) as caught:
        ACTIONS.validate("api", {"url": "gopher://x", "timeout": -1, "extra": 1})
    error = caught.value
    assert error.message.startswith("invalid api parameters: parameters.")
    assert error.message.endswith("(and 2 more)")
    locs = sorted(tuple(item["loc"]) for item in error.details)
    assert locs == [("parameters", "extra"), ("parameters", "timeout"), ("parameters", "url")]
    assert all("input" not in item for item in error.details)  # an input may be a secret


def test_missing_parameters_are_validated_as_empty() -> None:
    with pytest.raises(InvalidRequestError, match="parameters.argv: Field required"):
        ACTIONS.validate("script", None)


@pytest.mark.parametrize(
    ("name", "secret"),
    [
        ("Authorization", True),
        ("X-Api-Key", True),
        ("Cookie", True),
        ("GITHUB_TOKEN", True),
        ("DB_PASSWORD", True),
        ("Accept", False),
        ("MODE", False),
        ("page", False),
    ],
)
def test_what_looks_secret(name: str, secret: bool) -> None:
    assert looks_secret(name) is secret


def test_the_package_exports_what_its_modules_define() -> None:
    for info in pkgutil.iter_modules(actions.__path__):
        module = importlib.import_module(f"{actions.__name__}.{info.name}")
        public = {
            name
            for name, value in vars(module).items()
            if not name.startswith("_") and getattr(value, "__module__", None) == module.__name__
        }
        assert public <= set(module.__all__), f"{module.__name__}.__all__ misses {sorted(public - set(module.__all__))}"
        assert set(module.__all__) <= set(actions.__all__), f"the actions package does not re-export {module.__name__}"
    assert all(hasattr(actions, name) for name in actions.__all__)
