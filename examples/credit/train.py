"""Train the example credit-application model: what a data scientist hands over.

Writes model.pkl (a scikit-learn Pipeline), train.csv, eval.csv (with
age_band, a sensitive attribute the model never sees, for the fairness
snapshot),
applications.csv (2,000 new applicants to decide on), outcomes.csv (whether
each of them later defaulted: the ground truth that arrives months after the
decision) and applications_shifted.csv (1,000 later applicants whose incomes
are 1.8 times higher: the population the model was trained on has moved)
next to this file. Generated applicants with a fixed seed, so every run gives
the same model.
"""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.compose import ColumnTransformer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

HERE = Path(__file__).parent
NUMERIC = [
    "income",
    "debt_to_income",
    "credit_history_months",
    "loan_amount",
    "open_credit_lines",
    "late_payments_12m",
]
CATEGORICAL = ["employment"]


def applicants(n: int, seed: int, income_factor: float = 1.0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(
        {
            "income": (rng.lognormal(10.8, 0.4, n) * income_factor).round(0),
            "debt_to_income": rng.beta(2, 5, n).round(3),
            "credit_history_months": rng.integers(0, 360, n).astype(float),
            "loan_amount": rng.lognormal(9.5, 0.6, n).round(0),
            "open_credit_lines": rng.poisson(4, n).astype(float),
            "late_payments_12m": rng.poisson(0.4, n).astype(float),
            "employment": rng.choice(
                ["salaried", "self-employed", "unemployed"], n, p=[0.7, 0.2, 0.1]
            ),
        }
    )
    score = (
        3.0 * frame.debt_to_income
        - frame.credit_history_months / 180
        + frame.loan_amount / frame.income
        + 0.8 * (frame.employment == "unemployed")
        + 0.35 * frame.late_payments_12m
        + 0.04 * frame.open_credit_lines
    )
    frame["default"] = (score + rng.normal(0, 0.35, n) > 1.0).astype(int)
    return frame


def age_bands(frame: pd.DataFrame, seed: int) -> pd.Series:
    """Each applicant's age band: not a model input, but older applicants have
    longer credit histories, so a model that never sees age can still treat age
    groups differently. That is what `[fairness]` in mrm.toml measures."""
    rng = np.random.default_rng(seed)  # its own stream: the other columns stay as they were
    years = np.minimum(frame.credit_history_months / 12, 40)
    age = 18 + 0.15 * years + rng.uniform(0, 50, len(frame))
    bands = pd.cut(
        age, [0, 30, 45, 60, 200], right=False, labels=["18-29", "30-44", "45-59", "60+"]
    )
    return bands.astype(str)


def main() -> None:
    train, evaluation = applicants(4000, 7), applicants(1000, 8)
    new = applicants(2000, 9)
    new.drop(columns="default").to_csv(HERE / "applications.csv", index=False)
    # send_applications.py names the i-th applicant applicant-0000i
    pd.DataFrame(
        {"subject_id": [f"applicant-{i + 1:05d}" for i in range(len(new))], "label": new.default}
    ).to_csv(HERE / "outcomes.csv", index=False)
    shifted = applicants(1000, 10, income_factor=1.8).drop(columns="default")
    shifted.to_csv(HERE / "applications_shifted.csv", index=False)
    model = Pipeline(
        [
            (
                "prep",
                ColumnTransformer(
                    [
                        ("num", StandardScaler(), NUMERIC),
                        ("cat", OneHotEncoder(handle_unknown="ignore"), CATEGORICAL),
                    ]
                ),
            ),
            ("clf", LogisticRegression(max_iter=1000)),
        ]
    )
    model.fit(train[NUMERIC + CATEGORICAL], train["default"])
    (HERE / "model.pkl").write_bytes(pickle.dumps(model))
    train.to_csv(HERE / "train.csv", index=False)
    evaluation.insert(len(evaluation.columns) - 1, "age_band", age_bands(evaluation, 80))
    evaluation.to_csv(HERE / "eval.csv", index=False)
    print(
        f"trained on {len(train)} applicants; "
        "wrote model.pkl, train.csv, eval.csv, 2,000 new applications.csv with their "
        "outcomes.csv, and 1,000 applications_shifted.csv"
    )


if __name__ == "__main__":
    main()
