"""Exact SHAP from the ONNX graph agrees with shap's explainers on the scikit-learn model.

The references run shap on the ORIGINAL fitted estimator with the same
background: TreeExplainer (interventional) for trees, LinearExplainer for
linear models (on the scaled background for a scaler pipeline, whose columns
map one to one to the features).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
import shap  # type: ignore[import-untyped,unused-ignore]
from sklearn import ensemble, linear_model  # type: ignore[import-untyped,unused-ignore]
from sklearn.pipeline import make_pipeline  # type: ignore[import-untyped,unused-ignore]
from sklearn.preprocessing import StandardScaler  # type: ignore[import-untyped,unused-ignore]

from tests.support.explain_models import Deployed, deploy

ROWS = range(6)
Reference = Callable[[Deployed, Any], tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]]]


def tree_reference(d: Deployed, X: Any) -> tuple[Any, Any]:
    """shap values [rows, features, outputs] and expected values [outputs]."""
    te = shap.TreeExplainer(d.model, data=d.background, feature_perturbation="interventional")
    values = np.asarray(te.shap_values(X, check_additivity=False))
    return values.reshape(len(X), X.shape[1], -1), np.atleast_1d(te.expected_value)


def linear_reference(d: Deployed, X: Any) -> tuple[Any, Any]:
    model, bg, x = d.model, d.background, X
    if hasattr(model, "steps"):
        scaler, model = model.steps[0][1], model.steps[-1][1]
        bg, x = scaler.transform(bg), scaler.transform(X)
    le = shap.LinearExplainer(model, bg)
    values = np.asarray(le.shap_values(x))
    return values.reshape(len(X), X.shape[1], -1), np.atleast_1d(le.expected_value)


CASES = [
    pytest.param(
        "cancer",
        lambda: ensemble.GradientBoostingClassifier(n_estimators=60, random_state=0),
        tree_reference,
        "tree_shap_interventional",
        "margin",
        id="gradient-boosting",
    ),
    pytest.param(
        "cancer",
        lambda: ensemble.RandomForestClassifier(n_estimators=30, max_depth=6, random_state=0),
        tree_reference,
        "tree_shap_interventional",
        "probability",
        id="random-forest",
    ),
    pytest.param(
        "cancer",
        lambda: make_pipeline(StandardScaler(), linear_model.LogisticRegression(max_iter=2000)),
        linear_reference,
        "linear_shap",
        "margin",
        id="scaled-logistic-regression",
    ),
    pytest.param(
        "regression",
        lambda: ensemble.GradientBoostingRegressor(n_estimators=60, random_state=0),
        tree_reference,
        "tree_shap_interventional",
        "value",
        id="gradient-boosting-regressor",
    ),
    pytest.param(
        "regression",
        lambda: linear_model.Ridge(alpha=1.0),
        linear_reference,
        "linear_shap",
        "value",
        id="ridge",
    ),
    pytest.param(
        "wine",
        lambda: ensemble.GradientBoostingClassifier(n_estimators=20, random_state=0),
        tree_reference,
        "tree_shap_interventional",
        "margin",
        id="gradient-boosting-3-classes",
    ),
    pytest.param(
        "wine",
        lambda: ensemble.RandomForestClassifier(n_estimators=20, max_depth=5, random_state=0),
        tree_reference,
        "tree_shap_interventional",
        "probability",
        id="random-forest-3-classes",
    ),
]


def _reference_column(values: Any, expected: Any, classes: int | None, k: int) -> tuple[Any, float]:
    """The reference for class k: binary margins come as one column (class 1's log-odds)."""
    if values.shape[2] == 1 and classes == 2:
        sign = 1.0 if k == 1 else -1.0
        return sign * values[:, :, 0], sign * float(expected[0])
    return values[:, :, k], float(expected[k])


@pytest.mark.parametrize(("data", "factory", "reference", "method", "space"), CASES)
def test_matches_shap_on_the_scikit_learn_model(
    data: str, factory: Callable[[], Any], reference: Reference, method: str, space: str
) -> None:
    d = deploy(data, factory())
    explainer = d.explainer()
    assert explainer.fallback_reason is None
    classes = d.converted.classes
    values, expected = reference(d, d.X.iloc[list(ROWS)])
    for k in range(len(classes) if classes else 1):
        label = None if classes is None else str(classes[k])
        want, want_base = _reference_column(values, expected, len(classes or []) or None, k)
        for i in ROWS:
            e = explainer.explain(d.row(i), class_label=label)
            assert (e.method, e.exact, e.output_space) == (method, True, space)
            assert e.class_label == label
            assert e.fallback_reason is None
            got = np.array([c.shap for c in e.contributions])
            assert [c.feature for c in e.contributions] == list(d.X.columns)
            assert np.abs(got - want[i]).max() <= 1e-6, (i, k, np.abs(got - want[i]).max())
            assert abs(e.base_value - want_base) <= 1e-6
            assert e.additivity_error <= 1e-6
            assert e.tolerance == 1e-6
            assert e.additivity_error == pytest.approx(
                abs(e.base_value + got.sum() - e.output_value), abs=1e-12
            )


@pytest.mark.parametrize(("data", "factory", "reference", "method", "space"), CASES[:5])
def test_the_output_is_the_served_decision(
    data: str, factory: Callable[[], Any], reference: Reference, method: str, space: str
) -> None:
    """output_value is the model's own number for the row, in the stated space."""
    d = deploy(data, factory())
    e = d.explainer().explain(d.row(0))
    x = d.X.iloc[:1]
    if space == "value":
        assert e.class_label is None
        assert e.predicted_label is None
        assert e.output_value == pytest.approx(float(d.model.predict(x)[0]), abs=1e-3)
        assert e.output_label == "predicted value"
        return
    predicted = str(d.model.predict(x)[0])
    assert e.predicted_label == e.class_label == predicted
    p = float(d.model.predict_proba(x)[0][int(predicted)])
    if space == "probability":
        assert e.output_value == pytest.approx(p, abs=1e-6)
        assert e.output_label == f'probability of class "{predicted}"'
    else:
        assert 1.0 / (1.0 + np.exp(-e.output_value)) == pytest.approx(p, abs=1e-6)
        assert e.output_label == f'log-odds of class "{predicted}"'
    assert e.parameters["onnx_agreement"] <= 1e-5


def test_baseline_is_the_background_mean_and_importance() -> None:
    d = deploy("cancer", ensemble.GradientBoostingClassifier(n_estimators=30, random_state=0))
    explainer = d.explainer()
    base = explainer.baseline()
    values, expected = tree_reference(d, d.background)
    assert (base.method, base.exact, base.output_space) == (
        "tree_shap_interventional",
        True,
        "margin",
    )
    assert base.class_label == "1"
    assert base.expected_value == pytest.approx(float(expected[0]), abs=1e-6)
    want = np.abs(values[:, :, 0]).mean(axis=0)
    got = np.array(list(base.global_importance.values()))
    assert list(base.global_importance) == list(d.X.columns)
    assert np.abs(got - want).max() <= 1e-6
    assert base.shap_version == shap.__version__
    assert base.parameters["rows_explained"] == 100
    assert len(base.background_sha256) == 64
    assert base.fallback_reason is None


def test_full_precision_data_follow_onnx_runtime() -> None:
    """With full-precision data the ONNX model (float32 thresholds) is the one explained.

    Where a float32 threshold decides a value differently from scikit-learn's
    float64 one, shap on the scikit-learn model explains another function; the
    explanation follows the ONNX model that served the decision: it adds up
    and agrees with ONNX Runtime.
    """
    d = deploy("diabetes", ensemble.GradientBoostingRegressor(random_state=0))
    explainer = d.explainer()
    for i in range(10):
        e = explainer.explain(d.row(i))
        assert e.exact
        assert e.additivity_error <= 1e-6
        assert e.parameters["onnx_agreement"] <= 1e-4 * max(1.0, abs(e.output_value))
