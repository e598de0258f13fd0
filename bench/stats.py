"""Percentiles, ratios and the printed table."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass


def percentile(samples: Sequence[float], q: float) -> float:
    """The q-th percentile (0..100), linear between the two nearest ranks."""
    if not samples:
        return math.nan
    ordered = sorted(samples)
    rank = (len(ordered) - 1) * q / 100
    low, high = math.floor(rank), math.ceil(rank)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def ratio(value: float, baseline: float) -> float:
    if not baseline or math.isnan(baseline) or math.isnan(value):
        return math.nan
    return value / baseline


def rounded(value: float, digits: int = 2) -> float | None:
    """JSON has no NaN: a figure that could not be measured is null."""
    return None if value is None or math.isnan(value) else round(value, digits)


@dataclass
class Row:
    """One line of the table: a figure, its baseline, their ratio and the target it serves."""

    name: str
    value: float
    baseline: float
    unit: str
    target: str = ""
    holds: bool | None = None

    @property
    def ratio(self) -> float:
        return ratio(self.value, self.baseline)


def _fmt(value: float) -> str:
    if value is None or math.isnan(value):
        return "-"
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    if abs(value) >= 100:
        return f"{value:.1f}"
    return f"{value:.2f}"


def render_table(rows: Sequence[Row]) -> str:
    header = ("figure", "provisio", "baseline", "ratio", "unit", "target", "holds")
    lines = [
        (
            row.name,
            _fmt(row.value),
            _fmt(row.baseline),
            _fmt(row.ratio),
            row.unit,
            row.target,
            "" if row.holds is None else ("yes" if row.holds else "NO"),
        )
        for row in rows
    ]
    widths = [max(len(str(c)) for c in col) for col in zip(header, *lines, strict=True)]

    def fmt(cells: Sequence[str]) -> str:
        return "  ".join(
            str(c).ljust(w) if i in (0, 4, 5) else str(c).rjust(w)
            for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        ).rstrip()

    rule = "  ".join("-" * w for w in widths)
    return "\n".join([fmt(header), rule, *(fmt(line) for line in lines)])
