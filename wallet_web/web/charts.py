"""Geometry for the server-rendered SVG charts (the templates only draw it)."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta


@dataclass(frozen=True)
class Bar:
    day: date
    amount: int
    x: float
    y: float
    width: float
    height: float


@dataclass(frozen=True)
class BarChart:
    bars: list[Bar]
    peak: int
    width: int
    height: int


def daily_bars(amounts: dict[date, int], last_day: date, days: int = 30,
               width: int = 600, height: int = 120) -> BarChart:
    """One bar per day (zero on quiet days), heights relative to the busiest day."""
    peak = max(amounts.values(), default=0)
    slot = width / days
    bars = []
    for index in range(days):
        day = last_day - timedelta(days=days - 1 - index)
        amount = amounts.get(day, 0)
        bar_height = 0.0 if not peak else max(1.0, height * amount / peak) if amount else 0.0
        bars.append(Bar(day, amount, round(index * slot + 1, 1), round(height - bar_height, 1),
                        round(slot - 2, 1), round(bar_height, 1)))
    return BarChart(bars, peak, width, height)


def sparkline(values: list[int], width: int = 160, height: int = 32) -> str:
    """SVG polyline points for the values, scaled to the box ('' without values)."""
    if not values:
        return ""
    if len(values) == 1:
        values = values * 2  # one posting: a flat line at that balance
    low, high = min(values), max(values)
    step = width / (len(values) - 1)
    if high == low:
        return " ".join(f"{round(i * step, 1)},{height / 2}" for i in range(len(values)))
    scale = (height - 4) / (high - low)
    return " ".join(f"{round(i * step, 1)},{round(height - 2 - (v - low) * scale, 1)}"
                    for i, v in enumerate(values))
