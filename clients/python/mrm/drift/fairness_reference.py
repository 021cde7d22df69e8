"""What the monitor keeps of `[fairness]`: the reference profile's `fairness` entry.

Built at deploy (mrm.deploy.reference) from the `[fairness]` table and the
FAIRNESS_SNAPSHOT body; read by the monitor (mrm.drift.fairness), which judges
windows of live traffic against it. See mrm.drift.profile for the whole profile.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

SUMMARIES = (
    "demographic_parity_difference",
    "demographic_parity_ratio",
    "equalized_odds_difference",
)
_GROUP_KEYS = ("count", "selection_rate", "accuracy", "tpr", "fpr", "small")


def number(value: Any) -> float | None:
    if value is None:
        return None
    x = float(value)
    return x if math.isfinite(x) else None


@dataclass(frozen=True)
class FairnessReference:
    """What the monitor needs of `[fairness]` and the deploy-time snapshot."""

    favourable_label: str
    min_group_size: int
    min_demographic_parity_ratio: float | None
    max_equalized_odds_difference: float | None
    inputs: dict[str, bool]
    """Per sensitive attribute, whether it is a model input (and so monitored)."""
    deploy: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Per attribute, the deploy-time summaries and per-group figures."""

    @property
    def monitored(self) -> tuple[str, ...]:
        return tuple(name for name, is_input in self.inputs.items() if is_input)

    def to_json(self) -> dict[str, Any]:
        return {
            "favourable_label": self.favourable_label,
            "min_group_size": self.min_group_size,
            "gates": {
                "min_demographic_parity_ratio": self.min_demographic_parity_ratio,
                "max_equalized_odds_difference": self.max_equalized_odds_difference,
            },
            "attributes": {
                name: {"input": self.inputs[name], "deploy": self.deploy.get(name, {})}
                for name in self.inputs
            },
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> FairnessReference:
        gates = data.get("gates") or {}
        attributes = data["attributes"]
        return cls(
            favourable_label=str(data["favourable_label"]),
            min_group_size=int(data["min_group_size"]),
            min_demographic_parity_ratio=number(gates.get("min_demographic_parity_ratio")),
            max_equalized_odds_difference=number(gates.get("max_equalized_odds_difference")),
            inputs={str(k): bool(v["input"]) for k, v in attributes.items()},
            deploy={str(k): dict(v.get("deploy") or {}) for k, v in attributes.items()},
        )


def fairness_reference(
    snapshot: Mapping[str, Any], min_group_size: int, inputs: Sequence[str]
) -> dict[str, Any]:
    """The profile's `fairness` entry from a FAIRNESS_SNAPSHOT body; `inputs` are the
    model's input names."""
    deploy: dict[str, dict[str, Any]] = {}
    for name, attr in snapshot["attributes"].items():
        groups = {
            _group(g): {k: v.get(k) for k in _GROUP_KEYS if k in v}
            for g, v in attr["groups"].items()
        }
        deploy[name] = {"groups": groups, **{k: attr.get(k) for k in SUMMARIES}}
    gates = snapshot.get("gates") or {}
    return FairnessReference(
        favourable_label=str(snapshot["favourable_label"]),
        min_group_size=min_group_size,
        min_demographic_parity_ratio=number(gates.get("min_demographic_parity_ratio")),
        max_equalized_odds_difference=number(gates.get("max_equalized_odds_difference")),
        inputs={name: name in inputs for name in snapshot["attributes"]},
        deploy=deploy,
    ).to_json()


def _group(name: str) -> str:
    """A deploy-time group named as the monitor names it: a float column's whole
    values ("1.0", read from a CSV column with gaps) as the input's ("1")."""
    try:
        x = float(name)
    except ValueError:
        return name
    return str(int(x)) if "." in name and x.is_integer() else name
