"""Live performance: OUTCOME records joined to the decisions they are about.

An OUTCOME record (OutcomeService.RecordOutcomes) names its decision's
PREDICTION record and the observed label. The monitor joins it to the label
the model predicted and, per model version, judges each window of `min_rows`
joined outcomes (tumbling, in ledger order) with mrm.drift.performance against
the deploy-time metrics: a metric breaches when it dropped by the threshold and a
one-sided test, Benjamini-Hochberg adjusted over the window's tests, says so.
An outcome whose decision cannot be read (not found, not a PREDICTION, no
single predicted label) is counted, never guessed at. With `[fairness]`, each
joined outcome also carries its decision's sensitive attributes that are model
inputs, and the window's fairness (mrm.drift.fairness.outcome_fairness: per-group
accuracy, TPR and FPR, equalized odds) is judged with it.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson

from mrm.drift.config import MonitorConfig
from mrm.drift.performance import PerformanceReport, judge_performance

DECISION_KEY = "decision_record_id"
"""The OUTCOME body's key naming the decision's PREDICTION record id."""
LABEL_KEY = "label"
"""The OUTCOME body's key holding the observed label."""


def _flat(value: Any) -> list[Any]:
    if not isinstance(value, list):
        return [value]
    out: list[Any] = []
    for v in value:
        out.extend(_flat(v))
    return out


def predicted_label(body: Mapping[str, Any]) -> object | None:
    """The label a one-row decision's PREDICTION body holds; None for anything else."""
    response = body.get("response") if isinstance(body, Mapping) else None
    if not isinstance(response, Mapping):
        return None
    name = next((k for k in response if "label" in k.lower()), None)
    if name is None:
        return None
    labels = _flat(response[name])
    return labels[0] if len(labels) == 1 else None


def outcome_of(body: Mapping[str, Any]) -> tuple[str, object] | None:
    """(decision record id, observed label) of an OUTCOME body, or None."""
    decision, label = body.get(DECISION_KEY), body.get(LABEL_KEY)
    if not isinstance(decision, str) or not decision or label is None:
        return None
    return decision, label


def snapshot_of(facts_json: str, fallback: Mapping[str, float]) -> dict[str, Any]:
    """The deploy-time metrics: the version's recorded `performance` facts (which
    name the positive label), else the reference profile's numbers."""
    try:
        facts = orjson.loads(facts_json) if facts_json else {}
    except orjson.JSONDecodeError:
        facts = {}
    performance = facts.get("performance") if isinstance(facts, dict) else None
    if isinstance(performance, dict) and performance:
        return performance
    return dict(fallback)


def deploy_metrics(snapshot: Mapping[str, Any], names: Iterable[str]) -> dict[str, float]:
    """The deploy-time value of each of `names`: top-level (binary), else macro-averaged."""
    average = snapshot.get("average")
    macro = average.get("macro") if isinstance(average, Mapping) else None
    out: dict[str, float] = {}
    for name in names:
        value = snapshot.get(name)
        if value is None and isinstance(macro, Mapping):
            value = macro.get(name)
        if isinstance(value, int | float) and not isinstance(value, bool):
            out[name] = float(value)
    return out


Groups = Mapping[str, str]
"""A decision's groups per monitored sensitive attribute (mrm.drift.fairness.group_of)."""


class Predictions:
    """Recently read decisions' predicted labels (and sensitive groups), so most joins
    need no lookup."""

    def __init__(self, capacity: int = 200_000) -> None:
        self.capacity = capacity
        self._labels: OrderedDict[str, tuple[object | None, Groups | None]] = OrderedDict()

    def remember(self, record_id: str, label: object | None, groups: Groups | None = None) -> None:
        self._labels[record_id] = (label, groups)
        if len(self._labels) > self.capacity:
            self._labels.popitem(last=False)

    def get(self, record_id: str) -> tuple[bool, object | None]:
        if record_id in self._labels:
            return True, self._labels[record_id][0]
        return False, None

    def groups(self, record_id: str) -> Groups | None:
        found = self._labels.get(record_id)
        return None if found is None else found[1]


@dataclass
class OutcomeWindow:
    """One version's outcomes since its last performance window."""

    first_leaf: int = -1
    last_leaf: int = -1
    first_us: int = 0
    last_us: int = 0
    truth: list[object] = field(default_factory=list)
    predicted: list[object] = field(default_factory=list)
    decisions: list[str] = field(default_factory=list)
    groups: list[Groups] = field(default_factory=list)
    """Per joined outcome, its decision's groups ({} when unknown)."""
    unjoined: int = 0

    def add(
        self,
        leaf: int,
        us: int,
        decision: str | None,
        truth: object,
        pred: object,
        groups: Groups | None = None,
    ) -> None:
        if self.first_leaf < 0:
            self.first_leaf, self.first_us = leaf, us
        self.last_leaf, self.last_us = leaf, us
        if decision is None or pred is None:
            self.unjoined += 1
            return
        self.truth.append(truth)
        self.predicted.append(pred)
        self.decisions.append(decision)
        self.groups.append(groups or {})

    @property
    def rows(self) -> int:
        return len(self.truth)

    def judge(self, snapshot: Mapping[str, Any], config: MonitorConfig) -> PerformanceReport:
        """Live metrics, their tests against the deploy-time counts, and the breaches."""
        return judge_performance(self.truth, self.predicted, snapshot, config)

    def to_json(self) -> dict[str, Any]:
        return {
            "source": "outcomes",
            "first_leaf": self.first_leaf,
            "last_leaf": self.last_leaf,
            "first_recorded_at_us": self.first_us,
            "last_recorded_at_us": self.last_us,
            "outcomes": self.rows + self.unjoined,
            "rows": self.rows,
            "unjoined": self.unjoined,
        }
