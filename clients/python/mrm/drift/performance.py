"""Live performance once labels arrive, against the deploy snapshot.

Labels compare as strings (a whole float reads as an int: 1.0 is "1"). Precision, recall
and f1 are for `positive_label` when given (binary), else macro-averaged over the labels
seen; 0/0 counts as 0. A metric breaches when the snapshot's value minus the live one is
at least `thresholds.metric_drop`, and only in a window of at least `min_rows` rows.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from sklearn import metrics  # type: ignore[import-untyped,unused-ignore]

from mrm.drift.compare import Breach
from mrm.drift.config import MonitorConfig
from mrm.drift.profile import category

GUARDED = ("accuracy", "precision", "recall", "f1")
_TOLERANCE = 1e-12  # 0.95 - 0.90 is 0.04999999999999993 in floats


def live_metrics(
    y_true: Sequence[object], y_pred: Sequence[object], positive_label: str | None
) -> dict[str, float]:
    """accuracy, precision, recall and f1 of the labelled rows ({} when there are none)."""
    if len(y_true) != len(y_pred):
        raise ValueError(f"y_true has {len(y_true)} labels, y_pred {len(y_pred)}")
    if not y_true:
        return {}
    truth = [category(v) for v in y_true]
    pred = [category(v) for v in y_pred]
    kw: dict[str, object] = {"average": "macro", "zero_division": 0}
    if positive_label is not None:
        kw.update(average="binary", pos_label=positive_label)
    return {
        "accuracy": float(metrics.accuracy_score(truth, pred)),
        "precision": float(metrics.precision_score(truth, pred, **kw)),
        "recall": float(metrics.recall_score(truth, pred, **kw)),
        "f1": float(metrics.f1_score(truth, pred, **kw)),
    }


def _snapshot_value(snapshot: Mapping[str, object], name: str) -> float | None:
    """A top-level number, else the deploy snapshot's multiclass `average.macro` one."""
    value = snapshot.get(name)
    if value is None:
        average = snapshot.get("average")
        macro = average.get("macro") if isinstance(average, Mapping) else None
        value = macro.get(name) if isinstance(macro, Mapping) else None
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    return None


def performance_breaches(
    live: Mapping[str, float],
    snapshot: Mapping[str, object],
    rows: int,
    config: MonitorConfig,
) -> list[Breach]:
    """One "performance" breach per guarded metric that dropped by `metric_drop` or more;
    `value` is the drop."""
    if rows < config.min_rows:
        return []
    drop = config.thresholds.metric_drop
    out = []
    for name in GUARDED:
        before = _snapshot_value(snapshot, name)
        if before is None or name not in live:
            continue
        fall = before - live[name]
        if fall + _TOLERANCE >= drop:
            out.append(Breach("performance", name, None, fall, drop))
    return out
