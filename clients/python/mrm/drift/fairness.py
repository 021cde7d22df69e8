"""Fairness in production: the deploy-time group metrics over windows of live traffic.

At deploy, `[fairness]` names the sensitive attributes and the favourable label
and the FAIRNESS_SNAPSHOT holds fairlearn's numbers on the evaluation data.
The reference profile keeps what the monitor needs of them (`fairness_reference`):
the attributes, which of them are model inputs, the favourable label,
`min_group_size`, the fairness gates and the deploy-time figures.

The monitor reads an attribute from the decisions' inputs, so only an attribute
that is a model input is monitored; any other is reported as
"not monitored: not a model input" (outcome uploads carry no attributes).

- A window of decisions: per group, the share of favourable decisions (fairlearn's
  `MetricFrame` with `selection_rate`), and over the groups of at least
  `min_group_size` rows, fairlearn's `demographic_parity_difference` and
  `demographic_parity_ratio`.
- A window of outcomes (each joined to its decision, and so to the decision's
  attributes): per group count, selection rate, accuracy, TPR and FPR, and
  fairlearn's `equalized_odds_difference` over the groups of at least
  `min_group_size` rows.

Group names are the inputs' values as text (a whole float reads as an int, so
1.0 is "1"; a missing value is the group "(missing)"). Smaller groups are
reported, flagged `small`, and left out of the summaries, as at deploy.

A judged window (at least `[monitor] min_rows` rows) breaches a gate of
`[gates]` only when the difference is real, not a small window's noise:

- `min_demographic_parity_ratio`: the ratio is below it, at least two groups have
  `min_group_size` rows, and a test of independence on the group x
  (favourable, not) table of those groups rejects at the monitor's `alpha`: Fisher's
  exact test for two groups when an expected count is below 5, chi-square otherwise.
- `max_equalized_odds_difference`: the difference is above it, at least two
  groups have `min_group_size` rows, and for the TPR gap or the FPR gap that
  exceeds the gate, the same test on the group x (favoured, not) table of the truly
  favourable (TPR) or truly unfavourable (FPR) rows rejects at `alpha`.

Each breach is a `Breach("fairness", metric, attribute, value, gate)`: the monitor
raises one ALERT per (model, version, "fairness", attribute).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy import stats  # type: ignore[import-untyped,unused-ignore]

from mrm.drift.compare import Breach
from mrm.drift.decisions import UnreadableDecision, feature_rows
from mrm.drift.fairness_reference import SUMMARIES, FairnessReference, number
from mrm.drift.profile import category, is_missing
from mrm.kernel.schema import InputSchema

NOT_AN_INPUT = "not monitored: not a model input"
MISSING = "(missing)"


def group_of(value: object) -> str:
    """An input's value as the name of its group."""
    return MISSING if is_missing(value) else category(value)


@dataclass
class FairnessReport:
    """A window's fairness: the DRIFT body's `fairness` section, and its breaches."""

    judged: bool
    reference: FairnessReference
    attributes: dict[str, dict[str, Any]] = field(default_factory=dict)
    breaches: list[Breach] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        ref = self.reference
        return {
            "judged": self.judged,
            "favourable_label": ref.favourable_label,
            "min_group_size": ref.min_group_size,
            "gates": ref.to_json()["gates"],
            "attributes": self.attributes,
            "breaches": [b.to_json() for b in self.breaches],
        }


def independence_p(table: np.ndarray[Any, Any]) -> tuple[float | None, str | None]:
    """(p-value, test) of a groups x outcomes table; (None, None) when it has fewer than
    two non-empty rows or columns (nothing can differ)."""
    t = np.asarray(table, dtype=np.int64)
    t = t[t.sum(axis=1) > 0][:, t.sum(axis=0) > 0]
    if t.ndim != 2 or t.shape[0] < 2 or t.shape[1] < 2:
        return None, None
    if t.shape == (2, 2) and stats.contingency.expected_freq(t).min() < 5:
        return float(stats.fisher_exact(t).pvalue), "fisher"
    return float(stats.chi2_contingency(t).pvalue), "chi2"


def _table(labels: np.ndarray[Any, Any], values: np.ndarray[Any, Any], groups: list[str]) -> Any:
    return np.asarray([[int(np.sum(values[labels == g] == v)) for v in (1, 0)] for g in groups])


