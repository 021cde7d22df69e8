"""The `[monitor]` table of mrm.toml: which windows to judge, and how.

    [[monitor.window]]
    rows = 500                 # or seconds = 3600 (exactly one)
    step = 100                 # optional, same unit: rolling; absent: tumbling

    [[monitor.window]]         # as many windows as wanted, no two the same
    seconds = 3600
    step = 600

    [monitor]
    min_rows = 200             # a window with fewer rows is not judged
    alpha = 0.01               # significance level, Benjamini-Hochberg corrected

    [monitor.thresholds]       # effect sizes; a breach is value >= threshold
    psi = 0.2
    js = 0.1
    ...

Every window is judged on its own (mrm.monitor.engine): per model version, each
has its own buffer, its own DRIFT records (their `window.spec` names it, and so
does their id when there are several) and its own restart position. An alert
is per problem, not per window: a drift one window raised is not raised again
by another while it is unacknowledged.

Every problem is one `ValueError` line that names the key, for example
`monitor.thresholds.psi: must be a number > 0, got "x"`.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

Unit = Literal["rows", "seconds"]

DEFAULTS: dict[str, tuple[object, str]] = {
    "window": ([{"rows": 500}], "windows to judge: {rows|seconds = N, step = M (rolling)}"),
    "min_rows": (200, "a window with fewer rows is not judged"),
    "alpha": (0.01, "significance level of the drift tests, Benjamini-Hochberg corrected"),
    "thresholds.psi": (0.2, "population stability index of a feature's bins"),
    "thresholds.js": (0.1, "Jensen-Shannon distance (base 2) of a feature's bins"),
    "thresholds.ks": (0.1, "Kolmogorov-Smirnov statistic of a numeric feature"),
    "thresholds.wasserstein": (0.1, "Wasserstein distance over the reference's std"),
    "thresholds.cramers_v": (0.1, "Cramér's V of a categorical feature vs the reference"),
    "thresholds.missing": (0.05, "increase in a feature's missing share over the reference"),
    "thresholds.out_of_range": (0.05, "share of numeric values outside the reference's range"),
    "thresholds.prediction_psi": (0.2, "population stability index of the predictions"),
    "thresholds.metric_drop": (0.05, "absolute drop of accuracy/precision/recall/f1"),
}


def _default(key: str) -> Any:
    return DEFAULTS[key][0]


def _show(value: object) -> str:
    try:
        return json.dumps(value)
    except (TypeError, ValueError):
        return repr(value)


def _unknown(where: str, table: Mapping[str, object], known: tuple[str, ...]) -> None:
    for key in table:
        if key not in known:
            raise ValueError(f"{where}.{key}: unknown key (known: {', '.join(known)})")


def _is_number(value: object) -> bool:
    return (
        isinstance(value, int | float)
        and not isinstance(value, bool)
        and math.isfinite(float(value))
    )


def _positive_int(where: str, value: object) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
        raise ValueError(f"{where}: must be an integer > 0, got {_show(value)}")
    return value


@dataclass(frozen=True)
class WindowSpec:
    """One window: `size` rows or seconds; `step` set means rolling, None tumbling."""

    unit: Unit
    size: int
    step: int | None = None

    @property
    def rolling(self) -> bool:
        return self.step is not None

    @property
    def label(self) -> str:
        """The spec as one word, e.g. `rows=500` or `seconds=3600/step=600`: what the
        monitor's record ids name a window by when a version has several."""
        return "/".join(f"{k}={v}" for k, v in self.to_json().items())

    def to_json(self) -> dict[str, int]:
        out: dict[str, int] = {self.unit: self.size}
        if self.step is not None:
            out["step"] = self.step
        return out

    @classmethod
    def from_table(cls, where: str, table: object) -> WindowSpec:
        if not isinstance(table, Mapping):
            raise ValueError(f"{where}: must be a table, got {_show(table)}")
        _unknown(where, table, ("rows", "seconds", "step"))
        units = [u for u in ("rows", "seconds") if u in table]
        if len(units) != 1:
            raise ValueError(f"{where}: needs exactly one of rows or seconds")
        unit: Unit = "rows" if units[0] == "rows" else "seconds"
        size = _positive_int(f"{where}.{unit}", table[unit])
        step = None
        if "step" in table:
            step = _positive_int(f"{where}.step", table["step"])
            if step > size:
                raise ValueError(f"{where}.step: must be <= {unit} ({size}), got {step}")
        return cls(unit, size, step)


