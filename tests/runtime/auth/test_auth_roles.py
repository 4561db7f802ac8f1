"""Roles nest: admin ⊇ operator ⊇ viewer; a principal's check names what was needed."""

from __future__ import annotations

import pytest

from vareon_runtime.auth import Principal, Role
from vareon_runtime.errors import PermissionDeniedError

ALLOWED = {
    (Role.ADMIN, Role.ADMIN): True,
    (Role.ADMIN, Role.OPERATOR): True,
    (Role.ADMIN, Role.VIEWER): True,
    (Role.OPERATOR, Role.ADMIN): False,
    (Role.OPERATOR, Role.OPERATOR): True,
    (Role.OPERATOR, Role.VIEWER): True,
    (Role.VIEWER, Role.ADMIN): False,
    (Role.VIEWER, Role.OPERATOR): False,
    (Role.VIEWER, Role.VIEWER): True,
}


@pytest.mark.parametrize(("held", "required"), sorted(ALLOWED))
def test_roles_nest(held: Role, required: Role) -> None:
    assert held.allows(required) is ALLOWED[(held, required)]


def test_roles_are_their_wire_strings() -> None:
    assert [role.value for role in Role] == ["admin", "operator", "viewer"]
    assert Role("operator") is Role.OPERATOR
    assert Role.ADMIN == "admin"


def test_principal_require_refuses_a_lower_role() -> None:
    viewer = Principal(user_id="u1", username="vera", role=Role.VIEWER)
    viewer.require(Role.VIEWER)
    with pytest.raises(PermissionDeniedError, match="this needs the operator role; vera is viewer") as info:
        viewer.require(Role.OPERATOR)
    assert info.value.status == 403
    Principal(user_id="u2", username="ada", role=Role.ADMIN).require(Role.OPERATOR)
