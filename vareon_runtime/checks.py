"""Checks of the numbers code is built with (settings, limits, intervals), refusing with the same
words everywhere: ``queue_max must be at least 1, not 0``, ``lockout must be a positive number
of seconds, not -1``."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = ["check_counts", "check_seconds"]


def check_counts(values: Mapping[str, Any], *names: str) -> None:
    """Refuse a value below 1 among ``values`` (those of ``names`` when given).

    Raises:
        ValueError: naming the first that is, and its value.
    """
    for name in names or tuple(values):
        if values[name] < 1:
            raise ValueError(f"{name} must be at least 1, not {values[name]!r}")


def check_seconds(values: Mapping[str, Any], *names: str) -> None:
    """Refuse a value among ``values`` (those of ``names`` when given) that is not a positive
    number of seconds.

    Raises:
        ValueError: naming the first that is not, and its value.
    """
    for name in names or tuple(values):
        if not values[name] > 0:
            raise ValueError(f"{name} must be a positive number of seconds, not {values[name]!r}")
