"""The performance snapshot against independent scikit-learn calls, and the evaluation CSV.

Each expected value is computed here directly with sklearn.metrics, so a wrong
positive label, average or label order in metrics.py shows up as a mismatch.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd  # type: ignore[import-untyped,unused-ignore]
import pytest
from sklearn import ensemble, linear_model, metrics  # type: ignore[import-untyped,unused-ignore]

from mrm.deploy.errors import DeployError
from mrm.deploy.evaldata import load_eval_csv
from mrm.deploy.metrics import snapshot
from mrm.deploy.schema import infer_schema
from mrm.kernel.schema import Feature, InputSchema
from tests.support.convert_cases import applicants, dataset, mixed, scaled

SHA = "ab" * 32


def _plain_numbers(value: Any) -> None:
    """Every number in the snapshot is a Python int or float, so json.dumps takes it."""
    if isinstance(value, dict):
        for v in value.values():
            _plain_numbers(v)
    elif isinstance(value, list):
        for v in value:
            _plain_numbers(v)
    else:
        assert value is None or type(value) in (int, float, str, bool), type(value)


def test_binary_metrics_are_for_the_greater_label() -> None:
    X_train, X_eval, y_train, y_eval = dataset("cancer")
    # Labels 2 and 7: the positive class is 7, whatever the label order in the data.
    y_train, y_eval = np.where(y_train == 1, 2, 7), np.where(y_eval == 1, 2, 7)
    model = scaled(linear_model.LogisticRegression()).fit(X_train, y_train)
    snap = snapshot(model, X_eval, y_eval, eval_sha256=SHA)
    pred = model.predict(X_eval)
    assert snap["positive_label"] == 7
    assert snap["accuracy"] == metrics.accuracy_score(y_eval, pred)
    assert snap["f1"] == metrics.f1_score(y_eval, pred, pos_label=7)
    assert snap["precision"] == metrics.precision_score(y_eval, pred, pos_label=7)
    assert snap["recall"] == metrics.recall_score(y_eval, pred, pos_label=7)
    assert snap["roc_auc"] == metrics.roc_auc_score(y_eval == 7, model.predict_proba(X_eval)[:, 1])
    assert snap["confusion_matrix"] == {
        "labels": [2, 7],
        "matrix": metrics.confusion_matrix(y_eval, pred, labels=[2, 7]).tolist(),
    }
    assert (snap["task"], snap["rows"], snap["eval_sha256"]) == ("classification", len(y_eval), SHA)
    _plain_numbers(snap)
    json.dumps(snap, allow_nan=False)


def test_binary_string_labels_and_decision_scores() -> None:
    X_train, X_eval, y_train, y_eval = dataset("cancer")
    y_train, y_eval = (
        np.where(y_train == 1, "benign", "malignant"),
        np.where(y_eval == 1, "benign", "malignant"),
    )
    model = scaled(linear_model.SGDClassifier(random_state=0)).fit(X_train, y_train)
    snap = snapshot(model, X_eval, y_eval, eval_sha256=SHA)
    assert snap["positive_label"] == "malignant"
    expected = metrics.roc_auc_score(y_eval == "malignant", model.decision_function(X_eval))
    assert snap["roc_auc"] == expected
    pred = model.predict(X_eval)
    assert snap["recall"] == metrics.recall_score(y_eval, pred, pos_label="malignant")


def test_multiclass_metrics_name_their_average() -> None:
    X_train, X_eval, y_train, y_eval = dataset("applicants_3")
    model = mixed(ensemble.HistGradientBoostingClassifier(max_iter=20), scale=False)
    model.fit(X_train, y_train)
    snap = snapshot(model, X_eval, y_eval, eval_sha256=SHA)
    pred, proba = model.predict(X_eval), model.predict_proba(X_eval)
    assert "f1" not in snap
    assert "positive_label" not in snap
    for avg in ("macro", "weighted"):
        got = snap["average"][avg]
        assert got["f1"] == metrics.f1_score(y_eval, pred, average=avg)
        assert got["precision"] == metrics.precision_score(y_eval, pred, average=avg)
        assert got["recall"] == metrics.recall_score(y_eval, pred, average=avg)
        assert got["roc_auc"] == metrics.roc_auc_score(
            y_eval, proba, multi_class="ovr", average=avg
        )
    assert snap["classes"] == snap["confusion_matrix"]["labels"] == ["bronze", "gold", "silver"]
    assert snap["confusion_matrix"]["matrix"] == metrics.confusion_matrix(y_eval, pred).tolist()
    _plain_numbers(snap)


def test_multiclass_without_probabilities_has_no_roc_auc() -> None:
    X_train, X_eval, y_train, y_eval = dataset("wine")
    model = scaled(linear_model.RidgeClassifier()).fit(X_train, y_train)
    snap = snapshot(model, X_eval, y_eval, eval_sha256=SHA)
    assert snap["average"]["macro"]["roc_auc"] is None
    assert snap["accuracy"] == metrics.accuracy_score(y_eval, model.predict(X_eval))


def test_undefined_metrics_are_null_not_nan() -> None:
    X_train, X_eval, y_train, y_eval = dataset("cancer")
    model = ensemble.RandomForestClassifier(5, max_depth=3, random_state=0).fit(X_train, y_train)
    only_positive = y_eval == 1
    snap = snapshot(model, X_eval[only_positive], y_eval[only_positive], eval_sha256=SHA)
    assert snap["roc_auc"] is None
    json.dumps(snap, allow_nan=False)


def test_regression_metrics() -> None:
    X_train, X_eval, y_train, y_eval = dataset("diabetes")
    model = linear_model.Ridge().fit(X_train, y_train)
    snap = snapshot(model, X_eval, y_eval, eval_sha256=SHA)
    pred = model.predict(X_eval)
    assert snap["mae"] == metrics.mean_absolute_error(y_eval, pred)
    assert snap["rmse"] == metrics.root_mean_squared_error(y_eval, pred)
    assert snap["r2"] == metrics.r2_score(y_eval, pred)
    assert snap["task"] == "regression"
    assert "accuracy" not in snap
    _plain_numbers(snap)


def test_labels_the_model_never_saw_are_refused() -> None:
    X_train, X_eval, y_train, y_eval = dataset("wine")
    model = ensemble.RandomForestClassifier(5, random_state=0).fit(X_train, y_train)
    with pytest.raises(DeployError, match=r"never saw: \[7\]"):
        snapshot(model, X_eval, np.where(y_eval == 2, 7, y_eval), eval_sha256=SHA)


# --- the evaluation CSV -------------------------------------------------------------


@pytest.fixture
def loan_model() -> Any:
    X = applicants(300)
    y = ((X["age"] > 40) ^ (X["city"] == "Lyon")).astype(int)
    return mixed(linear_model.LogisticRegression(), scale=True).fit(X, y)


def _write(tmp_path: Path, frame: pd.DataFrame) -> Path:
    path = tmp_path / "eval.csv"
    frame.to_csv(path, index=False)
    return path


def _eval_frame(n: int = 20) -> pd.DataFrame:
    X = applicants(n, seed=5)
    return X.assign(approved=(X["age"] > 40).astype(int))[
        ["city", "approved", "grade", "age", "income"]
    ]


def test_load_eval_csv_orders_features_and_hashes_the_file(tmp_path: Path, loan_model: Any) -> None:
    path = _write(tmp_path, _eval_frame())
    X, y, sha = load_eval_csv(path, "approved", loan_model)
    assert list(X.columns) == ["age", "income", "city", "grade"]
    assert sha == hashlib.sha256(path.read_bytes()).hexdigest()
    assert y.tolist() == _eval_frame()["approved"].tolist()
    loan_model.predict(X)  # in the form the model takes


def test_load_eval_csv_for_a_model_fitted_on_an_array(tmp_path: Path) -> None:
    X_train, _, y_train, _ = dataset("diabetes")
    model = linear_model.Ridge().fit(X_train.to_numpy(), y_train)
    path = _write(tmp_path, dataset("diabetes")[1].assign(target=dataset("diabetes")[3]))
    X, y, _ = load_eval_csv(path, "target", model)
    assert isinstance(X, np.ndarray)
    assert X.shape == (len(y), 10)
    with pytest.raises(DeployError, match="11 feature columns, the model takes 10"):
        load_eval_csv(_write(tmp_path, pd.read_csv(path).assign(extra=1)), "target", model)


def test_missing_and_empty_files(tmp_path: Path, loan_model: Any) -> None:
    with pytest.raises(DeployError, match="does not exist"):
        load_eval_csv(tmp_path / "nope.csv", "approved", loan_model)
    (tmp_path / "empty.csv").write_bytes(b"")
    with pytest.raises(DeployError, match="is empty"):
        load_eval_csv(tmp_path / "empty.csv", "approved", loan_model)
    (tmp_path / "header.csv").write_text("age,income,city,grade,approved\n")
    with pytest.raises(DeployError, match="header but no rows"):
        load_eval_csv(tmp_path / "header.csv", "approved", loan_model)


def test_a_missing_target_is_named_with_the_columns(tmp_path: Path, loan_model: Any) -> None:
    path = _write(tmp_path, _eval_frame().drop(columns=["approved"]))
    with pytest.raises(
        DeployError, match=r"no target column 'approved'; its columns are city, grade"
    ):
        load_eval_csv(path, "approved", loan_model)


def test_other_columns_than_the_features_are_named(tmp_path: Path, loan_model: Any) -> None:
    path = _write(tmp_path, _eval_frame().drop(columns=["grade"]).assign(notes="x"))
    with pytest.raises(DeployError, match=r"extra \['notes'\], missing \['grade'\]"):
        load_eval_csv(path, "approved", loan_model)


def test_nan_is_refused_where_the_model_cannot_take_it(tmp_path: Path, loan_model: Any) -> None:
    frame = _eval_frame()
    frame.loc[[3, 11], "income"] = np.nan
    frame.loc[[7], "age"] = np.nan
    path = _write(tmp_path, frame)
    with pytest.raises(DeployError) as caught:
        load_eval_csv(path, "approved", loan_model)
    message = str(caught.value)
    assert "'age' (rows 7)" in message
    assert "'income' (rows 3, 11)" in message
    assert "Pipeline cannot take missing values" in message


def test_nan_is_accepted_where_the_model_takes_it(tmp_path: Path) -> None:
    X = applicants(200)[["age", "income", "grade"]].astype(float)
    model = ensemble.HistGradientBoostingClassifier(max_iter=5).fit(X, X["income"] > 50)
    frame = _eval_frame()[["age", "income", "grade", "approved"]]
    frame.loc[[2, 4], "income"] = np.nan
    X_eval, _, _ = load_eval_csv(_write(tmp_path, frame), "approved", model)
    assert X_eval["income"].isna().sum() == 2
    assert infer_schema(model, X_eval).mode == "tensor"


def test_nan_in_the_target_is_refused(tmp_path: Path, loan_model: Any) -> None:
    frame = _eval_frame().astype({"approved": float})
    frame.loc[[1], "approved"] = np.nan
    with pytest.raises(DeployError, match=r"target column 'approved' has no value in rows 1"):
        load_eval_csv(_write(tmp_path, frame), "approved", loan_model)


def test_a_schema_alone_casts_columns_and_refuses_nan(tmp_path: Path) -> None:
    schema = InputSchema(
        (Feature("grade", "string", 0), Feature("age", "float", 1), Feature("ok", "bool", 2)),
        "columns",
    )
    frame = pd.DataFrame({"grade": ["1", "2"], "age": [30, 40], "ok": [True, False], "y": [0, 1]})
    X, _, _ = load_eval_csv(_write(tmp_path, frame), "y", schema)
    assert X["age"].dtype == np.float64
    assert X["ok"].dtype == bool
    with pytest.raises(DeployError, match="column 'age' is not float"):
        load_eval_csv(_write(tmp_path, frame.assign(age=["x", "y"])), "y", schema)
    with pytest.raises(DeployError, match="cannot tell from a schema"):
        load_eval_csv(_write(tmp_path, frame.assign(age=[30, None])), "y", schema)


def test_a_malformed_csv_is_one_line(tmp_path: Path, loan_model: Any) -> None:
    (tmp_path / "bad.csv").write_bytes(b'a,b\n1,"unterminated\n')
    with pytest.raises(DeployError, match="not a readable CSV"):
        load_eval_csv(tmp_path / "bad.csv", "a", loan_model)


def test_multiclass_roc_auc_is_null_when_a_class_has_no_rows() -> None:
    X_train, X_eval, y_train, y_eval = dataset("wine")
    model = ensemble.RandomForestClassifier(5, random_state=0).fit(X_train, y_train)
    keep = (y_eval != 2).to_numpy()
    snap = snapshot(model, X_eval[keep], y_eval[keep], eval_sha256=SHA)
    assert snap["average"]["macro"]["roc_auc"] is None
    pred = model.predict(X_eval[keep])
    kw = {"average": "macro", "labels": [0, 1, 2], "zero_division": 0}
    expected = metrics.recall_score(y_eval[keep], pred, **kw)
    assert snap["average"]["macro"]["recall"] == expected
