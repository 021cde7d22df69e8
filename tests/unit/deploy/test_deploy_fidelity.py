"""The fidelity check passes faithful conversions and fails perturbed ones.

Every supported estimator is checked on held-out rows of a realistic dataset at
the default tolerance (atol 1e-5, and rtol 1e-5 for values). The perturbation
tests edit the converted ONNX graph, as a buggy converter or a tampered
artifact would, and expect a failed report (not an exception) that says where.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest
from onnx import numpy_helper
from sklearn import ensemble, linear_model, tree  # type: ignore[import-untyped,unused-ignore]

from mrm.deploy.convert import Converted, convert
from mrm.deploy.errors import DeployError
from mrm.deploy.evaldata import load_eval_csv
from mrm.deploy.fidelity import check_fidelity
from mrm.deploy.metrics import snapshot
from mrm.deploy.schema import infer_schema
from mrm.kernel.schema import Feature, InputSchema
from tests.support.convert_cases import CASES, applicants, dataset, fitted, mixed


def converted_case(case_id: str) -> tuple[Any, Converted, Any]:
    """The fitted model, its conversion and the evaluation rows of one of CASES."""
    data, factory = next(p.values for p in CASES if p.id == case_id)
    model = fitted(data, factory)
    X_eval = dataset(data)[1]
    return model, convert(model, infer_schema(model, X_eval)), X_eval


def perturb(converted: Converted, op_type: str, edit: Callable[[Any], None]) -> Converted:
    """`converted` with `edit` applied to the attributes of its first `op_type` node."""
    model = onnx.load_model_from_string(converted.onnx_bytes)
    node = next(n for n in model.graph.node if n.op_type == op_type)
    edit({a.name: a for a in node.attribute})
    data = model.SerializeToString()
    return dataclasses.replace(converted, onnx_bytes=data, sha256=hashlib.sha256(data).hexdigest())


@pytest.mark.parametrize(("data", "factory"), CASES)
def test_every_supported_estimator_passes_at_the_default_tolerance(
    data: str, factory: Callable[[], Any]
) -> None:
    model = fitted(data, factory)
    X_eval = dataset(data)[1]
    converted = convert(model, infer_schema(model, X_eval))
    report = check_fidelity(model, converted, X_eval)
    assert report.passed, report
    assert report.rows == len(X_eval)
    assert report.label_mismatches == 0
    assert report.first_mismatches == []
    if converted.task == "classification" and hasattr(model, "predict_proba"):
        assert report.max_abs_prob_diff is not None
        assert report.max_abs_prob_diff <= 1e-5
    else:
        assert report.max_abs_value_diff is not None


def test_a_shifted_intercept_fails_on_probabilities_and_says_where() -> None:
    model, converted, X_eval = converted_case("cancer-logreg")

    def shift(attrs: Any) -> None:
        attrs["intercepts"].floats[:] = [v + 4e-4 for v in attrs["intercepts"].floats]

    shifted = perturb(converted, "LinearClassifier", shift)
    report = check_fidelity(model, shifted, X_eval)
    assert not report.passed
    assert report.max_abs_prob_diff is not None
    assert 1e-5 < report.max_abs_prob_diff < 1.1e-4
    first = report.first_mismatches[0]
    assert first["output"] == "probabilities"
    assert first["expected"] == pytest.approx(model.predict_proba(X_eval.iloc[[first["row"]]])[0])
    assert first["expected"] != pytest.approx(first["got"], abs=1e-5)
    assert len(report.first_mismatches) == 5
    assert [m["row"] for m in report.first_mismatches] == sorted(
        m["row"] for m in report.first_mismatches
    )
    # The same model is within a looser tolerance: atol is what decides.
    assert check_fidelity(model, shifted, X_eval, atol=1e-3).passed
    json.dumps(report.to_dict())


def test_swapped_class_labels_fail_as_label_mismatches() -> None:
    model, converted, X_eval = converted_case("applicants_3-ct-logreg")
    assert converted.classes == ["bronze", "gold", "silver"]

    def swap(attrs: Any) -> None:
        attrs["classlabels_strings"].strings[:] = [b"gold", b"bronze", b"silver"]

    report = check_fidelity(model, perturb(converted, "LinearClassifier", swap), X_eval)
    assert not report.passed
    assert report.label_mismatches == int(np.isin(model.predict(X_eval), ["bronze", "gold"]).sum())
    first = report.first_mismatches[0]
    assert first["output"] == "label"
    assert {first["expected"], first["got"]} == {"bronze", "gold"}
    json.dumps(report.to_dict())


def test_a_changed_leaf_fails_a_regressor_on_values() -> None:
    model, converted, X_eval = converted_case("diabetes-tree")
    assert type(model).__name__ == "DecisionTreeRegressor"

    def bump(attrs: Any) -> None:
        attrs["target_weights"].floats[0] += 0.01  # 1e-4 relative to a value near 100

    report = check_fidelity(model, perturb(converted, "TreeEnsembleRegressor", bump), X_eval)
    assert not report.passed
    assert report.max_abs_value_diff == pytest.approx(0.01, rel=1e-3)
    assert {m["output"] for m in report.first_mismatches} == {"value"}
    assert report.label_mismatches == 0
    assert report.max_abs_prob_diff is None


def test_scores_of_classifiers_without_probabilities_are_compared() -> None:
    model, converted, X_eval = converted_case("wine-sgd_hinge")
    assert not hasattr(model, "predict_proba")

    model_proto = onnx.load_model_from_string(converted.onnx_bytes)
    intercept = next(i for i in model_proto.graph.initializer if i.name == "intercept")
    intercept.CopyFrom(
        numpy_helper.from_array(numpy_helper.to_array(intercept) + 1e-3, "intercept")
    )
    data = model_proto.SerializeToString()
    shifted = dataclasses.replace(converted, onnx_bytes=data)
    report = check_fidelity(model, shifted, X_eval)
    assert not report.passed
    assert report.max_abs_value_diff == pytest.approx(1e-3, rel=0.05)
    assert report.first_mismatches[0]["output"] == "scores"


def test_labels_decided_by_a_tie_are_counted_not_failed() -> None:
    X = np.array([[0.0], [0.0], [1.0], [1.0], [1.0]])
    model = tree.DecisionTreeClassifier(max_depth=1).fit(X, [0, 1, 0, 1, 1])
    assert model.predict_proba(X[:1]).tolist() == [[0.5, 0.5]]
    converted = convert(model, infer_schema(model, X))

    def lean(attrs: Any) -> None:  # the 50/50 leaf now leans, far below atol, to class 1
        weights = attrs["class_weights"].floats
        weights[:] = [w + 1e-7 if w == 0.5 else w for w in weights]

    leaning = perturb(converted, "TreeEnsembleClassifier", lean)
    report = check_fidelity(model, leaning, X)
    assert report.passed
    assert (report.label_ties, report.label_mismatches) == (2, 0)
    strict = check_fidelity(model, leaning, X, allow_ties=False)
    assert not strict.passed
    assert (strict.label_ties, strict.label_mismatches) == (0, 2)


@pytest.mark.parametrize(
    ("data", "estimator"),
    [
        ("applicants", ensemble.RandomForestClassifier(10, random_state=0)),
        ("applicants_limit", ensemble.GradientBoostingRegressor(random_state=0)),
    ],
)
def test_trees_after_a_scaler_fail_with_a_hint(data: str, estimator: Any) -> None:
    # A known float32 limit, not a tolerance to loosen: scaled integer ages land
    # exactly on split thresholds, and ONNX's float32 scaling moves them across.
    X_train, X_eval, y_train, _ = dataset(data)
    model = mixed(estimator, scale=True).fit(X_train, y_train)
    report = check_fidelity(model, convert(model, infer_schema(model, X_eval)), X_eval)
    assert not report.passed
    assert "drop the scaler" in (report.hint or "")


def test_missing_values_go_the_same_way_in_histgradientboosting() -> None:
    X = applicants(400, seed=1)[["age", "income", "grade"]].astype(float)
    y = (X["income"] > 50).astype(int)
    X.loc[X.index % 7 == 0, "income"] = np.nan
    model = ensemble.HistGradientBoostingClassifier(max_iter=20).fit(X, y)
    report = check_fidelity(model, convert(model, infer_schema(model, X)), X)
    assert report.passed, report


def test_an_onnx_model_that_does_not_fit_the_schema_is_an_error() -> None:
    model, converted, X_eval = converted_case("wine-sgd_log")
    two = InputSchema((Feature("alcohol", "float", 0), Feature("ash", "float", 1)), "columns")
    with pytest.raises(DeployError, match="takes 1 inputs, the schema gives 2"):
        check_fidelity(model, dataclasses.replace(converted, schema=two), X_eval)
    with pytest.raises(DeployError, match="no evaluation rows"):
        check_fidelity(model, converted, X_eval.iloc[:0])


def test_regressor_tolerance_is_relative_for_large_values() -> None:
    X = np.linspace(0, 1, 50).reshape(-1, 1)
    model = linear_model.LinearRegression().fit(X, 3e5 + 1e5 * X[:, 0])
    report = check_fidelity(model, convert(model, infer_schema(model, X)), X)
    # float32 cannot hold 3e5 to better than about 0.03, which rtol allows.
    assert report.passed
    assert (report.max_abs_value_diff or 0) > 1e-5


def test_from_csv_to_a_report_the_way_mrmctl_deploy_runs(tmp_path: Path) -> None:
    X_train, X_eval, y_train, y_eval = dataset("applicants_3")
    model = mixed(ensemble.GradientBoostingClassifier(n_estimators=10), scale=False)
    model.fit(X_train, y_train)
    X_eval.assign(tier=y_eval).to_csv(tmp_path / "eval.csv", index=False)
    X, y, sha = load_eval_csv(tmp_path / "eval.csv", "tier", model)
    schema = infer_schema(model, X)
    converted = convert(model, schema)
    assert check_fidelity(model, converted, X).passed
    assert snapshot(model, X, y, eval_sha256=sha)["rows"] == len(X_eval)
    assert InputSchema.from_json(schema.to_json()) == schema


def test_forests_lose_their_nan_routing_in_onnx_and_say_so() -> None:
    # onnx/sklearn-onnx#1253: skl2onnx 1.20 sends every NaN the same way.
    rng = np.random.default_rng(0)
    X = rng.normal(size=(300, 4))
    y = (X[:, 0] + 0.5 * X[:, 1] > 0).astype(int)
    X[rng.random(X.shape) < 0.15] = np.nan
    model = ensemble.RandomForestClassifier(10, max_depth=5, random_state=0).fit(X, y)
    report = check_fidelity(model, convert(model, infer_schema(model, X)), X)
    assert not report.passed
    assert "sklearn-onnx#1253" in (report.hint or "")