def group_metrics(
    name: str, labels: np.ndarray[Any, Any], truth: np.ndarray[Any, Any], pred: np.ndarray[Any, Any]
) -> Any:
    """fairlearn's MetricFrame by group of attribute `name`: count, selection rate,
    accuracy, TPR and FPR (a DataFrame indexed by group); deploy and the monitor
    both measure with it."""
    import pandas as pd  # type: ignore[import-untyped,unused-ignore]
    from fairlearn.metrics import (  # type: ignore[import-untyped,unused-ignore]
        MetricFrame,
        count,
        false_positive_rate,
        selection_rate,
        true_positive_rate,
    )
    from sklearn.metrics import accuracy_score  # type: ignore[import-untyped,unused-ignore]

    return MetricFrame(
        metrics={
            "count": count,
            "selection_rate": selection_rate,
            "accuracy": accuracy_score,
            "tpr": true_positive_rate,
            "fpr": false_positive_rate,
        },
        y_true=truth,
        y_pred=pred,
        sensitive_features=pd.Series(labels, name=name),
    ).by_group


def _groups(
    by_group: Any, keys: Sequence[str], minimum: int, truth: Any, labels: Any
) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for g in by_group.index:
        name = str(g)
        rows = labels == name
        entry: dict[str, Any] = {"count": int(by_group.loc[g, "count"])}
        for key in keys:
            value = number(by_group.loc[g, key])
            if key == "tpr" and not truth[rows].any():
                value = None  # no truly favourable rows: no rate (fairlearn says 0)
            if key == "fpr" and truth[rows].all():
                value = None
            entry[key] = value
        entry["small"] = entry["count"] < minimum
        out[name] = entry
    return out


def _favourable(values: Sequence[object], label: str) -> np.ndarray[Any, Any]:
    return np.asarray([group_of(v) == label for v in values], dtype=np.int64)


def _deploy(ref: FairnessReference, name: str, keys: Sequence[str]) -> dict[str, Any]:
    then = ref.deploy.get(name, {})
    groups = then.get("groups") or {}
    return {
        **{k: then.get(k) for k in keys},
        "groups": {
            g: {k: v.get(k) for k in ("count", "selection_rate")} for g, v in groups.items()
        },
    }


def _unmonitored(ref: FairnessReference, name: str) -> dict[str, Any]:
    return {"monitored": False, "reason": NOT_AN_INPUT, "deploy": _deploy(ref, name, SUMMARIES)}


def decision_fairness(
    ref: FairnessReference,
    features: Mapping[str, Sequence[object]],
    predictions: Sequence[object],
    *,
    judged: bool,
    alpha: float,
) -> FairnessReport:
    """Selection rates and demographic parity of a window of decisions (one
    predicted label per row; `features` are the window's input columns)."""
    import fairlearn.metrics as fm  # type: ignore[import-untyped,unused-ignore]

    report = FairnessReport(judged, ref)
    pred = _favourable(predictions, ref.favourable_label)
    keys = ("demographic_parity_difference", "demographic_parity_ratio")
    for name in ref.inputs:
        column = features.get(name)
        if not ref.inputs[name]:
            report.attributes[name] = _unmonitored(ref, name)
            continue
        if column is None or len(column) != len(pred) or not len(pred):
            report.attributes[name] = _unmonitored(ref, name)
            report.attributes[name]["reason"] = "no readable decisions in the window"
            continue
        labels = np.asarray([group_of(v) for v in column], dtype=object)
        by_group = group_metrics(name, labels, pred, pred)
        groups = _groups(by_group, ("selection_rate",), ref.min_group_size, pred, labels)
        large = [g for g, v in groups.items() if not v["small"]]
        keep = np.isin(labels, large)
        entry: dict[str, Any] = {"monitored": True, "rows": len(pred), "groups": groups}
        comparable = len(large) >= 2
        for key, fn in (
            ("demographic_parity_difference", fm.demographic_parity_difference),
            ("demographic_parity_ratio", fm.demographic_parity_ratio),
        ):
            entry[key] = (
                number(fn(pred[keep], pred[keep], sensitive_features=labels[keep]))
                if comparable
                else None
            )
        p, test = independence_p(_table(labels, pred, large)) if comparable else (None, None)
        entry |= {"p_value": p, "test": test, "deploy": _deploy(ref, name, keys)}
        ratio, minimum = entry["demographic_parity_ratio"], ref.min_demographic_parity_ratio
        entry["breached"] = False
        if judged and minimum is not None and ratio is not None and ratio < minimum:
            entry["breached"] = p is not None and p < alpha
            if entry["breached"]:
                report.breaches.append(
                    Breach("fairness", "demographic_parity_ratio", name, ratio, minimum)
                )
        report.attributes[name] = entry
    return report


