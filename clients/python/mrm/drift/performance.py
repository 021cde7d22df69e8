"""Live performance once labels arrive, against the deploy snapshot.

Labels compare as strings (a whole float reads as an int: 1.0 is "1"). Precision, recall
and f1 are for `positive_label` when given (binary), else macro-averaged over the labels
seen; 0/0 counts as 0.

A metric breaches when the snapshot's value minus the live one is at least
`thresholds.metric_drop` AND a one-sided test says the live value is below the deploy-time
one: its p-value, Benjamini-Hochberg adjusted over the window's tests, is below `alpha`.
The drop keeps a huge window's tiny, significant differences quiet; the test keeps a
small window's noise quiet (accuracy on 200 rows has a standard deviation near 0.02).
Only a window of at least `min_rows` rows is judged.

The tests are on proportions: accuracy is correct/n, precision TP/(TP+FP), recall
TP/(TP+FN). When the snapshot has its confusion matrix (the deploy snapshot does), the
live counts are compared with the deploy-time counts by Fisher's exact test on the 2x2
table, which allows for the evaluation set's own sampling error. Without it, the
deploy-time figure is taken as the true rate: `binomtest(k, n, p=deploy, "less")`.
A multiclass window tests accuracy and each class's precision and recall; a macro
average is significantly down when one of its classes is (needs the confusion matrix).
F1 has no exact test: it breaches when it dropped by the threshold and the precision or
the recall behind it is significantly down. A proportion with no rows (no predicted
positives, say) is not tested, so its metric does not breach.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import numpy as np
from scipy import stats  # type: ignore[import-untyped,unused-ignore]
from sklearn import metrics  # type: ignore[import-untyped,unused-ignore]

from mrm.drift.compare import Breach
from mrm.drift.config import MonitorConfig
from mrm.drift.profile import category

GUARDED = ("accuracy", "precision", "recall", "f1")
_TOLERANCE = 1e-12  # 0.95 - 0.90 is 0.04999999999999993 in floats

Counts = tuple[int, int]  # (successes, trials)


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


@dataclass(frozen=True)
class ProportionTest:
    """One one-sided test that a live proportion is below the deploy-time one.

    `name` is accuracy, precision or recall, with `[label]` for one class of a
    multiclass model; `deploy` is the deploy-time counts (fisher) or rate (binomial)."""

    name: str
    live: Counts
    deploy: Counts | float
    test: Literal["fisher", "binomial"]
    p: float
    p_adjusted: float = 1.0

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        out["live"] = list(self.live)
        out["deploy"] = list(self.deploy) if isinstance(self.deploy, tuple) else self.deploy
        return out


@dataclass
class PerformanceReport:
    """A judged outcomes window: live metrics, the tests behind them, the breaches."""

    rows: int
    judged: bool
    live: dict[str, float]
    tests: list[ProportionTest] = field(default_factory=list)
    p_values: dict[str, float | None] = field(default_factory=dict)
    """Per guarded metric, the adjusted p-value its breach needs below alpha (None: untested)."""
    breaches: list[Breach] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "rows": self.rows,
            "judged": self.judged,
            "p_values": dict(self.p_values),
            "tests": [t.to_json() for t in self.tests],
            "breaches": [b.to_json() for b in self.breaches],
        }


def _confusion(snapshot: Mapping[str, object]) -> dict[tuple[str, str], int] | None:
    """The deploy-time confusion counts by (true, predicted) label, if the snapshot has them."""
    cm = snapshot.get("confusion_matrix")
    if not isinstance(cm, Mapping):
        return None
    labels, matrix = cm.get("labels"), cm.get("matrix")
    if not isinstance(labels, list) or not isinstance(matrix, list) or len(matrix) != len(labels):
        return None
    names = [category(v) for v in labels]
    out: dict[tuple[str, str], int] = {}
    for truth, row in zip(names, matrix, strict=True):
        if not isinstance(row, list) or len(row) != len(names):
            return None
        for pred, count in zip(names, row, strict=True):
            if not isinstance(count, int) or isinstance(count, bool) or count < 0:
                return None
            out[truth, pred] = count
    return out


def _proportions(
    truth: Sequence[str], pred: Sequence[str], labels: Sequence[str], names: Sequence[str]
) -> dict[str, Counts]:
    """Counts of accuracy and of precision/recall per label; `names[i]` names `labels[i]`."""
    t, p = np.asarray(truth, dtype=object), np.asarray(pred, dtype=object)
    out: dict[str, Counts] = {"accuracy": (int(np.sum(t == p)), len(t))}
    for label, name in zip(labels, names, strict=True):
        hit = int(np.sum((t == label) & (p == label)))
        out[f"precision{name}"] = (hit, int(np.sum(p == label)))
        out[f"recall{name}"] = (hit, int(np.sum(t == label)))
    return out


def _test(name: str, live: Counts, deploy: Counts | float) -> ProportionTest | None:
    k, n = live
    if n == 0:
        return None  # nothing to test: no predicted (or actual) rows of the class
    if isinstance(deploy, tuple):
        dk, dn = deploy
        if dn == 0:
            return None
        # Row 0 live, row 1 deploy: "less" is an odds ratio below 1, live below deploy.
        table = [[k, n - k], [dk, dn - dk]]
        p = float(stats.fisher_exact(table, alternative="less").pvalue)
        return ProportionTest(name, live, deploy, "fisher", p)
    p = float(stats.binomtest(k, n, p=min(max(deploy, 0.0), 1.0), alternative="less").pvalue)
    return ProportionTest(name, live, deploy, "binomial", p)


def _tests(
    truth: Sequence[str], pred: Sequence[str], snapshot: Mapping[str, object]
) -> list[ProportionTest]:
    positive = snapshot.get("positive_label")
    cm = _confusion(snapshot)
    if positive is not None:
        labels, names = [category(positive)], [""]
    elif cm is not None:
        labels = sorted({t for t, _ in cm})
        names = [f"[{label}]" for label in labels]
    else:
        labels, names = [], []  # a macro average without its classes: accuracy only
    live = _proportions(truth, pred, labels, names)
    deploy: dict[str, Counts | float] = {}
    if cm is not None:
        deploy["accuracy"] = (sum(c for (t, p), c in cm.items() if t == p), sum(cm.values()))
        for label, name in zip(labels, names, strict=True):
            hit = cm.get((label, label), 0)
            deploy[f"precision{name}"] = (hit, sum(c for (_, p), c in cm.items() if p == label))
            deploy[f"recall{name}"] = (hit, sum(c for (t, _), c in cm.items() if t == label))
    else:
        for metric in ("accuracy", "precision", "recall")[: 3 if positive is not None else 1]:
            value = _snapshot_value(snapshot, metric)
            if value is not None:
                deploy[metric] = value
    out = [_test(name, live[name], deploy[name]) for name in live if name in deploy]
    tests = [t for t in out if t is not None]
    if tests:
        adjusted = stats.false_discovery_control([t.p for t in tests], method="bh")
        tests = [
            ProportionTest(t.name, t.live, t.deploy, t.test, t.p, float(a))
            for t, a in zip(tests, adjusted, strict=True)
        ]
    return tests


def _significance(tests: Sequence[ProportionTest]) -> dict[str, float | None]:
    """Per guarded metric, the least adjusted p-value of the tests that can show it down."""

    def least(*prefixes: str) -> float | None:
        ps = [t.p_adjusted for t in tests if t.name.split("[")[0] in prefixes]
        return min(ps) if ps else None

    return {
        "accuracy": least("accuracy"),
        "precision": least("precision"),
        "recall": least("recall"),
        "f1": least("precision", "recall"),
    }


def judge_performance(
    y_true: Sequence[object],
    y_pred: Sequence[object],
    snapshot: Mapping[str, object],
    config: MonitorConfig,
) -> PerformanceReport:
    """The window's live metrics against the snapshot, judged with `config`; a breach's
    `value` is the drop."""
    positive = snapshot.get("positive_label")
    live = live_metrics(y_true, y_pred, None if positive is None else category(positive))
    rows = len(y_true)
    report = PerformanceReport(rows, rows >= config.min_rows, live)
    if not report.judged:
        return report
    truth = [category(v) for v in y_true]
    pred = [category(v) for v in y_pred]
    report.tests = _tests(truth, pred, snapshot)
    report.p_values = _significance(report.tests)
    drop = config.thresholds.metric_drop
    for name in GUARDED:
        before = _snapshot_value(snapshot, name)
        p = report.p_values.get(name)
        if before is None or name not in live or p is None:
            continue
        fall = before - live[name]
        if fall + _TOLERANCE >= drop and p < config.alpha:
            report.breaches.append(Breach("performance", name, None, fall, drop))
    return report
