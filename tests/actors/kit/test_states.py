"""Run states and each domain's words for them: one mapping, both ways, former spellings read."""

from __future__ import annotations

import pickle

import pytest
from pydantic import BaseModel

from actors.kit.schemas import JOB_WORDS, JobStatus
from actors.kit.states import RunState, Words
from actors.myntrix.scheduler.schemas import TASK_RUN_WORDS, RunStatus

WORDS = Words(
    "DemoStatus",
    {
        RunState.PENDING: "pending",
        RunState.SUCCEEDED: "success",
        RunState.FAILED: "failed",
        RunState.TIMEOUT: "failed",
    },
    former={"ok": "success"},
    module=__name__,
)
DemoStatus = WORDS.enum


class Row(BaseModel):
    status: DemoStatus  # type: ignore[valid-type]


def test_a_state_has_one_word_and_a_word_its_first_state() -> None:
    assert WORDS.wire(RunState.SUCCEEDED) is DemoStatus("success")
    assert WORDS.wire("timeout") is DemoStatus("failed")
    assert WORDS.state("failed") is RunState.FAILED
    assert WORDS.states("failed") == [RunState.FAILED, RunState.TIMEOUT]
    assert [member.value for member in DemoStatus] == ["pending", "success", "failed"]


def test_a_stored_state_and_a_former_spelling_parse_as_the_word() -> None:
    assert Row(status="succeeded").status is DemoStatus("success")  # what the database holds
    assert Row(status="ok").status is DemoStatus("success")  # what an old client sends
    assert Row.model_validate_json('{"status": "success"}').model_dump(mode="json") == {"status": "success"}


def test_a_word_the_domain_lacks_is_refused() -> None:
    with pytest.raises(ValueError):
        Row(status="cancelled")
    with pytest.raises(ValueError, match="has no word for the state 'cancelled'"):
        WORDS.wire(RunState.CANCELLED)
    with pytest.raises(ValueError, match="former spellings stand for words Odd does not have"):
        Words("Odd", {RunState.PENDING: "pending"}, former={"ok": "success"}, module=__name__)


def test_the_enum_pickles_as_a_module_level_name() -> None:
    assert pickle.loads(pickle.dumps(DemoStatus("success"))) is DemoStatus("success")


@pytest.mark.parametrize(
    ("words", "enum", "succeeded"),
    [(TASK_RUN_WORDS, RunStatus, "success"), (JOB_WORDS, JobStatus, "completed")],
)
def test_the_seeds_words_are_on_the_wire(words: Words, enum: type, succeeded: str) -> None:
    assert words.wire(RunState.SUCCEEDED).value == succeeded
    assert enum(succeeded) is words.wire(RunState.SUCCEEDED)
    assert words.state(succeeded) is RunState.SUCCEEDED
    assert {"pending", "running", "failed", "cancelled"} <= {member.value for member in enum}
