"""The reference: scikit-learn's breast cancer data (569 rows, 30 numeric features) plus
its diagnosis as a categorical feature, and a shallow tree's predictions on it."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd  # type: ignore[import-untyped,unused-ignore]
import pytest
from sklearn.datasets import load_breast_cancer  # type: ignore[import-untyped,unused-ignore]
from sklearn.tree import DecisionTreeClassifier  # type: ignore[import-untyped,unused-ignore]

from mrm.drift.config import MonitorConfig
from mrm.drift.profile import ReferenceProfile, build_profile


class Reference:
    def __init__(self) -> None:
        data = load_breast_cancer(as_frame=True)
        self.frame: pd.DataFrame = data.frame.drop(columns="target")
        self.numeric = list(self.frame.columns)
        self.frame["diagnosis"] = np.asarray(data.target_names)[data.target]
        self.target = np.asarray(data.target)
        tree = DecisionTreeClassifier(max_depth=3, random_state=0)
        tree.fit(self.frame[self.numeric], self.target)
        self.tree = tree
        self.predictions = tree.predict(self.frame[self.numeric])
        self.scores = tree.predict_proba(self.frame[self.numeric])[:, 1]
        kinds: dict[str, Any] = dict.fromkeys(self.numeric, "numeric")
        kinds["diagnosis"] = "categorical"
        self.kinds = kinds

    def profile(self, config: MonitorConfig | None = None) -> ReferenceProfile:
        doc = build_profile(
            self.frame,
            self.kinds,
            self.predictions.tolist(),
            self.scores.tolist(),
            {"accuracy": 0.95},
            config or MonitorConfig(),
        )
        return ReferenceProfile.from_json(doc)

    def resample(self, rows: int, seed: int, jitter: float = 0.01) -> pd.DataFrame:
        """Rows drawn with replacement, numeric values jittered by `jitter` of each std."""
        rng = np.random.default_rng(seed)
        sample = self.frame.iloc[rng.integers(0, len(self.frame), rows)].reset_index(drop=True)
        for name in self.numeric:
            std = float(self.frame[name].std())
            sample[name] = sample[name] + rng.normal(0.0, jitter * std, rows)
        return sample


@pytest.fixture(scope="session")
def reference() -> Reference:
    return Reference()
