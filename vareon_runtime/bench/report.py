"""A benchmark report: figures measured in one run, ratios against a peer, goals, JSON output."""

from __future__ import annotations

import json
import os
import platform
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..clock import isoformat, utcnow

__all__ = ["Report", "percentile"]


def percentile(values: list[float], q: float) -> float:
    """The ``q`` quantile (0..1) of ``values`` by linear interpolation."""
    if not values:
        raise ValueError("percentile of no values")
    ordered = sorted(values)
    position = (len(ordered) - 1) * q
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


@dataclass
class Report:
    """Collects lines as they are measured, prints them, and writes ``<output>/<name>.json``."""

    name: str
    figures: dict[str, Any] = field(default_factory=dict)
    goals: list[dict[str, Any]] = field(default_factory=list)

    def figure(self, key: str, value: float, unit: str, text: str) -> None:
        """Record and print one measured figure."""
        self.figures[key] = {"value": value, "unit": unit}
        print(f"  {text}: {_fmt(value)} {unit}", flush=True)

    def goal(self, label: str, ratio: float, op: str, target: float, detail: str) -> bool:
        """Record and print a goal: ``ratio op target`` (op is ``>=`` or ``<=``)."""
        met = ratio >= target if op == ">=" else ratio <= target
        self.goals.append({"goal": label, "value": ratio, "op": op, "target": target, "met": met, "detail": detail})
        print(f"  GOAL {label}: {_fmt(ratio)} {op} {_fmt(target)} -> {'met' if met else 'NOT MET'} ({detail})", flush=True)
        return met

    def write(self, output_dir: Path) -> Path:
        """Write the JSON result file and return its path."""
        output_dir.mkdir(parents=True, exist_ok=True)
        path = output_dir / f"{self.name}.json"
        payload = {
            "benchmark": self.name,
            "time": isoformat(utcnow()),
            "machine": {"python": platform.python_version(), "platform": platform.platform(), "cpus": os.cpu_count()},
            "figures": self.figures,
            "goals": self.goals,
            "all_goals_met": all(g["met"] for g in self.goals),
        }
        path.write_text(json.dumps(payload, indent=2) + "\n")
        print(f"  wrote {path}", flush=True)
        return path


def _fmt(value: float) -> str:
    if value >= 1000:
        return f"{value:,.0f}"
    if value >= 10:
        return f"{value:.1f}"
    return f"{value:.3g}"

