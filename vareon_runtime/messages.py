"""Typed messages: the only things actors exchange.

A message is a frozen pydantic model named after its step in the conversation (``StartAgent``,
``AgentStarted``). Validation happens at the system's edges; inside, messages are built from data
that is already valid, so construct them with keyword arguments and let them be immutable.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

__all__ = ["Message"]


class Message(BaseModel):
    """Base class of every actor message: immutable, no unknown fields."""

    model_config = ConfigDict(frozen=True, extra="forbid")
