"""Chart geometry for the workspace pages: plain SVG drawn by the templates
(templates/console/_line_chart.html, _bar_chart.html) from the numbers below. Server-side, so
the charts need no script, no library and nothing the CSP would block; every number on a
chart is also in a table beside it (screen readers, copying)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

WIDTH, HEIGHT = 640, 240
LEFT, RIGHT, TOP, BOTTOM = 48, 16, 12, 36


@dataclass
class Line:
    name: str
    css: str
    points: str  # "x,y x,y …" for <polyline>
    dots: list[tuple[float, float, str]]  # x, y, tooltip


@dataclass
class Bar:
    x: float
    y: float
    width: float
    height: float
    label: str
    title: str
    colour: str = ""


@dataclass
class Chart:
    width: int = WIDTH
    height: int = HEIGHT
    lines: list[Line] = field(default_factory=list)
    bars: list[Bar] = field(default_factory=list)
    xticks: list[tuple[float, str]] = field(default_factory=list)
    yticks: list[tuple[float, str]] = field(default_factory=list)
    x_label: str = ""
    y_label: str = ""
    plot_left: int = LEFT
    plot_right: int = WIDTH - RIGHT
    plot_top: int = TOP
    plot_bottom: int = HEIGHT - BOTTOM


def _nice_max(value: float) -> float:
    """A round upper bound for an axis (1, 2 or 5 times a power of ten)."""
    if value <= 0:
        return 1.0
    exp = 10 ** math.floor(math.log10(value))
    for step in (1, 2, 5, 10):
        if value <= step * exp:
            return float(step * exp)
    return float(10 * exp)  # pragma: no cover - the loop always returns


def _fmt(value: float) -> str:
    return f"{value:g}" if value >= 1 or value == 0 else f"{value:.2f}"


def line_chart(
    series: Sequence[tuple[str, str, Sequence[tuple[float, float | None]]]],
    *,
    x_label: str,
    y_label: str,
    y_max: float | None = None,
) -> Chart:
    """`series`: (name, css class, [(x, y or None)]); a None y is left out of the line."""
    chart = Chart(x_label=x_label, y_label=y_label)
    xs = [x for _n, _c, pts in series for x, y in pts if y is not None]
    ys = [y for _n, _c, pts in series for _x, y in pts if y is not None]
    if not xs:
        return chart
    x_min, x_max = min(xs), max(xs)
    if x_max == x_min:
        x_min, x_max = x_min - 1, x_max + 1
    top = y_max if y_max is not None else _nice_max(max(ys))
    span_x = chart.plot_right - chart.plot_left
    span_y = chart.plot_bottom - chart.plot_top

    def sx(x: float) -> float:
        return round(chart.plot_left + (x - x_min) / (x_max - x_min) * span_x, 1)

    def sy(y: float) -> float:
        return round(chart.plot_bottom - min(max(y / top, 0.0), 1.0) * span_y, 1)

    for name, css, pts in series:
        kept = [(x, y) for x, y in pts if y is not None]
        chart.lines.append(
            Line(
                name=name,
                css=css,
                points=" ".join(f"{sx(x)},{sy(y)}" for x, y in kept),
                dots=[(sx(x), sy(y), f"{name}: {y:.3f} at {x:g}") for x, y in kept],
            )
        )
    chart.yticks = [(sy(top * i / 4), _fmt(top * i / 4)) for i in range(5)]
    ticks = sorted(set(xs))
    if len(ticks) > 8:
        ticks = [ticks[round(i * (len(ticks) - 1) / 7)] for i in range(8)]
    chart.xticks = [(sx(x), f"{x:g}") for x in ticks]
    return chart


def bar_chart(
    bars: Sequence[tuple[str, float, str]],
    *,
    x_label: str,
    y_label: str,
    label_every: int = 1,
) -> Chart:
    """`bars`: (label, value, colour or ""), drawn left to right."""
    chart = Chart(x_label=x_label, y_label=y_label)
    if not bars:
        return chart
    top = _nice_max(max(value for _l, value, _c in bars))
    span_x = chart.plot_right - chart.plot_left
    span_y = chart.plot_bottom - chart.plot_top
    step = span_x / len(bars)
    width = max(step * 0.8, 1.0)
    for i, (label, value, colour) in enumerate(bars):
        height = value / top * span_y
        x = chart.plot_left + i * step + (step - width) / 2
        chart.bars.append(
            Bar(
                x=round(x, 1),
                y=round(chart.plot_bottom - height, 1),
                width=round(width, 1),
                height=round(height, 1),
                label=label,
                title=f"{label}: {value:g}",
                colour=colour,
            )
        )
        if i % label_every == 0:
            chart.xticks.append((round(x + width / 2, 1), label))
    chart.yticks = [
        (round(chart.plot_bottom - span_y * i / 4, 1), _fmt(top * i / 4)) for i in range(5)
    ]
    return chart
