"""The progress chart as server-side SVG geometry: a resident's total score per submitted
assessment of one instrument, in time order, on the instrument's full range. The template draws
it as inline SVG (no script, so it renders under a strict Content-Security-Policy)."""

from __future__ import annotations

from dataclasses import dataclass

from .services import ProgressSeries

WIDTH = 640
HEIGHT = 240
LEFT = 44
RIGHT = 16
TOP = 16
BOTTOM = 36


@dataclass(frozen=True)
class Point:
    x: float
    y: float
    total: int
    label: str
    assessment: str


@dataclass(frozen=True)
class Chart:
    width: int
    height: int
    points: list[Point]
    polyline: str
    ticks: list[tuple[float, int]]
    left: int
    right: float
    top: int
    bottom: float
    minimum: int
    maximum: int


def progress_chart(series: ProgressSeries) -> Chart:
    """Evenly spaced in submission order (dates labelled under each point); y from the lowest
    possible total (every item at its minimum) to the highest."""
    items = list(series.instrument.items.all())
    low = sum(i.min_score for i in items)
    high = sum(i.max_score for i in items)
    span = max(high - low, 1)
    inner_w = WIDTH - LEFT - RIGHT
    inner_h = HEIGHT - TOP - BOTTOM
    count = len(series.points)
    points = []
    for index, point in enumerate(series.points):
        x = LEFT + (inner_w / 2 if count == 1 else inner_w * index / (count - 1))
        y = TOP + inner_h * (1 - (point.total - low) / span)
        points.append(Point(round(x, 1), round(y, 1), point.total, point.at.strftime("%d %b"), str(point.assessment.public_id)))
    step = max(1, span // 4)
    ticks = [(round(TOP + inner_h * (1 - (v - low) / span), 1), v) for v in range(low, high + 1, step)]
    if ticks[-1][1] != high:
        ticks.append((float(TOP), high))
    return Chart(
        width=WIDTH, height=HEIGHT, points=points, polyline=" ".join(f"{p.x},{p.y}" for p in points), ticks=ticks,
        left=LEFT, right=WIDTH - RIGHT, top=TOP, bottom=HEIGHT - BOTTOM, minimum=low, maximum=high,
    )
