"""Pipelines with a ColumnTransformer are explained in the user's original features.

The credit-style pipeline scales the numbers and one-hot encodes the strings
(one ONNX input per column, as `mrmctl deploy` converts it). Contributions come
back per original feature, in schema order, with the one-hot groups summed.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import shap  # type: ignore[import-untyped,unused-ignore]
from sklearn import ensemble, linear_model  # type: ignore[import-untyped,unused-ignore]

from tests.support.explain_models import Deployed, credit_pipeline, deploy

FEATURES = ["age", "income", "debt_to_income", "city", "housing"]


@pytest.fixture(scope="module")
def logistic() -> Deployed:
    return deploy("credit", credit_pipeline(linear_model.LogisticRegression(), scale=True))


@pytest.fixture(scope="module")
def boosted() -> Deployed:
    model = ensemble.GradientBoostingClassifier(n_estimators=50, max_depth=3, random_state=0)
    return deploy("credit", credit_pipeline(model, scale=False))


def _grouped_linear_reference(d: Deployed, X: Any) -> np.ndarray[Any, Any]:
    """LinearExplainer on the fitted LogisticRegression, summed per original feature."""
    columns, model = d.model.steps[0][1], d.model.steps[-1][1]
    values = shap.LinearExplainer(model, columns.transform(d.background)).shap_values(
        columns.transform(X)
    )
    names = list(columns.get_feature_names_out())
    out = np.zeros((len(X), len(FEATURES)))
    for c, name in enumerate(names):
        feature = next(f for f in FEATURES if name.split("__", 1)[1].startswith(f))
        out[:, FEATURES.index(feature)] += np.asarray(values)[:, c]
    return out


def test_schema_is_columns_mode(logistic: Deployed) -> None:
    assert logistic.converted.schema.mode == "columns"
    assert logistic.converted.schema.names == FEATURES


def test_logistic_regression_per_original_feature(logistic: Deployed) -> None:
    explainer = logistic.explainer()
    assert explainer.method == "linear_shap"
    want = _grouped_linear_reference(logistic, logistic.X.iloc[:8])
    for i in range(8):
        e = explainer.explain(logistic.row(i), class_label="1")
        assert [c.feature for c in e.contributions] == FEATURES
        assert [c.value for c in e.contributions] == list(logistic.row(i).values())
        assert isinstance(e.contributions[3].value, str)
        got = np.array([c.shap for c in e.contributions])
        assert np.abs(got - want[i]).max() <= 1e-6
        assert e.additivity_error <= 1e-6
        assert e.output_space == "margin"
        assert "one-hot groups summed" in e.parameters["grouping"]
        assert e.parameters["transformed_columns"] == 3 + 4 + 3


def test_gradient_boosting_per_original_feature(boosted: Deployed) -> None:
    explainer = boosted.explainer()
    assert explainer.method == "tree_shap_interventional"
    for i in range(10):
        e = explainer.explain(boosted.row(i))
        assert e.exact
        assert e.fallback_reason is None
        assert [c.feature for c in e.contributions] == FEATURES
        assert e.additivity_error <= 1e-6
        assert e.class_label == e.predicted_label
        assert "one-hot groups summed" in e.parameters["grouping"]


def test_a_string_feature_that_matters_gets_the_credit(
    logistic: Deployed, boosted: Deployed
) -> None:
    """Two rows that differ only in city: Lyon (which raises the outcome) gets the credit.

    For the additive model the whole difference lands on the city; for trees,
    interactions spread some of it, but the city's share still moves the most.
    """
    for d in (logistic, boosted):
        explainer = d.explainer()
        row = d.row(0)
        lyon = explainer.explain(row | {"city": "Lyon"}, class_label="1")
        paris = explainer.explain(row | {"city": "Paris"}, class_label="1")
        shift = lyon.output_value - paris.output_value
        assert shift > 1e-3  # the outcome depends on Lyon
        moved = {
            a.feature: a.shap - b.shap
            for a, b in zip(lyon.contributions, paris.contributions, strict=True)
        }
        assert max(moved, key=lambda f: abs(moved[f])) == "city"
        assert moved["city"] > 0
        if d is logistic:
            assert moved["city"] == pytest.approx(shift, abs=1e-6)


def test_a_category_the_background_never_shows(logistic: Deployed, boosted: Deployed) -> None:
    """An unknown city (handle_unknown='ignore' encodes it as zeros) is still explained."""
    for d in (logistic, boosted):
        e = d.explainer().explain(d.row(1) | {"city": "Marseille"}, class_label="1")
        assert e.exact
        assert e.additivity_error <= 1e-6
        assert e.contributions[3].value == "Marseille"


def test_baseline_over_original_features(boosted: Deployed) -> None:
    base = boosted.explainer().baseline()
    assert list(base.global_importance) == FEATURES
    assert base.class_label == "1"
    assert base.global_importance["debt_to_income"] > 0.0
    assert all(v >= 0.0 for v in base.global_importance.values())
