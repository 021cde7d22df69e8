"""The principal reasons of an adverse decision, in plain words.

A credit regulator expects an adverse-action notice to state the specific
principal reasons, ranked by how much they contributed (US ECOA/Regulation B,
typically up to four; GDPR Art. 22's "meaningful information about the logic
involved"). They come from the decision's SHAP values and the model's
`[explain]` table in `mrm.toml`, stored in the version's facts:

    [explain]
    positive_label = "1"                             # the explained class
    labels = { "1" = "Rejected", "0" = "Approved" }
    favourable_label = "0"                           # default: see favourable_label()
    reasons = { debt_to_income = "Debt is high relative to income" }
    max_reasons = 4

A decision is adverse when its predicted label is not the favourable one. Its
reasons are the features that pushed the explained output towards the adverse
outcome, largest first: positive SHAP values when the explained class is not
the favourable one (say the probability of default), negative ones when it is
(the probability of approval). Features that pushed the other way are never
reasons, and neither is a feature that carried less than MIN_SHARE (5%) of
the total push towards the adverse outcome: a notice should not name a
factor that barely mattered. The output space (probability or log-odds) does not matter: both are
monotone in the class's probability, so the signs agree.

Only the pushing direction is known, not whether a value was high or low, so
each feature has one wording; it is shown only when the feature weighed
against the favourable outcome. A feature without wording gets a generated
sentence naming its value.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from mrm.client.explain import Explanation, feature_value, format_value

MAX_REASONS = 4
MIN_SHARE = 0.05
"""A reason carries at least this share of the summed push towards the adverse outcome."""


def favourable_label(table: Mapping[str, Any]) -> str | None:
    """The favourable label of an `[explain]` table: `favourable_label` when given.

    Otherwise, for a binary model whose two labels are both named in `labels`,
    the one that is not `positive_label`: the positive (explained) class is by
    convention the event the model looks for (a default, a fraud), the adverse
    one. A model whose positive class is the favourable one must say so with
    `favourable_label`. Without either, no decision is called adverse.
    """
    given = table.get("favourable_label")
    if isinstance(given, str | int) and not isinstance(given, bool):
        return str(given)
    positive, labels = table.get("positive_label"), table.get("labels")
    if positive is None or not isinstance(labels, Mapping) or len(labels) != 2:
        return None
    others = [str(k) for k in labels if str(k) != str(positive)]
    return others[0] if len(others) == 1 else None


@dataclass(frozen=True)
class ReasonWording:
    """What a version's facts say about adverse decisions and their wording."""

    favourable_label: str | None = None
    labels: dict[str, str] = field(default_factory=dict)
    reasons: dict[str, str] = field(default_factory=dict)
    max_reasons: int = MAX_REASONS

    @classmethod
    def from_explain(cls, table: Mapping[str, Any]) -> ReasonWording:
        """From the stored `explain` fact; malformed parts are ignored (deploy checked them)."""
        labels, reasons = table.get("labels"), table.get("reasons")
        most = table.get("max_reasons", MAX_REASONS)
        return cls(
            favourable_label=favourable_label(table),
            labels=(
                {str(k): v for k, v in labels.items() if isinstance(v, str)}
                if isinstance(labels, Mapping)
                else {}
            ),
            reasons=(
                {str(k): v for k, v in reasons.items() if isinstance(v, str) and v.strip()}
                if isinstance(reasons, Mapping)
                else {}
            ),
            max_reasons=most if isinstance(most, int) and most >= 1 else MAX_REASONS,
        )

    @classmethod
    def from_facts(cls, facts_json: str) -> ReasonWording:
        """From a model version's facts JSON (its `explain` fact)."""
        try:
            facts = json.loads(facts_json or "{}")
        except ValueError:
            return cls()
        table = facts.get("explain") if isinstance(facts, dict) else None
        return cls.from_explain(table) if isinstance(table, dict) else cls()

    def text(self, feature: str, value: Any) -> str:
        """The reason's words: the configured ones, else a generated plain sentence."""
        if feature in self.reasons:
            return self.reasons[feature]
        favourable = self.favourable_label or ""
        outcome = self.labels.get(favourable) or f"class {favourable}"
        return f'{feature} of {format_value(value)} weighed against "{outcome}"'


@dataclass(frozen=True)
class Reason:
    rank: int
    feature: str
    value: Any
    contribution: float
    """The feature's SHAP value as explained (its sign follows the explained class)."""
    text: str

    def as_json(self) -> dict[str, Any]:
        return {
            "rank": self.rank,
            "feature": self.feature,
            "value": self.value,
            "contribution": self.contribution,
            "text": self.text,
        }


def is_adverse(exp: Explanation, wording: ReasonWording) -> bool:
    """Whether the decision's label is not the favourable one (never for a regressor,
    nor when no favourable label is known)."""
    if not exp.predicted_label or wording.favourable_label is None:
        return False
    return exp.predicted_label != wording.favourable_label


def principal_reasons(
    exp: Explanation, wording: ReasonWording, n: int | None = None
) -> list[Reason]:
    """The top features that pushed an adverse decision towards its outcome, ranked.

    Empty for a decision that is not adverse. Features with equal pushes keep
    the schema's order, so the ranking is the same every time.
    """
    if not is_adverse(exp, wording) or not exp.class_label:
        return []
    # +1 when the explained output is an adverse class's, -1 when it is the favourable one's.
    towards = -1.0 if exp.class_label == wording.favourable_label else 1.0
    pushing = [c for c in exp.contributions if towards * c.shap > 0]
    pushing.sort(key=lambda c: towards * c.shap, reverse=True)  # stable: ties keep schema order
    total = sum(towards * c.shap for c in pushing)
    pushing = [c for c in pushing if towards * c.shap >= MIN_SHARE * total]
    most = wording.max_reasons if n is None else n
    return [
        Reason(
            rank=i + 1,
            feature=c.feature,
            value=feature_value(c),
            contribution=c.shap,
            text=wording.text(c.feature, feature_value(c)),
        )
        for i, c in enumerate(pushing[:most])
    ]
