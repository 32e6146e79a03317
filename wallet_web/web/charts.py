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


@dataclass(frozen=True)
class Sparkline:
    """A wallet's recent balances drawn on an axis from zero (a wallet never goes below it), so
    100 -> 105 -> 103 stays a small move near the top, with its lowest and highest balance to
    label it. One posting is a dot: a line would look like an underline."""

    points: str  # the polyline's "x,y x,y ..."; '' for a single posting
    dot: tuple[float, float] | None  # (x, y) of the single posting
    low: int
    high: int
    width: int
    height: int


def sparkline(values: list[int], width: int = 160, height: int = 32) -> Sparkline | None:
    """The values scaled into the box (2 units of margin top and bottom); None without values."""
    if not values:
        return None
    low, high = min(values), max(values)
    floor = min(low, 0)
    scale = (height - 4) / (high - floor) if high != floor else 0
    ys = [round(height - 2 - (value - floor) * scale, 1) for value in values]
    if len(values) == 1:
        return Sparkline("", (width / 2, ys[0]), low, high, width, height)
    step = width / (len(values) - 1)
    points = " ".join(f"{round(i * step, 1)},{y}" for i, y in enumerate(ys))
    return Sparkline(points, None, low, high, width, height)
