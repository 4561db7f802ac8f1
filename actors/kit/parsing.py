"""What every domain checks the same way before it touches the store: a request body as its
pydantic model, an id as a UUID, a page's bounds, an enum's value. Each raises the runtime's
error the web front turns into its status (422, or 404 for an id that is not a UUID) with a
message that says what was expected."""

from __future__ import annotations

import enum
import uuid
from collections.abc import Mapping
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from vareon_runtime.errors import InvalidRequestError, NotFoundError

__all__ = ["LIST_LIMIT_MAX", "OFFSET_MAX", "check_page", "enum_value", "parse_id", "parse_model"]

LIST_LIMIT_MAX = 500
"""The largest page any list answers (``?limit=``)."""

OFFSET_MAX = 1_000_000_000
"""The largest ``?offset=`` any list takes: far past any table an edge box holds, and far inside
the 64-bit integer SQLite and PostgreSQL bind (a larger number would fail in the driver)."""

M = TypeVar("M", bound=BaseModel)
E = TypeVar("E", bound=enum.Enum)


def parse_model(model: type[M], data: M | Mapping[str, Any]) -> M:
    """``data`` as ``model`` (a model instance passes as it is).

    Raises:
        InvalidRequestError: the data does not validate; pydantic's errors in ``details``.
    """
    if isinstance(data, model):
        return data
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise InvalidRequestError(
            f"invalid {model.__name__}: {exc.error_count()} error(s)",
            details=exc.errors(include_url=False, include_context=False, include_input=False),
        ) from exc


def parse_id(value: str, noun: str) -> str:
    """``value`` as a canonical UUID string, the id of a ``noun`` (agent, device, task).

    Raises:
        NotFoundError: not a UUID, so nothing has that id.
    """
    try:
        return str(uuid.UUID(str(value)))
    except ValueError:
        raise NotFoundError(f"no {noun} has the id {value!r} ({noun} ids are UUIDs)") from None


def check_page(limit: int, offset: int, limit_max: int = LIST_LIMIT_MAX) -> None:
    """Refuse a page outside ``1 <= limit <= limit_max`` or ``0 <= offset <= OFFSET_MAX``.

    Raises:
        InvalidRequestError: saying which and what was expected.
    """
    if not 1 <= limit <= limit_max:
        raise InvalidRequestError(f"limit must be between 1 and {limit_max}, not {limit!r}")
    if not 0 <= offset <= OFFSET_MAX:
        raise InvalidRequestError(f"offset must be between 0 and {OFFSET_MAX}, not {offset!r}")


def enum_value(kind: type[E], value: str | enum.Enum, *, what: str = "status") -> E:
    """``value`` as a member of the enum ``kind`` (its ``_missing_`` aliases included).

    Raises:
        InvalidRequestError: not one of them; the message lists the known values.
    """
    try:
        return kind(value.value if isinstance(value, enum.Enum) else value)
    except ValueError:
        known = ", ".join(str(member.value) for member in kind)
        raise InvalidRequestError(f"{what} must be one of {known}, not {value!r}") from None
