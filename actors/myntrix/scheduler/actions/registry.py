"""The task action registry: :class:`ActionRegistry`, the kinds by name (a
:class:`~vareon_runtime.keyed.Keyed` registry), and :class:`UnknownActionError` for a kind it
does not hold."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, ValidationError

from vareon_runtime.errors import InvalidRequestError, UnknownKeyError
from vareon_runtime.keyed import Keyed

from .action import Action, ActionParameters

__all__ = ["ActionRegistry", "UnknownActionError"]


class UnknownActionError(UnknownKeyError):
    """No action has the kind; the message names the known ones (422)."""

    def __init__(self, kind: str, known: list[str]) -> None:
        super().__init__(
            f"no task action has the kind {kind!r}; known: {', '.join(known) or 'none'}",
            key=kind,
            known=known,
            field="action",
            extra={"kind": kind},
        )
        self.kind = kind


class ActionRegistry(Keyed[Action]):
    """Task actions by kind. Registering a kind twice is an error."""

    def __init__(self) -> None:
        super().__init__("task action", field="action", unknown=UnknownActionError)

    def register(self, kind: str, action: Action) -> None:
        """Add ``action`` under ``kind``.

        Raises:
            DuplicateKeyError: ``kind`` is taken.
            ValueError: ``kind`` is not the action's own kind.
        """
        if getattr(action, "kind", kind) != kind:
            raise ValueError(f"action {action!r} has the kind {action.kind!r}; register it under that name, not {kind!r}")
        super().register(kind, action)

    def kinds(self) -> list[str]:
        """The known kinds, sorted."""
        return self.keys()

    def action(self, kind: str) -> Action:
        """The action of ``kind``.

        Raises:
            UnknownActionError: no such kind (422, naming the known ones).
        """
        return self[kind]

    def validate(
        self,
        kind: str,
        parameters: Mapping[str, Any] | BaseModel | None,
        *,
        check: bool = True,
        previous: BaseModel | None = None,
    ) -> BaseModel:
        """Parse ``parameters`` for ``kind`` and, with ``check``, check them against this host.

        Args:
            kind: the action's kind.
            parameters: the task's parameters as received (either spelling of each name).
            check: also run :meth:`Action.check` (a task being created or changed); False to
                load a stored task whose executable may have gone meanwhile (its run fails then).
            previous: the task's current parameters, when changing it: a
                :data:`~actors.myntrix.scheduler.actions.masking.MASK` sent back keeps the
                stored secret.

        Raises:
            UnknownActionError: no such kind.
            InvalidRequestError: the parameters are invalid (pydantic's errors in ``details``,
                each ``loc`` starting with ``parameters``, inputs left out as they may be
                secrets), or cannot work on this host.
        """
        action = self.action(kind)
        if isinstance(parameters, BaseModel):
            parameters = parameters.model_dump(by_alias=True)
        try:
            params = action.parameters.model_validate(parameters if parameters is not None else {})
        except ValidationError as exc:
            errors = exc.errors(include_url=False, include_context=False, include_input=False)
            for error in errors:
                error["loc"] = ("parameters", *error["loc"])
            first = errors[0]
            where = ".".join(str(part) for part in first["loc"])
            raise InvalidRequestError(
                f"invalid {kind} parameters: {where}: {first['msg']}"
                + (f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""),
                details=errors,
            ) from exc
        if previous is not None and isinstance(params, ActionParameters) and type(previous) is type(params):
            params = params.unmasked(previous)
        if check:
            action.check(params)
        return params
