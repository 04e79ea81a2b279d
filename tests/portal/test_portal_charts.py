"""Server-side SVG charts: escaped, bounded, drawn where the data says."""

from __future__ import annotations

import re

from masnaa.portal.charts import MAX_POINTS, Series, line_chart


def fmt(v: float) -> str:
    return f"{v:g}"


def test_points_land_inside_the_plot_and_labels_are_escaped() -> None:
    svg = line_chart(
        [Series("<b>policy</b>", [(0, 0), (10, 1)])], title="a <title> & more",
        fmt_x=fmt, fmt_y=fmt, width=200, height=100,
    )
    assert "<b>" not in svg and "&lt;b&gt;policy&lt;/b&gt;" in svg
    assert "a &lt;title&gt; &amp; more" in svg
    coords = re.search(r'points="([^"]+)"', svg)
    assert coords is not None
    (x0, y0), (x1, y1) = (tuple(map(float, p.split(","))) for p in coords.group(1).split())
    assert x0 < x1 and y0 > y1  # left to right, upwards
    assert x0 >= 0 and x1 <= 200 and y1 >= 0 and y0 <= 100


def test_long_series_are_thinned() -> None:
    points = [(float(i), float(i % 7)) for i in range(10_000)]
    svg = line_chart([Series("s", points)], title="t", fmt_x=fmt, fmt_y=fmt)
    coords = re.search(r'points="([^"]+)"', svg)
    assert coords is not None and len(coords.group(1).split()) == MAX_POINTS
    assert len(svg) < 8000


def test_log_axis_skips_non_positive_values() -> None:
    svg = line_chart([Series("s", [(0, 0), (1, 0.5), (100, 1)])], title="t", fmt_x=fmt,
                     fmt_y=fmt, log_x=True)
    coords = re.search(r'points="([^"]+)"', svg)
    assert coords is not None and len(coords.group(1).split()) == 2


def test_no_data_draws_nothing() -> None:
    assert line_chart([], title="t", fmt_x=fmt, fmt_y=fmt) == ""


def test_a_label_is_written_once_where_coarse_units_repeat_it() -> None:
    # One GPU-hour in whole hours and half a day in whole days: five ticks each, but
    # only the distinct labels are drawn.
    svg = line_chart([Series("s", [(0, 1.0), (43_200, 0.0)])], title="t",
                     fmt_x=lambda v: f"day {int(v // 86_400)}", fmt_y=lambda v: f"{v:.0f}")
    labels = re.findall(r">([^<>]+)</text>", svg)
    assert labels.count("0") == 1 and labels.count("1") == 1
    assert labels.count("day 0") == 1
