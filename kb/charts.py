"""Charts for the console, drawn on the server as SVG: no chart library, no script, no network.

    line_chart(days, {"p50": [...], "p95": [...]}, unit="s")

Each series is a list of values (None where a day has no data) over the same days; the y axis
starts at zero and ends at a round number above the largest value.
"""

import math
from datetime import date

from django.utils.html import escape
from django.utils.safestring import SafeString, mark_safe

WIDTH, HEIGHT = 560, 210
LEFT, RIGHT, TOP, BOTTOM = 48, 12, 12, 40
COLOURS = ["#2956d9", "#e0802b", "#127a45", "#b42318", "#7a5af8"]


def nice_ceiling(value: float) -> float:
    """The smallest of 1, 2, 2.5, 5 × 10^k that is at least `value` (1 for nothing)."""
    if value <= 0:
        return 1.0
    magnitude = 10 ** math.floor(math.log10(value))
    return next(step * magnitude for step in (1, 2, 2.5, 5, 10) if step * magnitude >= value)


def _number(value: float) -> str:
    return f"{value:.0f}" if value >= 10 or value == int(value) else f"{value:.1f}".rstrip("0").rstrip(".")


def _ticks(top: float) -> int:
    """Gridlines at round steps: 5 → 1, 2, 3…; 2 → 0.5, 1…; 2.5 → 0.5, 1…; 10 → 2, 4…"""
    leading = top / 10 ** math.floor(math.log10(top))
    return 4 if math.isclose(leading, 2) else 5


def _frame(days: list[date], top: float, unit: str) -> list[str]:
    plot_height = HEIGHT - TOP - BOTTOM
    parts = []
    ticks = _ticks(top)
    for tick in range(ticks + 1):
        value = top * tick / ticks
        y = TOP + plot_height - plot_height * tick / ticks
        parts.append(f'<line x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{y:.1f}" y2="{y:.1f}" class="grid"/>')
        parts.append(
            f'<text x="{LEFT - 6}" y="{y + 4:.1f}" text-anchor="end">{_number(value)}{escape(unit)}</text>'
        )
    label_every = max(1, math.ceil(len(days) / 6))
    for i, day in enumerate(days):
        if i % label_every == 0 or i == len(days) - 1:
            x = _x(i, len(days))
            parts.append(
                f'<text x="{x:.1f}" y="{HEIGHT - BOTTOM + 16}" text-anchor="middle">{day:%m-%d}</text>'
            )
    return parts


def _x(i: int, count: int) -> float:
    plot_width = WIDTH - LEFT - RIGHT
    return LEFT + (plot_width * (i + 0.5) / count if count else 0)


def _y(value: float, top: float) -> float:
    plot_height = HEIGHT - TOP - BOTTOM
    return TOP + plot_height - plot_height * value / top


def _legend(labels: list[str]) -> list[str]:
    parts, x = [], LEFT
    for colour, label in zip(COLOURS, labels, strict=False):
        parts.append(f'<rect x="{x}" y="{HEIGHT - 14}" width="10" height="10" fill="{colour}"/>')
        parts.append(f'<text x="{x + 14}" y="{HEIGHT - 5}">{escape(label)}</text>')
        x += 24 + 7 * len(label)
    return parts


def _svg(title: str, parts: list[str]) -> SafeString:
    return mark_safe(
        f'<svg class="chart" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" aria-label="{escape(title)}" '
        f'xmlns="http://www.w3.org/2000/svg"><title>{escape(title)}</title>{"".join(parts)}</svg>'
    )


def line_chart(
    title: str, days: list[date], series: dict[str, list[float | None]], *, unit: str = ""
) -> SafeString:
    """One line per series; a day without data breaks the line, a lone day is a dot."""
    values = [value for points in series.values() for value in points if value is not None]
    top = nice_ceiling(max(values, default=0))
    parts = _frame(days, top, unit)
    for colour, points in zip(COLOURS, series.values(), strict=False):
        runs, run = [], []
        for i, value in enumerate(points):
            if value is None:
                runs, run = (runs + [run] if run else runs), []
            else:
                run.append((_x(i, len(days)), _y(value, top)))
        runs += [run] if run else []
        for run in runs:
            coordinates = " ".join(f"{x:.1f},{y:.1f}" for x, y in run)
            parts.append(f'<polyline points="{coordinates}" fill="none" stroke="{colour}" stroke-width="2"/>')
            parts += [f'<circle cx="{x:.1f}" cy="{y:.1f}" r="2.5" fill="{colour}"/>' for x, y in run]
    parts += _legend(list(series))
    return _svg(title, parts)


def bar_chart(title: str, days: list[date], series: dict[str, list[float]], *, unit: str = "") -> SafeString:
    """Stacked bars: one bar per day, one segment per series."""
    totals = [sum(values) for values in zip(*series.values(), strict=True)] if series else []
    top = nice_ceiling(max(totals, default=0))
    parts = _frame(days, top, unit)
    slot = (WIDTH - LEFT - RIGHT) / max(1, len(days))
    for i in range(len(days)):
        base = 0.0
        for colour, values in zip(COLOURS, series.values(), strict=False):
            if values[i]:
                y_top, y_base = _y(base + values[i], top), _y(base, top)
                x = _x(i, len(days)) - slot * 0.35
                parts.append(
                    f'<rect x="{x:.1f}" y="{y_top:.1f}" width="{slot * 0.7:.1f}" '
                    f'height="{y_base - y_top:.1f}" fill="{colour}">'
                    f"<title>{days[i]:%Y-%m-%d}: {_number(values[i])}</title></rect>"
                )
                base += values[i]
    parts += _legend(list(series))
    return _svg(title, parts)
