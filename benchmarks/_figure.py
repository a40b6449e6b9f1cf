"""One line of the benchmark report, and how a target reads against it."""

from __future__ import annotations

import re
from dataclasses import dataclass

#: units a target may give an absolute value in, as multiples of the figure's unit
#: (a figure in % holds a fraction; one in MiB holds MiB)
_TARGET_UNITS = {"s": 1.0, "ms": 1e-3, "µs": 1e-6, "%": 0.01, "MiB": 1.0, "": 1.0}
_TARGET = re.compile(r"^\s*(≤|≥|<|>|=)\s*([0-9.]+)\s*(x|s|ms|µs|%|MiB|)(?: of one CPU)?\s*$")


@dataclass
class Figure:
    name: str
    #: None: not measured (``note`` says why)
    ours: float | None
    unit: str
    baseline_name: str
    baseline: float | None
    better: str  # "lower" or "higher"
    target: str = ""
    #: the ratio of each run of ours to the baseline's run beside it (median figures only):
    #: how far one run can stray on a machine shared with others
    runs: list[float] | None = None
    note: str = ""

    @property
    def ratio(self) -> float | None:
        if self.ours is None or self.baseline in (None, 0):
            return None
        return self.ours / self.baseline  # type: ignore[operator]

    @property
    def met(self) -> bool | None:
        """Whether the figure meets its target: ``≤ 2x`` and ``≥ 30x`` read the ratio,
        ``< 2 s``, ``≤ 30 ms`` and ``= 0`` the figure itself. None: no target, or not
        measured."""
        found = _TARGET.match(self.target)
        if found is None or self.ours is None:
            return None
        op, number, unit = found.groups()
        if unit == "x":
            value = self.ratio
            if value is None:
                return None
            limit = float(number)
        else:
            value, limit = self.ours, float(number) * _TARGET_UNITS[unit]
        return {
            "≤": value <= limit,
            "≥": value >= limit,
            "<": value < limit,
            ">": value > limit,
            "=": value == limit,
        }[op]


def pairs(ours: list[float], baseline: list[float]) -> list[float]:
    """Each run's ratio to the baseline run measured beside it."""
    return [a / b for a, b in zip(ours, baseline, strict=True) if b]


def fmt(value: float | None, unit: str) -> str:
    """A figure's value as the reports print it."""
    if value is None:
        return "-"
    if unit == "%":
        return f"{value:.1%}" if value < 0.1 else f"{value:.0%}"
    if unit == "MiB":
        return f"{value:.2f} MiB"
    if unit == "x":
        return f"{value:.2f}x"
    if unit == "CPUs":
        return f"{value:.2f} CPUs"
    if unit == "s":
        if value < 1e-3:
            return f"{value * 1e6:.1f} µs"
        if value < 1:
            return f"{value * 1e3:.2f} ms"
        return f"{value:.2f} s"
    if not unit:  # a count, or a mean of counts
        return f"{value:,.2f}".removesuffix(".00")
    return f"{value:,.0f} {unit}"


def describe(f: Figure) -> str:
    """One figure on one line, for a benchmark run on its own."""
    base = f"  vs {fmt(f.baseline, f.unit)} {f.baseline_name}" if f.baseline_name else ""
    ratio = "" if f.ratio is None else f"  ({f.ratio:.2f}x)"
    runs = f"  runs {min(f.runs):.2f}-{max(f.runs):.2f}x" if f.runs else ""
    verdict = {None: "", True: "  met", False: "  NOT MET"}[f.met]
    target = f"  target {f.target}{verdict}" if f.target else ""
    note = f"  [{f.note}]" if f.note else ""
    return f"{f.name}: {fmt(f.ours, f.unit)}{base}{ratio}{runs}{target}{note}"
