"""Small inline-SVG bar charts, one bar per hour (stacked when a chart has several series). Pure: data in,
SVG text out; every piece of text is escaped, and each bar segment carries its value in `data-value`
under a stable `data-metric` name, so a test can read what the bar shows."""

from __future__ import annotations

import datetime
import html
import math
from dataclasses import dataclass

WIDTH, HEIGHT = 560, 200
_LEFT, _RIGHT, _TOP, _BOTTOM = 64, 12, 16, 40
_TICKS = 5  # fifths of a top of 1, 2, 2.5 or 5 times a power of ten are round numbers
COLOURS = ("#3b6ea8", "#d08c2c", "#5a9e5a", "#9a5aa8")


@dataclass(frozen=True)
class HourBar:
    hour: int  # unix seconds at the hour's start (UTC)
    values: tuple[float, ...]  # one per series, stacked in order
    note: str  # shown when the bar is hovered


@dataclass(frozen=True)
class Chart:
    name: str  # the stable part of each bar's data-metric
    title: str
    unit: str  # the y axis's unit, e.g. "s" or "$"
    series: tuple[str, ...]
    bars: list[HourBar]  # one per hour of the window, oldest first; empty hours have zeros

    @property
    def empty(self) -> bool:
        return not any(v for bar in self.bars for v in bar.values)


def hour_label(hour: int) -> str:
    return datetime.datetime.fromtimestamp(hour, datetime.UTC).strftime("%H:00")


def hour_key(hour: int) -> str:
    return datetime.datetime.fromtimestamp(hour, datetime.UTC).strftime("%Y-%m-%dT%H:00Z")


def nice_ceiling(value: float) -> float:
    """The smallest of 1, 2, 2.5 or 5 times a power of ten at or above `value`, so axis labels are round."""
    if value <= 0:
        return 1.0
    power = 10.0 ** math.floor(math.log10(value))
    for step in (1.0, 2.0, 2.5, 5.0):
        if value <= step * power * (1 + 1e-9):
            return step * power
    return 10.0 * power


def axis_number(value: float, unit: str) -> str:
    text = f"{value:.6g}" if value < 1_000 else f"{value:,.0f}"
    return f"${text}" if unit == "$" else f"{text} {unit}"


def bar_chart(chart: Chart) -> str:
    e = html.escape
    plot_w, plot_h = WIDTH - _LEFT - _RIGHT, HEIGHT - _TOP - _BOTTOM
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" class="chart" data-chart="{e(chart.name)}" '
             f'width="{WIDTH}" height="{HEIGHT}" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" '
             f'aria-label="{e(chart.title)}">',
             f'<line x1="{_LEFT}" y1="{_TOP + plot_h}" x2="{_LEFT + plot_w}" y2="{_TOP + plot_h}" class="axis"/>']
    if chart.empty:
        parts.append(f'<text x="{_LEFT + plot_w / 2}" y="{_TOP + plot_h / 2}" class="empty" '
                     f'text-anchor="middle">no data yet</text>')
    top = nice_ceiling(max((sum(b.values) for b in chart.bars), default=0.0))
    for i in range(_TICKS + 1):  # gridlines and y labels at 0, 1/5 ... of the top
        value = top * i / _TICKS
        y = _TOP + plot_h - plot_h * i / _TICKS
        if i:
            parts.append(f'<line x1="{_LEFT}" y1="{y:.1f}" x2="{_LEFT + plot_w}" y2="{y:.1f}" class="grid"/>')
        parts.append(f'<text x="{_LEFT - 6}" y="{y + 4:.1f}" text-anchor="end" class="label">'
                     f'{e(axis_number(value, chart.unit))}</text>')
    slot = plot_w / max(1, len(chart.bars))
    label_every = max(1, math.ceil(len(chart.bars) / 8))
    for index, bar in enumerate(chart.bars):
        x = _LEFT + index * slot + slot * 0.15
        base = float(_TOP + plot_h)
        parts.append(f'<g><title>{e(hour_label(bar.hour))} UTC: {e(bar.note)}</title>')
        for series, value, colour in zip(chart.series, bar.values, COLOURS, strict=False):
            h = plot_h * value / top
            base -= h
            metric = f"chart:{chart.name}:{series}:{hour_key(bar.hour)}"
            parts.append(f'<rect x="{x:.1f}" y="{base:.1f}" width="{slot * 0.7:.1f}" height="{h:.1f}" '
                         f'fill="{colour}" data-metric="{e(metric)}" data-value="{value!r}"/>')
        parts.append("</g>")
        if (len(chart.bars) - 1 - index) % label_every == 0:  # the latest hour always labelled
            parts.append(f'<text x="{x + slot * 0.35:.1f}" y="{_TOP + plot_h + 16}" text-anchor="middle" '
                         f'class="label">{e(hour_label(bar.hour))}</text>')
    parts.append(f'<text x="{_LEFT + plot_w / 2}" y="{HEIGHT - 4}" text-anchor="middle" class="label">'
                 f'hour (UTC)</text>')
    if len(chart.series) > 1:
        for i, (series, colour) in enumerate(zip(chart.series, COLOURS, strict=False)):
            lx = _LEFT + 8 + i * 90
            parts.append(f'<rect x="{lx}" y="{_TOP - 10}" width="10" height="10" fill="{colour}"/>'
                         f'<text x="{lx + 14}" y="{_TOP - 1}" class="label">{e(series)}</text>')
    parts.append("</svg>")
    return "".join(parts)
