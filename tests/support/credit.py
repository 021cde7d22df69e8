"""The credit-risk example the end-to-end tests deploy: synthetic applicants, three
kinds of model built from them, a project directory `mrmctl deploy` accepts, and
`mrmctl deploy` itself run against a stack."""

from __future__ import annotations

import pickle
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd  # type: ignore[import-untyped,unused-ignore]
import pytest
from click.testing import CliRunner, Result
from sklearn.compose import ColumnTransformer  # type: ignore[import-untyped,unused-ignore]
from sklearn.ensemble import (  # type: ignore[import-untyped,unused-ignore]
    GradientBoostingClassifier,
    RandomForestRegressor,
)
from sklearn.linear_model import LogisticRegression  # type: ignore[import-untyped,unused-ignore]
from sklearn.pipeline import Pipeline  # type: ignore[import-untyped,unused-ignore]
from sklearn.preprocessing import (  # type: ignore[import-untyped,unused-ignore]
    OneHotEncoder,
    StandardScaler,
)

from mrm.cli.main import mrmctl
from tests.conftest import RunningLedger


def applicants(n: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(
        {
            "income": rng.normal(52_000, 15_000, n).round(2),
            "debt_to_income": rng.uniform(0, 1, n).round(4),
            "credit_history_months": rng.integers(0, 240, n).astype(float),
            "employment": rng.choice(["salaried", "self-employed", "unemployed"], n),
        }
    )
    risk = (
        frame.debt_to_income * 2
        - frame.credit_history_months / 120
        + (frame.employment == "unemployed")
    )
    frame["default"] = (risk + rng.normal(0, 0.3, n) > 0.6).astype(int)
    frame["loss"] = (frame.income * frame.debt_to_income / 10 + rng.normal(0, 50, n)).round(2)
    return frame


def tree_model(train: pd.DataFrame) -> tuple[Any, list[str], str]:
    cols = ["income", "debt_to_income", "credit_history_months"]
    return (
        GradientBoostingClassifier(n_estimators=20, random_state=0).fit(
            train[cols], train["default"]
        ),
        cols,
        "default",
    )


def pipeline_model(train: pd.DataFrame) -> tuple[Any, list[str], str]:
    cols = ["income", "debt_to_income", "credit_history_months", "employment"]
    prep = ColumnTransformer(
        [
            ("num", StandardScaler(), ["income", "debt_to_income", "credit_history_months"]),
            ("cat", OneHotEncoder(handle_unknown="ignore"), ["employment"]),
        ]
    )
    model = Pipeline([("prep", prep), ("clf", LogisticRegression(max_iter=500))])
    return model.fit(train[cols], train["default"]), cols, "default"


def regressor(train: pd.DataFrame) -> tuple[Any, list[str], str]:
    cols = ["income", "debt_to_income"]
    return (
        RandomForestRegressor(n_estimators=10, random_state=0).fit(train[cols], train["loss"]),
        cols,
        "loss",
    )


Builder = Callable[[pd.DataFrame], tuple[Any, list[str], str]]


def project(tmp: Path, build: Builder, name: str = "credit-risk") -> tuple[Any, pd.DataFrame, str]:
    train, test = applicants(600, 1), applicants(200, 2)
    model, cols, target = build(train)
    (tmp / "model.pkl").write_bytes(pickle.dumps(model))
    test[[*cols, target]].to_csv(tmp / "eval.csv", index=False)
    train.to_csv(tmp / "train.csv", index=False)
    (tmp / "mrm.toml").write_text(
        f'[model]\nname = "{name}"\n[data]\neval = "eval.csv"\ntarget = "{target}"\n'
        'training = "train.csv"\n[gates]\nfidelity_tolerance = 1e-4\n'
    )
    return model, test[cols], target


def deploy(stack: RunningLedger, tmp: Path, *args: str, monkeypatch: pytest.MonkeyPatch) -> Result:
    monkeypatch.chdir(tmp)
    monkeypatch.setenv("GITHUB_SHA", "3f2a9c1" + "0" * 33)
    monkeypatch.setenv("GITHUB_ACTOR", "devin")
    monkeypatch.setenv("MRM_EXPLAIN_ADDR", stack.explain_addr)  # the SHAP baseline step
    return CliRunner().invoke(
        mrmctl,
        ["--ledger-addr", stack.addr, "--registry-addr", stack.registry_addr, "deploy", *args],
    )
