"""Roles: admin, operator and viewer, each allowed everything the ones below it are."""

from __future__ import annotations

import enum

__all__ = ["Role"]


class Role(str, enum.Enum):
    """What a user may do: ``admin`` ⊇ ``operator`` ⊇ ``viewer``.

    ``viewer`` reads; ``operator`` also starts, stops, runs, triggers, uploads and ingests;
    ``admin`` also does what executes code on the host (agent commands, script tasks, the shell)
    and manages users.
    """

    ADMIN = "admin"
    OPERATOR = "operator"
    VIEWER = "viewer"

    @property
    def rank(self) -> int:
        """0 for viewer, 1 for operator, 2 for admin."""
        return _RANK[self]

    def allows(self, required: Role) -> bool:
        """Return whether a holder of this role may do what needs ``required``."""
        return _RANK[self] >= _RANK[required]

    def __str__(self) -> str:
        return self.value


_RANK: dict[Role, int] = {Role.VIEWER: 0, Role.OPERATOR: 1, Role.ADMIN: 2}
