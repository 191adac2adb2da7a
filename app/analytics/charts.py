"""Server-rendered SVG charts: inline markup, no JavaScript, nothing our CSP would block.

Colours come from CSS classes (``series-0`` .. ``series-5``, ``axis``, ``bar``) so the
stylesheet can theme them; every element also carries a plain ``fill``/``stroke`` so a
chart still reads without that stylesheet. There are no ``style`` attributes and no
scripts, and every piece of text passes through ``escape``. Each data mark has a
``<title>`` child, which browsers show as a tooltip.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

from markupsafe import Markup, escape

PALETTE = ("#2563eb", "#f59e0b", "#10b981", "#ef4444", "#8b5cf6", "#6b7280")
WIDTH = 640
AXIS = 'class="axis" stroke="#9ca3af"'
MUTED = 'class="tick" fill="#4b5563" font-size="11"'
MAX_X_LABELS = 8
MAX_LABEL_CHARS = 24

# The plot area of the vertical charts, in viewBox units.
LEFT, RIGHT, TOP, PLOT_HEIGHT = 56, WIDTH - 16, 12, 200
BOTTOM = TOP + PLOT_HEIGHT
LEGEND_TOP = BOTTOM + 28


def bar_chart(data: Sequence[tuple[str, float]], *, title: str, unit: str = "",
              max_value: float | None = None) -> Markup:
    """Horizontal bars, one per (label, value): labels on the left, values at the bar ends."""
    top = max_value if max_value is not None else max((v for _, v in data), default=0.0)
    if top <= 0 or all(v <= 0 for _, v in data):
        return no_data(title)
    label_right, bar_left, bar_span, row = 160, 168, 400, 28
    parts: list[str] = []
    for i, (label, value) in enumerate(data):
        y = 4 + i * row
        length = min(max(value, 0.0) / top, 1.0) * bar_span
        parts.append(
            f'<text x="{label_right}" y="{y + 14}" text-anchor="end" {MUTED}>'
            f"{escape(_shorten(label))}</text>"
            f'<rect class="bar series-0" fill="{PALETTE[0]}" x="{bar_left}" y="{y + 2}"'
            f' width="{length:.2f}" height="18">{_tooltip(label, value, unit)}</rect>'
            f'<text x="{bar_left + length + 6:.2f}" y="{y + 15}" {MUTED}>'
            f"{escape(_number(value, unit))}</text>"
        )
    return _svg(title, 8 + len(data) * row, parts)


def line_chart(x_labels: Sequence[str], series: Mapping[str, Sequence[float | None]], *,
               title: str, y_max: float | None = None, unit: str = "") -> Markup:
    """One line per series over the x labels; a None value leaves a gap in its line."""
    _check_lengths(x_labels, series)
    present = [v for values in series.values() for v in values if v is not None]
    top = y_max if y_max is not None else max(present, default=0.0)
    # Zeros on a fixed scale (an accuracy of 0%) are data; on a free scale there is no line.
    if not x_labels or not present or top <= 0 or (y_max is None
                                                   and all(v <= 0 for v in present)):
        return no_data(title)
    xs = _x_positions(len(x_labels), slot=False)
    parts = _frame(x_labels, xs, top, unit)
    for index, (name, values) in enumerate(series.items()):
        cls, colour = _series(index)
        points = [(xs[i], _y(v, top), x_labels[i], v) for i, v in enumerate(values)
                  if v is not None]
        parts.append(f'<g class="{cls}" fill="{colour}" stroke="{colour}">')
        for run in _runs(values, xs, top):
            parts.append(f'<polyline fill="none" stroke-width="2" points="{run}">'
                         f"<title>{escape(name)}</title></polyline>")
        parts.extend(f'<circle cx="{x:.2f}" cy="{y:.2f}" r="3">'
                     f"{_tooltip(f'{name} · {label}', v, unit)}</circle>"
                     for x, y, label, v in points)
        parts.append("</g>")
    parts.extend(_legend(list(series), LEGEND_TOP))
    return _svg(title, LEGEND_TOP + _legend_height(len(series)), parts)


def stacked_bar_chart(x_labels: Sequence[str], series: Mapping[str, Sequence[float]], *,
                      title: str) -> Markup:
    """Vertical bars per x label, each stacked from the series' values (zeros are skipped)."""
    _check_lengths(x_labels, series)
    totals = [sum(max(values[i], 0.0) for values in series.values())
              for i in range(len(x_labels))]
    top = max(totals, default=0.0)
    if top <= 0:
        return no_data(title)
    xs = _x_positions(len(x_labels), slot=True)
    width = 0.7 * (RIGHT - LEFT) / len(x_labels)
    parts = _frame(x_labels, xs, top, "")
    for i, label in enumerate(x_labels):
        base = 0.0
        for index, (name, values) in enumerate(series.items()):
            value = max(values[i], 0.0)
            if value == 0:
                continue
            cls, colour = _series(index)
            y_top, y_bottom = _y(base + value, top), _y(base, top)
            parts.append(
                f'<rect class="bar {cls}" fill="{colour}" x="{xs[i] - width / 2:.2f}"'
                f' y="{y_top:.2f}" width="{width:.2f}" height="{y_bottom - y_top:.2f}">'
                f"{_tooltip(f'{name} · {label}', value, '')}</rect>"
            )
            base += value
    parts.extend(_legend(list(series), LEGEND_TOP))
    return _svg(title, LEGEND_TOP + _legend_height(len(series)), parts)


