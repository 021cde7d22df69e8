"""Data sets and fitted scikit-learn models for the conversion tests (starts no server)."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd  # type: ignore[import-untyped,unused-ignore]
import pytest
from sklearn import ensemble, linear_model, svm, tree  # type: ignore[import-untyped,unused-ignore]
from sklearn.compose import ColumnTransformer  # type: ignore[import-untyped,unused-ignore]
from sklearn.datasets import (  # type: ignore[import-untyped,unused-ignore]
    load_breast_cancer,
    load_diabetes,
    load_wine,
)
from sklearn.model_selection import train_test_split  # type: ignore[import-untyped,unused-ignore]
from sklearn.pipeline import Pipeline, make_pipeline  # type: ignore[import-untyped,unused-ignore]
from sklearn.preprocessing import (  # type: ignore[import-untyped,unused-ignore]
    OneHotEncoder,
    StandardScaler,
)

Split = tuple[Any, Any, Any, Any]  # X_train, X_eval, y_train, y_eval


@functools.cache
def dataset(name: str) -> Split:
    if name == "applicants":
        X = applicants(600)
        y = ((X["age"] > 40) ^ (X["city"] == "Lyon") ^ (X["income"] > 52)).astype(int)
    elif name == "applicants_limit":
        X = applicants(600)
        y = X["income"] * 90 + X["age"] * 15 + (X["city"] == "Lyon") * 800
    elif name == "applicants_3":
        X = applicants(600)
        y = np.where(X["income"] > 55, "gold", np.where(X["age"] > 45, "silver", "bronze"))
    else:
        loader = {"cancer": load_breast_cancer, "wine": load_wine, "diabetes": load_diabetes}[name]
        X, y = loader(return_X_y=True, as_frame=True)
    X_train, X_eval, y_train, y_eval = train_test_split(X, y, test_size=0.3, random_state=0)
    return X_train, X_eval, y_train, y_eval


def applicants(n: int, seed: int = 0) -> pd.DataFrame:
    """A mixed-type table as a credit team would have it: ints, floats and strings."""
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "age": rng.integers(18, 80, n),
            "income": rng.normal(50, 10, n).round(2),
            "city": rng.choice(["Lyon", "Paris", "Nantes"], n),
            "grade": rng.integers(1, 4, n),
        }
    )


def scaled(estimator: Any) -> Any:
    return make_pipeline(StandardScaler(), estimator)


def mixed(estimator: Any, *, scale: bool, city: str = "city") -> Any:
    # Trees get the numeric columns as they are: see test_trees_after_a_scaler_fail_with_a_hint.
    numeric = StandardScaler() if scale else "passthrough"
    columns = ColumnTransformer(
        [
            ("num", numeric, ["age", "income"]),
            ("cat", OneHotEncoder(handle_unknown="ignore"), [city, "grade"]),
        ]
    )
    return Pipeline([("columns", columns), ("model", estimator)])


def classifiers() -> list[tuple[str, Callable[[], Any]]]:
    return [
        ("logreg", lambda: scaled(linear_model.LogisticRegression())),
        ("sgd_log", lambda: scaled(linear_model.SGDClassifier(loss="log_loss", random_state=0))),
        ("sgd_hinge", lambda: scaled(linear_model.SGDClassifier(random_state=0))),
        ("ridge_clf", lambda: scaled(linear_model.RidgeClassifier())),
        ("tree", lambda: tree.DecisionTreeClassifier(max_depth=5, random_state=0)),
        ("forest", lambda: ensemble.RandomForestClassifier(10, max_depth=6, random_state=0)),
        ("extra", lambda: ensemble.ExtraTreesClassifier(10, max_depth=6, random_state=0)),
        ("gb", lambda: ensemble.GradientBoostingClassifier(n_estimators=20, random_state=0)),
        ("hgb", lambda: ensemble.HistGradientBoostingClassifier(max_iter=20, random_state=0)),
    ]


REGRESSORS: list[tuple[str, Callable[[], Any]]] = [
    ("linear", lambda: linear_model.LinearRegression()),
    ("ridge", lambda: linear_model.Ridge()),
    ("lasso", lambda: linear_model.Lasso(alpha=0.1)),
    ("enet", lambda: linear_model.ElasticNet(alpha=0.01)),
    ("sgd", lambda: scaled(linear_model.SGDRegressor(random_state=0))),
    ("linear_svr", lambda: scaled(svm.LinearSVR(random_state=0))),
    ("tree", lambda: tree.DecisionTreeRegressor(max_depth=5, random_state=0)),
    ("forest", lambda: ensemble.RandomForestRegressor(10, max_depth=6, random_state=0)),
    ("extra", lambda: ensemble.ExtraTreesRegressor(10, max_depth=6, random_state=0)),
    ("gb", lambda: ensemble.GradientBoostingRegressor(n_estimators=20, random_state=0)),
    ("hgb", lambda: ensemble.HistGradientBoostingRegressor(max_iter=20, random_state=0)),
]


MIXED: list[tuple[str, str, Callable[[], Any]]] = [
    ("applicants", "logreg", lambda: mixed(linear_model.LogisticRegression(), scale=True)),
    ("applicants", "forest", lambda: mixed(ensemble.RandomForestClassifier(10), scale=False)),
    ("applicants", "hgb", lambda: mixed(ensemble.HistGradientBoostingClassifier(), scale=False)),
    ("applicants_3", "logreg", lambda: mixed(linear_model.LogisticRegression(), scale=True)),
    ("applicants_3", "gb", lambda: mixed(ensemble.GradientBoostingClassifier(), scale=False)),
    ("applicants_limit", "ridge", lambda: mixed(linear_model.Ridge(), scale=True)),
    (
        "applicants_limit",
        "hgb",
        lambda: mixed(ensemble.HistGradientBoostingRegressor(), scale=False),
    ),
]


CASES: list[Any] = (
    [pytest.param(d, f, id=f"{d}-{n}") for d in ("cancer", "wine") for n, f in classifiers()]
    + [pytest.param("diabetes", f, id=f"diabetes-{n}") for n, f in REGRESSORS]
    + [pytest.param(d, f, id=f"{d}-ct-{n}") for d, n, f in MIXED]
)


@functools.cache
def fitted(data: str, factory: Callable[[], Any]) -> Any:
    X_train, _, y_train, _ = dataset(data)
    return factory().fit(X_train, y_train)