@dataclass(frozen=True)
class Thresholds:
    """Effect-size thresholds; each breaches when the measured value is >= it."""

    psi: float = _default("thresholds.psi")
    js: float = _default("thresholds.js")
    ks: float = _default("thresholds.ks")
    wasserstein: float = _default("thresholds.wasserstein")
    cramers_v: float = _default("thresholds.cramers_v")
    missing: float = _default("thresholds.missing")
    out_of_range: float = _default("thresholds.out_of_range")
    prediction_psi: float = _default("thresholds.prediction_psi")
    metric_drop: float = _default("thresholds.metric_drop")

    @classmethod
    def from_table(cls, where: str, table: object) -> Thresholds:
        if not isinstance(table, Mapping):
            raise ValueError(f"{where}: must be a table, got {_show(table)}")
        known = tuple(k.split(".", 1)[1] for k in DEFAULTS if k.startswith("thresholds."))
        _unknown(where, table, known)
        values: dict[str, float] = {}
        for key, value in table.items():
            if not (isinstance(value, int | float) and _is_number(value) and value > 0):
                raise ValueError(f"{where}.{key}: must be a number > 0, got {_show(value)}")
            values[key] = float(value)
        return cls(**values)


@dataclass(frozen=True)
class MonitorConfig:
    """The parsed `[monitor]` table; `MonitorConfig()` is the defaults."""

    windows: tuple[WindowSpec, ...] = (WindowSpec("rows", 500),)
    min_rows: int = _default("min_rows")
    alpha: float = _default("alpha")
    thresholds: Thresholds = field(default_factory=Thresholds)

    @classmethod
    def from_table(cls, table: Mapping[str, object]) -> MonitorConfig:
        """Parse `[monitor]` as a plain dict (what tomllib gives); ValueError names the key."""
        where = "monitor"
        _unknown(where, table, ("window", "min_rows", "alpha", "thresholds"))
        windows = cls.windows
        if "window" in table:
            raw = table["window"]
            if not isinstance(raw, list) or not raw:
                raise ValueError(
                    f"{where}.window: must be a non-empty list of tables "
                    f"([[monitor.window]]), got {_show(raw)}"
                )
            windows = tuple(
                WindowSpec.from_table(f"{where}.window[{i}]", w) for i, w in enumerate(raw)
            )
            for i, spec in enumerate(windows):
                if spec in windows[:i]:
                    same = windows.index(spec)
                    raise ValueError(
                        f"{where}.window[{i}]: the same window as {where}.window[{same}] "
                        f"({spec.label})"
                    )
        min_rows = _positive_int(f"{where}.min_rows", table.get("min_rows", cls.min_rows))
        alpha = table.get("alpha", cls.alpha)
        if not (isinstance(alpha, int | float) and _is_number(alpha) and 0 < alpha < 1):
            raise ValueError(f"{where}.alpha: must be a number in (0, 1), got {_show(alpha)}")
        thresholds = Thresholds.from_table(f"{where}.thresholds", table.get("thresholds", {}))
        return cls(windows, min_rows, float(alpha), thresholds)

    def to_json(self) -> dict[str, Any]:
        """The table form, which `from_json` (and `from_table`) read back."""
        return {
            "window": [w.to_json() for w in self.windows],
            "min_rows": self.min_rows,
            "alpha": self.alpha,
            "thresholds": asdict(self.thresholds),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, object]) -> MonitorConfig:
        return cls.from_table(data)
