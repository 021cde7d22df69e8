"""A window's breaches grouped into problems: one ALERT per problem, not per metric.

When `income` drifts, PSI, JS, KS and Wasserstein usually all cross their
thresholds together; that is one problem, so one alert. A problem is a
(rule, feature): feature drift and data quality per feature, prediction drift
and performance once per model version, fairness per sensitive attribute (its
window of decisions breaches the demographic-parity gate, its window of outcomes
the equalized-odds one: either way one problem, so one alert). The ALERT body keeps every breach
(`breaches`), and `metric`, `value` and `threshold` name the most severe one:
the largest value/threshold ratio, which MonitorService's single-metric Alert
message carries. The alert key (model, version, rule, feature) decides whether
an alert is still firing, so while one is, the problem is not raised again.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from mrm.drift.compare import Breach

AlertKey = tuple[str, str, str, str]
"""(model, version, rule, feature); feature is "" for prediction drift and performance."""

_NAMES = {
    "psi": "PSI",
    "js": "JS",
    "ks": "KS",
    "wasserstein": "Wasserstein",
    "cramers_v": "Cramér's V",
    "missing": "missing share up",
    "out_of_range": "out of range",
    "prediction_psi": "prediction PSI",
    "score_psi": "score PSI",
    "demographic_parity_ratio": "demographic parity ratio",
    "equalized_odds_difference": "equalized odds difference",
}
LOWER_IS_WORSE = frozenset({"demographic_parity_ratio"})
"""Metrics whose breach is a value below the threshold (a minimum, not a maximum)."""


def severity(b: Breach) -> float:
    """How far past its threshold a breach is (thresholds are > 0 by configuration)."""
    if b.metric in LOWER_IS_WORSE:
        return b.threshold / b.value if b.value > 0 else float("inf")
    return b.value / b.threshold if b.threshold > 0 else float("inf")


@dataclass(frozen=True)
class Problem:
    """The breaches of one (rule, feature) in one window, most severe first."""

    rule: str
    feature: str
    breaches: tuple[Breach, ...]

    @property
    def worst(self) -> Breach:
        return self.breaches[0]

    def key(self, model: str, version: str) -> AlertKey:
        return (model, version, self.rule, self.feature)

    def to_json(self) -> dict[str, Any]:
        """The ALERT body's fields of the problem."""
        worst = self.worst
        return {
            "rule": self.rule,
            "feature": self.feature,
            "metric": worst.metric,
            "value": worst.value,
            "threshold": worst.threshold,
            "breaches": [
                {"metric": b.metric, "value": b.value, "threshold": b.threshold}
                for b in self.breaches
            ],
        }

    def summary(
        self, live: Mapping[str, float] | None = None, deploy: Mapping[str, float] | None = None
    ) -> str:
        """One line, most severe first, e.g. `income drifted: PSI 1.71 (>= 0.2), KS 0.53`,
        or for performance (given the live and deploy-time metrics)
        `live performance fell: accuracy 0.845 vs 0.898 at deploy (-0.053), f1 ...`."""
        if self.rule == "performance":
            return "live performance fell: " + ", ".join(
                _fall(b, live or {}, deploy or {}) for b in self.breaches
            )
        worst, rest = self.worst, self.breaches[1:]
        if self.rule == "fairness":
            return f"{self.feature} fairness: " + ", ".join(
                f"{_name(b)} {b.value:.3f} ({'<' if b.metric in LOWER_IS_WORSE else '>'} "
                f"{b.threshold:g})"
                for b in self.breaches
            )
        parts = [f"{_name(worst)} {worst.value:.3g} (>= {worst.threshold:g})"]
        parts.extend(f"{_name(b)} {b.value:.3g}" for b in rest)
        head = {
            "feature_drift": f"{self.feature} drifted",
            "data_quality": f"{self.feature} data quality",
            "prediction_drift": "predictions drifted",
        }.get(self.rule, self.rule.replace("_", " "))
        return f"{head}: {', '.join(parts)}"


def _name(b: Breach) -> str:
    return _NAMES.get(b.metric, b.metric)


def _fall(b: Breach, live: Mapping[str, float], deploy: Mapping[str, float]) -> str:
    now, then = live.get(b.metric), deploy.get(b.metric)
    if now is None or then is None:
        return f"{b.metric} -{b.value:.3g} (>= {b.threshold:g})"
    return f"{b.metric} {now:.3f} vs {then:.3f} at deploy (-{b.value:.3f})"


def problems(breaches: Iterable[Breach]) -> list[Problem]:
    """The breaches grouped per (rule, feature), in order of each group's first breach."""
    groups: dict[tuple[str, str], list[Breach]] = {}
    for b in breaches:
        groups.setdefault((b.rule, b.feature or ""), []).append(b)
    return [
        Problem(rule, feature, tuple(sorted(group, key=severity, reverse=True)))
        for (rule, feature), group in groups.items()
    ]


def alert_key(model: str, version: str, body: Mapping[str, Any]) -> AlertKey:
    """The key of a raised ALERT body: at most one alert per key fires at a time. An
    alert recorded before alerts were grouped (one per metric) maps to its problem's key."""
    return (model, version, str(body.get("rule", "")), str(body.get("feature") or ""))
