"""Whether a database is already at every head, found without Alembic.

Importing Alembic costs about 11 MiB and 0.3 s of CPU on an edge box (it brings Mako, Pygments
and every SQL dialect it knows), and nearly every start finds nothing to migrate. So
:func:`vareon_runtime.store.migrate.migrate` asks :func:`at_heads` first: the revisions the
database holds (``alembic_version``, read with the engine) against those the revision files lead
to, read from the files' ``revision``, ``down_revision``, ``depends_on`` and ``branch_labels``
without running them. Alembic runs only when the two differ, or when a file is not plain enough
to be read so (a revision id computed rather than written): the answer is never a wrong "up to
date", at worst an Alembic run that finds nothing to do (docs/decisions/0027-edge-budget.md).
"""

from __future__ import annotations

import ast
import re
from collections.abc import Sequence
from pathlib import Path

from sqlalchemy import Engine

__all__ = ["VERSION_TABLE", "at_heads", "expected_versions"]

VERSION_TABLE = "alembic_version"
"""Alembic's table of applied heads (the runtime's ``env.py`` keeps the default name)."""

_REVISION_FILE = re.compile(r"(?!\.\#|__init__)(.*\.py)$")
"""The file names Alembic reads as revisions (its ``_only_source_rev_file``)."""

_DECLARED = frozenset({"revision", "down_revision", "depends_on", "branch_labels"})


def expected_versions(locations: Sequence[Path]) -> frozenset[str] | None:
    """What ``alembic_version`` holds once every revision under ``locations`` is applied.

    Alembic keeps there the revisions no other revision builds on, through ``down_revision`` or
    ``depends_on`` (a branch label in ``depends_on`` names the revision that declares it).

    Returns:
        Those revisions; None when a file cannot be read without running it, a revision is
        declared twice, or one builds on a name no file declares (Alembic then says what is
        wrong).
    """
    builds_on: dict[str, tuple[str, ...]] = {}
    depends: list[str] = []
    labels: dict[str, str] = {}
    for location in locations:
        try:
            paths = sorted(path for path in location.iterdir() if _REVISION_FILE.match(path.name))
        except OSError:
            return None
        for path in paths:
            declared = _declared(path)
            if declared is None:
                return None
            revision = declared.get("revision")
            down = _names(declared.get("down_revision"))
            dependencies = _names(declared.get("depends_on"))
            branches = _names(declared.get("branch_labels"))
            if not isinstance(revision, str) or revision in builds_on:
                return None
            if down is None or dependencies is None or branches is None:
                return None
            builds_on[revision] = down
            depends.extend(dependencies)
            labels.update((label, revision) for label in branches)
    below = {name for down in builds_on.values() for name in down}
    below.update(name if name in builds_on else labels.get(name, name) for name in depends)
    if not below <= builds_on.keys():
        return None
    return frozenset(builds_on.keys() - below)


def at_heads(engine: Engine, locations: Sequence[Path]) -> bool:
    """Whether the database behind ``engine`` holds exactly the heads the revision files under
    ``locations`` lead to: nothing to migrate. False also when that cannot be told cheaply.

    Raises:
        SQLAlchemyError: the database could not be read.
    """
    from sqlalchemy import inspect

    expected = expected_versions(locations)
    if not expected:
        return False
    with engine.connect() as connection:
        if not inspect(connection).has_table(VERSION_TABLE):
            return False
        stored = connection.exec_driver_sql(f"SELECT version_num FROM {VERSION_TABLE}").scalars().all()
    return len(stored) == len(expected) and set(stored) == expected


def _names(value: object) -> tuple[str, ...] | None:
    """``down_revision``, ``depends_on`` or ``branch_labels`` as a tuple; None if not names."""
    if value is None:
        return ()
    if isinstance(value, str):
        return (value,)
    if isinstance(value, (tuple, list)) and all(isinstance(item, str) for item in value):
        return tuple(value)
    return None


def _declared(path: Path) -> dict[str, object] | None:
    """The module-level names Alembic reads from a revision file (:data:`_DECLARED`), read
    without running it; None where the file does not parse or one of them is not a literal."""
    try:
        tree = ast.parse(path.read_bytes(), filename=str(path))
    except (OSError, SyntaxError, ValueError):
        return None
    found: dict[str, object] = {}
    for node in tree.body:
        pairs: list[tuple[ast.expr, ast.expr]] = []
        if isinstance(node, ast.Assign):
            for target in node.targets:
                if isinstance(target, ast.Tuple) and isinstance(node.value, ast.Tuple):
                    # revision, down_revision = "0002_b", "0001_a"
                    pairs.extend(zip(target.elts, node.value.elts))
                else:
                    pairs.append((target, node.value))
        elif isinstance(node, ast.AnnAssign) and node.value is not None:
            pairs.append((node.target, node.value))
        for target, value in pairs:
            if isinstance(target, ast.Name) and target.id in _DECLARED:
                try:
                    found[target.id] = ast.literal_eval(value)
                except (ValueError, TypeError, SyntaxError, RecursionError):
                    return None
            elif isinstance(target, ast.Tuple) and any(
                isinstance(element, ast.Name) and element.id in _DECLARED for element in target.elts
            ):
                return None  # unpacked from something other than a tuple literal
    return found
