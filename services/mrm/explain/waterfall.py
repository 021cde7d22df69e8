"""The geometry of the report's waterfall chart (drawn as inline SVG by the template).

From the base value, each of the largest contributions moves the output left
or right; the rest are one bar; the last bar ends at the decision's output.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

ROW = 26
LABEL_WIDTH = 260
PLOT_WIDTH = 420
VALUE_WIDTH = 90
TOP = 30


@dataclass(frozen=True)
class Bar:
    label: str
    shap: float
    x: float
    width: float
    y: float
    positive: bool
    text: str


@dataclass(frozen=True)
class Waterfall:
    bars: tuple[Bar, ...]
    width: int
    height: int
    base_x: float
    output_x: float
    base_label: str
    output_label: str
    label_width: int = LABEL_WIDTH
    row: int = ROW


def waterfall(
    items: Sequence[tuple[str, float]], base: float, output: float, top: int = 10
) -> Waterfall:
    """`items` are (label, shap) pairs; the `top` largest by |shap| get their own bar."""
    ranked = sorted(items, key=lambda item: abs(item[1]), reverse=True)
    shown = list(ranked[:top])
    rest = ranked[top:]
    if rest:
        shown.append((f"{len(rest)} other features", sum(s for _, s in rest)))
    points = [base]
    for _, s in shown:
        points.append(points[-1] + s)
    points.append(output)
    lo, hi = min(points), max(points)
    span = (hi - lo) or 1.0

    def x(v: float) -> float:
        return round(LABEL_WIDTH + (v - lo) / span * PLOT_WIDTH, 2)

    bars = []
    level = base
    for i, (label, s) in enumerate(shown):
        start, end = x(level), x(level + s)
        bars.append(
            Bar(
                label=label,
                shap=s,
                x=min(start, end),
                width=max(abs(end - start), 1.0),
                y=TOP + i * ROW,
                positive=s >= 0,
                text=f"{s:+.4g}",
            )
        )
        level += s
    return Waterfall(
        bars=tuple(bars),
        width=LABEL_WIDTH + PLOT_WIDTH + VALUE_WIDTH,
        height=TOP + len(bars) * ROW + 30,
        base_x=x(base),
        output_x=x(output),
        base_label=f"base {base:.4g}",
        output_label=f"output {output:.4g}",
    )
