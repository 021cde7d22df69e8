"""Models deployed the way `mrmctl deploy` does it, and the references to check them by.

Every case converts a real scikit-learn model with `mrm.deploy.convert`, takes
its schema from `mrm.deploy.schema`, and its background sample from the deploy
pipeline (100 evaluation rows, seed 0, as CSV).

The numeric data are scaled to whole numbers (as amounts in cents, ages and
counts are). scikit-learn compares float32 inputs with float64 thresholds,
skl2onnx stores the thresholds as float32, and a threshold that falls within
one float32 step of a data value then decides that value differently in the
ONNX model, which is the model explained. With whole numbers no threshold
comes that close, so the scikit-learn references are comparable;
test_full_precision_data_follow_onnx_runtime covers the other case.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd  # type: ignore[import-untyped,unused-ignore]
from sklearn.compose import ColumnTransformer  # type: ignore[import-untyped,unused-ignore]
from sklearn.datasets import (  # type: ignore[import-untyped,unused-ignore]
    load_breast_cancer,
    load_diabetes,
    load_wine,
    make_regression,
)
from sklearn.pipeline import Pipeline  # type: ignore[import-untyped,unused-ignore]
from sklearn.preprocessing import (  # type: ignore[import-untyped,unused-ignore]
    OneHotEncoder,
    StandardScaler,
)

from mrm.deploy.convert import Converted, convert
from mrm.deploy.pipeline import _background_sample
from mrm.deploy.schema import infer_schema
from mrm.explain.engine import ModelExplainer


@dataclass(frozen=True)
class Deployed:
    model: Any
    X: pd.DataFrame  # evaluation rows
    background: pd.DataFrame  # the rows of the background CSV, as typed as X
    csv: bytes
    converted: Converted

    def explainer(self, **kwargs: Any) -> ModelExplainer:
        return ModelExplainer.from_onnx(
            self.converted.onnx_bytes, self.converted.schema.to_json(), self.csv, **kwargs
        )

    def row(self, i: int) -> dict[str, Any]:
        return {k: (v.item() if hasattr(v, "item") else v) for k, v in self.X.iloc[i].items()}


@functools.cache
def data(name: str) -> tuple[pd.DataFrame, Any]:
    if name == "cancer":
        X, y = load_breast_cancer(return_X_y=True, as_frame=True)
        return (X * 1000).round(), y
    if name == "wine":
        X, y = load_wine(return_X_y=True, as_frame=True)
        return (X * 100).round(), y
    if name == "regression":
        X, y = make_regression(n_samples=500, n_features=8, noise=5.0, random_state=0)
        # Targets of order 1: ONNX keeps weights in float32 (7 digits), so an
        # absolute 1e-6 agreement needs outputs of that order.
        return pd.DataFrame(X * 100, columns=[f"x{i}" for i in range(8)]).round(), y / 100
    if name == "diabetes":
        X, y = load_diabetes(return_X_y=True, as_frame=True)
        return X, y
    if name == "credit":
        return credit(600)
    raise KeyError(name)


def credit(n: int, seed: int = 0) -> tuple[pd.DataFrame, Any]:
    """A credit-style table: numbers and strings, the outcome tied to both."""
    rng = np.random.default_rng(seed)
    X = pd.DataFrame(
        {
            "age": rng.integers(18, 80, n),
            "income": rng.normal(50, 10, n).round(2),
            "debt_to_income": rng.uniform(0, 1, n).round(3),
            "city": rng.choice(["Lyon", "Paris", "Nantes", "Lille"], n),
            "housing": rng.choice(["own", "rent", "family"], n),
        }
    )
    score = 3 * X["debt_to_income"] - (X["income"] - 50) / 10 + (X["city"] == "Lyon") * 1.0
    score += (X["housing"] == "rent") * 0.7 - (X["age"] - 45) / 30
    y = (score + rng.normal(0, 0.5, n) > 1.5).astype(int)
    return X, y


def credit_pipeline(estimator: Any, *, scale: bool) -> Pipeline:
    columns = ColumnTransformer(
        [
            (
                "num",
                StandardScaler() if scale else "passthrough",
                ["age", "income", "debt_to_income"],
            ),
            ("cat", OneHotEncoder(handle_unknown="ignore"), ["city", "housing"]),
        ]
    )
    return Pipeline([("columns", columns), ("model", estimator)])


def deploy(name: str, estimator: Any) -> Deployed:
    X, y = data(name)
    cut = int(len(X) * 0.7)
    model = estimator.fit(X.iloc[:cut], np.asarray(y)[:cut])
    X_eval = X.iloc[cut:].reset_index(drop=True)
    schema = infer_schema(model, X_eval)
    csv = _background_sample(X_eval, 100)
    background = X_eval.sample(n=min(100, len(X_eval)), random_state=0)
    return Deployed(model, X_eval, background, csv, convert(model, schema))
