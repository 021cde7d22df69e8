"""What the explanation engine hands out: explanations, baselines, and its one error."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

EXACT_TOLERANCE = 1e-6  # additivity bound for the exact explainers (the contract)


class ExplainError(ValueError):
    """The model, schema, background or row cannot be explained; the message is one line."""


@dataclass(frozen=True)
class Contribution:
    feature: str  # the training feature name (schema order)
    value: Any  # this decision's input value for the feature (float/int/str/bool)
    shap: float


@dataclass(frozen=True)
class Explanation:
    method: str  # "tree_shap_interventional" | "linear_shap" | "kernel_shap"
    exact: bool
    output_space: str  # "probability" | "margin" (log-odds) | "value" (regression)
    output_label: str  # plain words, e.g. 'probability of class "1"'
    class_label: str | None  # the explained class; None for regressors
    predicted_label: str | None
    base_value: float  # expected output over the background, in output_space
    output_value: float  # the model's output for this row, in output_space
    contributions: tuple[Contribution, ...]  # every schema feature, schema order
    additivity_error: float  # |base_value + sum(shap) - output_value|
    tolerance: float  # 1e-6 for exact methods; the stated tolerance for approximate ones
    parameters: dict[str, Any]  # JSON-able explainer parameters
    fallback_reason: str | None  # why the fast path was not used (None when it was)

    @property
    def additive(self) -> bool:
        """Whether base + sum(shap) = output within the stated tolerance."""
        return self.additivity_error <= self.tolerance


@dataclass(frozen=True)
class Baseline:
    method: str
    exact: bool
    output_space: str
    class_label: str | None
    expected_value: float
    global_importance: dict[str, float]  # mean |SHAP| per feature over the background
    parameters: dict[str, Any]
    background_sha256: str
    shap_version: str
    fallback_reason: str | None


def plain(value: Any) -> Any:
    """A numpy scalar as the Python value it holds (JSON-able), anything else unchanged."""
    item = getattr(value, "item", None)
    return item() if callable(item) else value
