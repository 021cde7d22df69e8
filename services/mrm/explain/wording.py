"""How a decision is put into plain words, per model.

A model's `mrm.toml` may carry an `[explain]` table, which `mrmctl deploy`
stores in the version's facts:

    [explain]
    positive_label = "1"                          # the class whose output is explained
    labels = { "1" = "Rejected", "0" = "Approved" }  # what each label means
    output_name = "probability of default"        # what the explained output is

Without it, a decision is worded generically (`Decided class "1"`) and the
output is named by the explainer (for example `probability of class "1"`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Wording:
    positive_label: str | None = None
    labels: dict[str, str] = field(default_factory=dict)
    output_name: str | None = None

    @classmethod
    def from_facts(cls, facts_json: str) -> Wording:
        """The `explain` fact of a version; anything malformed is ignored, not fatal."""
        try:
            facts = json.loads(facts_json or "{}")
        except ValueError:
            return cls()
        table: Any = facts.get("explain") if isinstance(facts, dict) else None
        if not isinstance(table, dict):
            return cls()
        positive = table.get("positive_label")
        labels = table.get("labels")
        name = table.get("output_name")
        return cls(
            positive_label=str(positive) if isinstance(positive, str | int) else None,
            labels=(
                {str(k): str(v) for k, v in labels.items() if isinstance(v, str)}
                if isinstance(labels, dict)
                else {}
            ),
            output_name=name if isinstance(name, str) and name else None,
        )

    def decision(self, predicted_label: str | None, output_value: float) -> str:
        """ "Rejected", `Decided class "1"`, or for a regressor `Predicted 1234.5`."""
        if predicted_label is None or predicted_label == "":
            return f"Predicted {output_value:.6g}"
        return self.labels.get(predicted_label) or f'Decided class "{predicted_label}"'

    def probability_label(self, class_label: str | None) -> str:
        """The explained class's probability in plain words."""
        return self.output_name or f'probability of class "{class_label}"'

    def output_label(self, output_space: str, from_explainer: str) -> str:
        """The explained output in plain words."""
        if self.output_name is None:
            return from_explainer
        if output_space == "margin":
            return f"{self.output_name} (as log-odds)"
        return self.output_name