def outcome_fairness(
    ref: FairnessReference,
    truth: Sequence[object],
    predicted: Sequence[object],
    groups: Sequence[Mapping[str, str]],
    *,
    judged: bool,
    alpha: float,
) -> FairnessReport:
    """Per-group accuracy, TPR and FPR and equalized odds of a window of outcomes;
    `groups[i]` holds row i's decision's attribute groups (see `group_of`)."""
    from fairlearn.metrics import equalized_odds_difference  # type: ignore[import-untyped,unused-ignore]

    report = FairnessReport(judged, ref)
    y = _favourable(truth, ref.favourable_label)
    pred = _favourable(predicted, ref.favourable_label)
    for name in ref.inputs:
        if not ref.inputs[name]:
            report.attributes[name] = _unmonitored(ref, name)
            continue
        known = np.asarray([name in g for g in groups], dtype=bool)
        if not known.any():
            report.attributes[name] = _unmonitored(ref, name)
            report.attributes[name]["reason"] = "no outcome's decision could be read"
            continue
        labels = np.asarray([g[name] for g in groups if name in g], dtype=object)
        yk, pk = y[known], pred[known]
        by_group = group_metrics(name, labels, yk, pk)
        keys = ("selection_rate", "accuracy", "tpr", "fpr")
        per_group = _groups(by_group, keys, ref.min_group_size, yk, labels)
        large = [g for g, v in per_group.items() if not v["small"]]
        keep = np.isin(labels, large)
        comparable = len(large) >= 2
        eo = (
            number(equalized_odds_difference(yk[keep], pk[keep], sensitive_features=labels[keep]))
            if comparable
            else None
        )
        gaps: dict[str, dict[str, Any]] = {}
        for rate, truly in (("tpr", 1), ("fpr", 0)):
            rows = yk == truly
            values = [per_group[g][rate] for g in large if per_group[g][rate] is not None]
            gap = max(values) - min(values) if len(values) >= 2 else None
            p, test = (
                independence_p(_table(labels[rows], pk[rows], large))
                if comparable
                else (None, None)
            )
            gaps[rate] = {"gap": gap, "p_value": p, "test": test}
        entry: dict[str, Any] = {
            "monitored": True,
            "rows": int(known.sum()),
            "unread": int((~known).sum()),
            "groups": per_group,
            "equalized_odds_difference": eo,
            "tests": gaps,
            "deploy": _deploy(ref, name, ("equalized_odds_difference",)),
        }
        maximum = ref.max_equalized_odds_difference
        entry["breached"] = False
        if judged and maximum is not None and eo is not None and eo > maximum:
            entry["breached"] = any(
                t["gap"] is not None
                and t["gap"] > maximum
                and t["p_value"] is not None
                and t["p_value"] < alpha
                for t in gaps.values()
            )
            if entry["breached"]:
                report.breaches.append(
                    Breach("fairness", "equalized_odds_difference", name, eo, maximum)
                )
        report.attributes[name] = entry
    return report


def decision_groups(
    columns: Mapping[str, Sequence[object]], ref: FairnessReference
) -> dict[str, str] | None:
    """The monitored attributes' groups of a one-row decision (its input columns), for
    joining its outcome; None for a decision of several rows."""
    out: dict[str, str] = {}
    for name in ref.monitored:
        column = columns.get(name)
        if column is None or len(column) != 1:
            return None
        out[name] = group_of(column[0])
    return out


def body_groups(
    body: Mapping[str, Any], schema: InputSchema, ref: FairnessReference
) -> dict[str, str] | None:
    """The monitored attributes' groups of a one-row PREDICTION body; None when it has
    several rows or cannot be read."""
    if not ref.monitored:
        return None
    request = body.get("request") if isinstance(body, Mapping) else None
    if not isinstance(request, Mapping):
        return None
    try:
        columns = feature_rows(request.get("inputs", {}), schema)
    except UnreadableDecision:
        return None
    return decision_groups(columns, ref)