def no_data(title: str) -> Markup:
    """The small placeholder every chart shows when there is nothing to draw."""
    return _svg(title, 40, [f'<text x="{WIDTH / 2:.0f}" y="24" text-anchor="middle"'
                            f' class="empty" fill="#6b7280">No data yet</text>'])


def _svg(title: str, height: float, parts: list[str]) -> Markup:
    return Markup(
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {WIDTH} {height:.0f}"'
        f' width="100%" role="img" aria-label="{escape(title)}" class="chart"'
        f' font-family="sans-serif">{"".join(parts)}</svg>'
    )


def _frame(x_labels: Sequence[str], xs: list[float], top: float, unit: str) -> list[str]:
    """Axes, the 0 and max ticks of the y axis, and the x labels, thinned to fit."""
    parts = [
        f'<line {AXIS} x1="{LEFT}" y1="{BOTTOM}" x2="{RIGHT}" y2="{BOTTOM}"/>',
        f'<line {AXIS} x1="{LEFT}" y1="{TOP}" x2="{LEFT}" y2="{BOTTOM}"/>',
        f'<line class="grid" stroke="#e5e7eb" x1="{LEFT}" y1="{TOP}" x2="{RIGHT}" y2="{TOP}"/>',
    ]
    for value, y in ((0.0, BOTTOM), (top, TOP)):
        parts.append(f'<text x="{LEFT - 6}" y="{y + 4}" text-anchor="end" {MUTED}>'
                     f"{escape(_number(value, unit))}</text>")
    step = math.ceil(len(x_labels) / MAX_X_LABELS)
    for i in range(0, len(x_labels), step):
        parts.append(f'<text x="{xs[i]:.2f}" y="{BOTTOM + 16}" text-anchor="middle" {MUTED}>'
                     f"{escape(_shorten(x_labels[i], 12))}</text>")
    return parts


def _legend(names: list[str], y: float) -> list[str]:
    per_row, column = 4, (RIGHT - LEFT) / 4
    parts = []
    for index, name in enumerate(names):
        cls, colour = _series(index)
        x = LEFT + (index % per_row) * column
        row_y = y + (index // per_row) * 20
        parts.append(f'<rect class="swatch {cls}" fill="{colour}" x="{x:.2f}" y="{row_y}"'
                     f' width="10" height="10"/><text x="{x + 14:.2f}" y="{row_y + 9}"'
                     f' {MUTED}>{escape(_shorten(name, 20))}</text>')
    return parts


def _legend_height(count: int) -> int:
    return 20 * math.ceil(count / 4)


def _runs(values: Sequence[float | None], xs: list[float], top: float) -> list[str]:
    """The `points` of each stretch of values without a None in it."""
    runs: list[list[str]] = [[]]
    for x, v in zip(xs, values, strict=True):
        if v is None:
            runs.append([])
        else:
            runs[-1].append(f"{x:.2f},{_y(v, top):.2f}")
    return [" ".join(run) for run in runs if run]


def _x_positions(count: int, *, slot: bool) -> list[float]:
    # Bars sit in the middle of equal slots; line points run from edge to edge.
    span = RIGHT - LEFT
    if slot:
        return [LEFT + (i + 0.5) * span / count for i in range(count)]
    if count == 1:
        return [LEFT + span / 2]
    return [LEFT + 8 + i * (span - 16) / (count - 1) for i in range(count)]


def _y(value: float, top: float) -> float:
    return BOTTOM - min(max(value, 0.0) / top, 1.0) * PLOT_HEIGHT


def _series(index: int) -> tuple[str, str]:
    return f"series-{index % len(PALETTE)}", PALETTE[index % len(PALETTE)]


def _check_lengths(x_labels: Sequence[str], series: Mapping[str, Sequence[object]]) -> None:
    for name, values in series.items():
        if len(values) != len(x_labels):
            raise ValueError(f"series {name!r} has {len(values)} values for "
                             f"{len(x_labels)} x labels")


def _tooltip(label: str, value: float, unit: str) -> str:
    return f"<title>{escape(label)}: {escape(_number(value, unit))}</title>"


def _number(value: float, unit: str) -> str:
    text = f"{value:,.2f}".rstrip("0").rstrip(".") if math.isfinite(value) else str(value)
    return f"{text}{unit}"


def _shorten(text: str, limit: int = MAX_LABEL_CHARS) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"
