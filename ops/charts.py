"""Inline SVG bar charts drawn on the server: the dashboard needs no JavaScript."""

from __future__ import annotations

from collections.abc import Sequence

from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString

WIDTH, HEIGHT, PAD_LEFT, PAD_BOTTOM, PAD_TOP = 600, 160, 40, 20, 10


def _n(x: float) -> str:
    return f"{x:.1f}"  # format_html escapes its arguments to strings: format numbers first


def bar_chart(values: Sequence[int], *, title: str, css_id: str, x_labels: tuple[str, str]) -> SafeString:
    """One bar per value (oldest first), a y-axis maximum label and the first and last x labels."""
    top = max(max(values, default=0), 1)
    plot_w, plot_h = WIDTH - PAD_LEFT, HEIGHT - PAD_BOTTOM - PAD_TOP
    step = plot_w / max(len(values), 1)
    bars = format_html_join(
        "", '<rect x="{}" y="{}" width="{}" height="{}" data-value="{}"><title>{}</title></rect>',
        (
            (_n(PAD_LEFT + i * step), _n(PAD_TOP + plot_h - v / top * plot_h), _n(max(step - 1, 1)),
             _n(v / top * plot_h), v, v)
            for i, v in enumerate(values)
        ),
    )
    return format_html(
        '<svg id="{}" class="chart" viewBox="0 0 {} {}" width="{}" height="{}" role="img" aria-label="{}">'
        '<line x1="{}" y1="{}" x2="{}" y2="{}" class="axis"/>'
        '<text x="{}" y="{}" class="label" text-anchor="end">{}</text>'
        '<text x="{}" y="{}" class="label" text-anchor="end">0</text>'
        '<text x="{}" y="{}" class="label">{}</text>'
        '<text x="{}" y="{}" class="label" text-anchor="end">{}</text>'
        "{}</svg>",
        css_id, WIDTH, HEIGHT, WIDTH, HEIGHT, title,
        PAD_LEFT, PAD_TOP + plot_h, WIDTH, PAD_TOP + plot_h,
        PAD_LEFT - 4, PAD_TOP + 8, top,
        PAD_LEFT - 4, PAD_TOP + plot_h,
        PAD_LEFT, HEIGHT - 4, x_labels[0],
        WIDTH - 2, HEIGHT - 4, x_labels[1],
        bars,
    )
