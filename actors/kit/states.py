"""One set of run states for every kind of run, and each domain's words for them on the wire.

Inside the runtime and in the database, every run and every job is in one of the states of
:class:`RunState`. The seeds name them differently per domain (a task run that went well is
``success``, a job ``completed``); a domain declares its wire enum and a :class:`Words` that maps
between the two, so the mapping is written once per domain and checked (a former spelling of a
word the domain does not have is refused when the module is imported)::

    RunState     task runs     jobs        workflow runs, steps   pipeline executions
    pending      pending       pending     pending                pending
    running      running       running     running                running
    succeeded    success       completed   completed              success
    failed       failed        failed      failed                 failed
    timeout      timeout       failed      failed                 failed
    skipped      skipped       -           skipped (steps)        -
    cancelled    cancelled     cancelled   cancelled              cancelled

Each word is written once, in the domain's :class:`Words`, which makes the wire enum from them
(``JOB_WORDS.enum`` is ``JobStatus``); a former spelling can still be read (``succeeded`` for
``success``).
"""

from __future__ import annotations

import enum
from collections.abc import Mapping

__all__ = ["FINISHED", "RunState", "WireWord", "Words"]


class RunState(str, enum.Enum):
    """Where a run (or a job) is; the values are what the database stores."""

    PENDING = "pending"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    TIMEOUT = "timeout"
    SKIPPED = "skipped"
    CANCELLED = "cancelled"

    @property
    def finished(self) -> bool:
        """Whether the run has ended (nothing changes it any more)."""
        return self in FINISHED


FINISHED = frozenset({RunState.SUCCEEDED, RunState.FAILED, RunState.TIMEOUT, RunState.SKIPPED, RunState.CANCELLED})


class WireWord(str, enum.Enum):
    """Base of the wire enums :class:`Words` makes: a former spelling finds its member."""

    @classmethod
    def _missing_(cls, value: object) -> WireWord | None:
        aliases: dict[str, str] = getattr(cls, "_former_", {})
        word = aliases.get(value) if isinstance(value, str) else None
        return cls(word) if word is not None else None


class Words:
    """A domain's words for the run states, and the wire enum they make.

    Args:
        name: the wire enum's name (``JobStatus``), as OpenAPI shows it.
        words: the word of each state the domain uses, in the order the enum lists them;
            several states may share a word (a job that timed out is ``failed``), then
            :meth:`state` answers the first.
        former: former spellings still read, and the word each stands for
            (``{"succeeded": "success"}``). A state's own name is always read as its word, so
            the enum parses a stored value as well as a word.
        module: the module the enum belongs to (for pickling and docs).
    """

    def __init__(self, name: str, words: Mapping[RunState, str], *, former: Mapping[str, str] | None = None, module: str) -> None:
        members: dict[str, str] = {}
        for word in words.values():
            members.setdefault(word.upper(), word)
        self.enum: type[WireWord] = WireWord(name, list(members.items()), module=module)  # type: ignore[assignment,call-overload]
        unknown = set((former or {}).values()) - set(members.values())
        if unknown:
            raise ValueError(f"former spellings stand for words {name} does not have: {sorted(unknown)}")
        stored = {state.value: word for state, word in words.items() if state.value not in members.values()}
        self.enum._former_ = {**stored, **(former or {})}  # type: ignore[attr-defined]
        self._words = {state: self.enum(word) for state, word in words.items()}
        self._states: dict[WireWord, RunState] = {}
        for state, member in self._words.items():
            self._states.setdefault(member, state)

    def wire(self, state: RunState | str) -> WireWord:
        """The wire word of ``state``.

        Raises:
            ValueError: the domain has no word for that state (a bug: it never enters it).
        """
        known = RunState(state)
        try:
            return self._words[known]
        except KeyError:
            raise ValueError(f"{self.enum.__name__} has no word for the state {known.value!r}") from None

    def state(self, word: enum.Enum | str) -> RunState:
        """The state a wire word (or a former spelling) stands for.

        Raises:
            ValueError: not a word of this domain.
        """
        return self._states[self.enum(word.value if isinstance(word, enum.Enum) else word)]

    def states(self, word: enum.Enum | str) -> list[RunState]:
        """Every state written as ``word`` (a list filter matches all of them)."""
        member = self.enum(word.value if isinstance(word, enum.Enum) else word)
        return [state for state, each in self._words.items() if each is member]
