"""Small line charts rendered on the server as inline SVG (no script, no library).

``line_chart`` draws one polyline per series on shared axes, with a few
labelled ticks and a legend. Every text is escaped; numbers on the axes are
formatted by the caller's ``fmt_x``/``fmt_y`` (the page's locale). The chart
is ``role="img"`` with a title: the page shows the same numbers in a table,
so nothing is only in the picture.

Invariants: output size is bounded — each series is thinned to at most
``MAX_POINTS`` points — so a chart costs a few kilobytes whatever the data.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from markupsafe import Markup, escape

MAX_POINTS = 120
PALETTE = ("#1f5fbf", "#b3261e", "#1b7f3b", "#7b3fa0", "#a15c00", "#00777a")
"""Dark enough for lines on white (each ≥ 4.5:1)."""


@dataclass(frozen=True, slots=True)
class Series:
    label: str
    points: Sequence[tuple[float, float]]


def _thin(points: Sequence[tuple[float, float]]) -> list[tuple[float, float]]:
    if len(points) <= MAX_POINTS:
        return list(points)
    step = (len(points) - 1) / (MAX_POINTS - 1)
    return [points[round(i * step)] for i in range(MAX_POINTS)]


def _ticks(lo: float, hi: float, count: int = 5) -> list[float]:
    if hi <= lo:
        return [lo]
    return [lo + (hi - lo) * i / (count - 1) for i in range(count)]


def line_chart(
    series: Sequence[Series],
    *,
    title: str,
    fmt_x: Callable[[float], str],
    fmt_y: Callable[[float], str],
    log_x: bool = False,
    y_max: float | None = None,
    width: int = 640,
    height: int = 260,
) -> Markup:
    left, right, top, bottom = 64, 16, 12, 36
    plot_w, plot_h = width - left - right, height - top - bottom
    pts = [(x, y) for s in series for (x, y) in s.points if not log_x or x > 0]
    if not pts:
        return Markup("")
    tx = (lambda v: math.log10(v)) if log_x else (lambda v: v)
    xs = [tx(x) for x, _ in pts]
    x_lo, x_hi = min(xs), max(xs)
    y_lo, y_hi = 0.0, y_max if y_max is not None else max(y for _, y in pts) or 1.0
    x_span = (x_hi - x_lo) or 1.0
    y_span = (y_hi - y_lo) or 1.0

    def px(x: float) -> float:
        return left + (tx(x) - x_lo) / x_span * plot_w

    def py(y: float) -> float:
        return top + plot_h - (min(y, y_hi) - y_lo) / y_span * plot_h

    out = [
        f'<svg class="chart" viewBox="0 0 {width} {height}" role="img" '
        f'aria-label="{escape(title)}" xmlns="http://www.w3.org/2000/svg">',
        f"<title>{escape(title)}</title>",
        '<g font-size="11" fill="#4f5862">',
    ]
    # A short span written in coarse units gives the same label at several ticks
    # ("0, 0, 0, 1, 1"; one day five times): each label is written once, at its first tick.
    said = ""
    for v in _ticks(y_lo, y_hi):
        y = py(v)
        label = fmt_y(v)
        out.append(
            f'<line x1="{left}" x2="{left + plot_w}" y1="{y:.1f}" y2="{y:.1f}" stroke="#dde2e6"/>'
        )
        if label != said:
            out.append(
                f'<text x="{left - 6}" y="{y + 4:.1f}" text-anchor="end">{escape(label)}</text>'
            )
        said = label
    x_ticks = _ticks(x_lo, x_hi)
    said = ""
    for v in x_ticks:
        x = left + (v - x_lo) / x_span * plot_w
        label = fmt_x(10**v if log_x else v)
        if label == said:
            continue
        said = label
        # The last label ends at the right edge, so a long one is not cut off.
        anchor = "end" if v == x_ticks[-1] and len(x_ticks) > 1 else "middle"
        out.append(
            f'<text x="{x:.1f}" y="{top + plot_h + 16}" text-anchor="{anchor}">'
            f"{escape(label)}</text>"
        )
    out.append("</g>")
    out.append(
        f'<rect x="{left}" y="{top}" width="{plot_w}" height="{plot_h}" fill="none" '
        f'stroke="#6b7580"/>'
    )
    for i, s in enumerate(series):
        colour = PALETTE[i % len(PALETTE)]
        coords = " ".join(
            f"{px(x):.1f},{py(y):.1f}" for x, y in _thin(s.points) if not log_x or x > 0
        )
        out.append(
            f'<polyline fill="none" stroke="{colour}" stroke-width="2" points="{coords}"/>'
        )
    out.append("</svg>")
    legend = "".join(
        f'<li><svg width="18" height="10" aria-hidden="true"><line x1="0" x2="18" y1="5" y2="5" '
        f'stroke="{PALETTE[i % len(PALETTE)]}" stroke-width="3"/></svg> {escape(s.label)}</li>'
        for i, s in enumerate(series)
    )
    return Markup("".join(out) + f'<ul class="legend">{legend}</ul>')
