"""The burn-down chart of one allocation, as inline SVG (``charts.line_chart``).

Terms: the **burn-down** is the allocation's released GPU-hours left at the
end of each day since its start (``accounting.balance.burn_down``); the
**projection** is a straight line from the last day at the recent burn rate
down to the projected exhaustion date (``funders_report``), or to the expiry
when the rate would not exhaust it first (the rest lapses; at no burn the
line is flat).

Invariants: days are drawn as UTC instants and labelled by the caller's
``fmt_day`` (the page's locale); hours are never negative on the axis (an
overdraft is shown in the table, not below the axis); the chart's size is
bounded by ``charts.MAX_POINTS`` whatever the allocation's length.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import UTC, date, datetime

from markupsafe import Markup

from masnaa.accounting.balance import BurnDownPoint
from masnaa.portal.charts import Series, line_chart

DAY = 86400


def _x(day: date) -> float:
    return datetime(day.year, day.month, day.day, tzinfo=UTC).timestamp()


def burn_down_chart(
    points: Sequence[BurnDownPoint],
    *,
    title: str,
    remaining_label: str,
    projected_label: str,
    projected_until: date | None,
    burn_hours_per_day: float,
    fmt_day: Callable[[float], str],
    fmt_hours: Callable[[float], str],
) -> Markup:
    """Remaining GPU-hours per day, and the projection (when there is a burn rate).

    ``projected_until`` is the projected exhaustion day or, when the burn
    would not exhaust it, the expiry day; ``burn_hours_per_day`` its slope."""
    if not points:
        return Markup("")
    # The day of a point is its end: the balance left after that day's use.
    first = points[0]
    released = (first.remaining_gpu_seconds + first.used_gpu_seconds) / 3600
    if released <= 0 and all(p.remaining_gpu_seconds <= 0 for p in points):
        return Markup("")  # no GPU-time yet (requested, rejected): nothing to burn down
    remaining = [(_x(first.day), max(0.0, released))]
    remaining += [(_x(p.day) + DAY, max(0.0, p.remaining_gpu_seconds / 3600)) for p in points]
    series = [Series(remaining_label, remaining)]
    last_x, last_y = remaining[-1]
    # Drawn to the end even at no burn (a flat line: nothing would be used), so
    # the axis always spans the allocation's life.
    if projected_until is not None and last_y > 0:
        end_x = max(_x(projected_until), last_x)
        end_y = max(0.0, last_y - burn_hours_per_day * (end_x - last_x) / DAY)
        series.append(Series(projected_label, [(last_x, last_y), (end_x, end_y)]))
    top = max(y for s in series for _, y in s.points) or 1.0
    return line_chart(series, title=title, fmt_x=fmt_day, fmt_y=fmt_hours, y_max=top)
