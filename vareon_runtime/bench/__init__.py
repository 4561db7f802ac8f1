"""Benchmarks behind ``vareon bench <name>``: each measures the runtime beside its peer or limit."""

from __future__ import annotations

from .report import Report, percentile

__all__ = ["Report", "percentile"]
