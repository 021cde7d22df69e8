"""A feature's reference and current distributions as an inline SVG bar chart.

One group of two bars per bin (or category) of the reference profile: the
reference's share of rows and the window's. Bar heights are proportional to the
shares on one axis from 0 to the largest share, so the two series compare at a
glance. The geometry is computed here; `templates/distribution.svg` draws it,
with Jinja2's autoescape on every name, and an SVG <title>/<desc> so a screen
reader announces what the chart shows.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import jinja2

LEFT = 64
RIGHT = 16
TOP = 40
PLOT_HEIGHT = 180
LABEL_SPACE = 136  # rotated bin labels, then the axis title
GROUP = 56
MIN_PLOT_WIDTH = 360
LABEL_CHARS = 22

REFERENCE_FILL = "#98a2b3"
CURRENT_FILL = "#d84a4a"

_ENV = jinja2.Environment(
    loader=jinja2.FileSystemLoader(Path(__file__).parent / "templates"),
    autoescape=jinja2.select_autoescape(default=True, default_for_string=True),
    undefined=jinja2.StrictUndefined,
)


@dataclass(frozen=True)
class Bar:
    x: float
    y: float
    width: float
    height: float
    share: float
    series: str  # "reference" or "current"
    fill: str
    tip: str


@dataclass(frozen=True)
class Tick:
    """A bin's label under its group of bars (`full` when `text` is shortened)."""

    x: float
    text: str
    full: str


@dataclass(frozen=True)
class Gridline:
    y: float
    text: str


@dataclass(frozen=True)
class DistributionPlot:
    feature: str
    title: str
    desc: str
    bars: tuple[Bar, ...]
    ticks: tuple[Tick, ...]
    grid: tuple[Gridline, ...]
    width: float
    height: float
    left: float
    top: float
    plot_width: float
    plot_height: float
    x_title: str
    y_title: str = "share of rows"
    reference_fill: str = REFERENCE_FILL
    current_fill: str = CURRENT_FILL

    @property
    def bottom(self) -> float:
        return self.top + self.plot_height


def _scale_top(largest: float) -> float:
    """The axis' upper end: the largest share rounded up to a tenth (at most 1)."""
    if largest <= 0:
        return 0.1
    return max(0.1, min(1.0, math.ceil(largest * 10 - 1e-9) / 10))


def _percent(share: float) -> str:
    return f"{share * 100:.1f}%"


def _short(label: str) -> str:
    return label if len(label) <= LABEL_CHARS else label[: LABEL_CHARS - 1] + "…"


def distribution_plot(
    feature: str,
    labels: Sequence[str],
    reference: Sequence[float],
    current: Sequence[float],
    *,
    kind: str = "numeric",
) -> DistributionPlot:
    """The chart of one feature. `labels` name the reference's bins (bin edges for a
    number, categories otherwise); `current` may be empty (no value in the window)."""
    n = len(labels)
    if len(reference) != n or (current and len(current) != n):
        raise ValueError(
            f"{feature}: {n} labels, {len(reference)} reference and {len(current)} current shares"
        )
    now = list(current) if current else [0.0] * n
    top_share = _scale_top(max([*reference, *now, 0.0]))
    plot_width = max(MIN_PLOT_WIDTH, GROUP * n)
    group = plot_width / max(n, 1)
    bar_width = round(group * 0.36, 2)

    def height(share: float) -> float:
        return round(max(share, 0.0) / top_share * PLOT_HEIGHT, 2)

    bars: list[Bar] = []
    ticks: list[Tick] = []
    for i, label in enumerate(labels):
        middle = LEFT + group * (i + 0.5)
        for offset, series, share, fill in (
            (-bar_width, "reference", reference[i], REFERENCE_FILL),
            (0.0, "current", now[i], CURRENT_FILL),
        ):
            h = height(share)
            bars.append(
                Bar(
                    x=round(middle + offset, 2),
                    y=round(TOP + PLOT_HEIGHT - h, 2),
                    width=bar_width,
                    height=h,
                    share=share,
                    series=series,
                    fill=fill,
                    tip=f"{label}: {series} {_percent(share)}",
                )
            )
        ticks.append(Tick(x=round(middle, 2), text=_short(label), full=label))
    grid = tuple(
        Gridline(y=round(TOP + PLOT_HEIGHT - f * PLOT_HEIGHT, 2), text=_percent(f * top_share))
        for f in (0.0, 0.5, 1.0)
    )
    unit = "bins of the reference (edges)" if kind == "numeric" else "categories"
    moved = sorted(
        range(n), key=lambda i: abs(now[i] - reference[i]) if current else 0.0, reverse=True
    )
    if current and n:
        i = moved[0]
        change = (
            f" The largest change is in {labels[i]}: "
            f"{_percent(reference[i])} of the reference, {_percent(now[i])} of the window."
        )
    else:
        change = " The window has no value of this feature."
    return DistributionPlot(
        feature=feature,
        title=f"Distribution of {feature}: reference vs current window",
        desc=(
            f"Bar chart over {n} {unit} of {feature}; for each, the share of rows in the "
            f"reference profile and in the current window." + change
        ),
        bars=tuple(bars),
        ticks=tuple(ticks),
        grid=grid,
        width=LEFT + plot_width + RIGHT,
        height=TOP + PLOT_HEIGHT + LABEL_SPACE,
        left=LEFT,
        top=TOP,
        plot_width=plot_width,
        plot_height=PLOT_HEIGHT,
        x_title=f"{feature}: {unit}",
    )


def svg(plot: DistributionPlot, ident: str) -> str:
    """The chart as an SVG document, as the reports include it (`templates/_drift.html`
    includes the same template). `ident` makes its element ids unique in a page: an
    id-safe string chosen by the caller, never a feature name."""
    return _ENV.get_template("distribution.svg").render(p=plot, ident=ident)
