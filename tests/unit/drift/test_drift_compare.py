"""compare() on windows drawn from the real reference population, shifted or not."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd  # type: ignore[import-untyped,unused-ignore]
import pytest

from mrm.drift.compare import DriftReport, Window, compare
from mrm.drift.profile import FORMAT, OTHER, ReferenceProfile

from .conftest import Reference


def window_of(reference: Reference, frame: pd.DataFrame) -> Window:
    features = {name: frame[name].tolist() for name in reference.kinds}
    X = frame[reference.numeric].fillna(0.0)
    return Window(
        features=features,
        predictions=reference.tree.predict(X).tolist(),
        scores=reference.tree.predict_proba(X)[:, 1].tolist(),
    )


def judge(reference: Reference, frame: pd.DataFrame) -> DriftReport:
    return compare(reference.profile(), window_of(reference, frame))


def test_profile_is_json_and_shaped(reference: Reference) -> None:
    profile = reference.profile()
    doc = json.loads(json.dumps(profile.to_json()))
    assert doc["format"] == FORMAT
    assert doc["rows"] == 569
    radius = doc["features"]["mean radius"]
    assert radius["kind"] == "numeric"
    assert len(radius["edges"]) == 11
    assert sum(radius["proportions"]) == pytest.approx(1.0)
    assert radius["sample"] == sorted(radius["sample"])
    assert len(radius["sample"]) == 569
    diagnosis = doc["features"]["diagnosis"]
    assert diagnosis["counts"] == {"benign": 357, "malignant": 212, OTHER: 0}
    assert ReferenceProfile.from_json(doc) == profile


def test_profile_rejects_another_format(reference: Reference) -> None:
    doc = reference.profile().to_json()
    doc["format"] = "mrm.reference-profile.v0"
    with pytest.raises(ValueError, match="format"):
        ReferenceProfile.from_json(doc)


def test_same_distribution_large_window_has_no_breaches(reference: Reference) -> None:
    report = judge(reference, reference.resample(100_000, seed=1))
    assert report.judged
    assert report.rows == 100_000
    assert report.breaches == []
    assert not any(f.drifted for f in report.features)
    assert max(f.psi or 0.0 for f in report.features) < 0.05
    assert report.prediction is not None
    assert report.prediction.psi < 0.01
    json.dumps(report.to_json())


@pytest.mark.parametrize("shift", ["scale", "offset"])
def test_shifted_feature_is_flagged_and_top(reference: Reference, shift: str) -> None:
    frame = reference.resample(1_000, seed=2)
    std = float(reference.frame["mean texture"].std())
    if shift == "scale":
        frame["mean texture"] = frame["mean texture"] * 1.5
    else:
        frame["mean texture"] = frame["mean texture"] + std
    report = judge(reference, frame)
    top = report.top_features(1)[0]
    assert top.name == "mean texture"
    assert top.drifted
    assert top.p_adjusted is not None
    assert top.p_adjusted < 0.01
    assert top.reasons
    drifted = {b.feature for b in report.breaches if b.rule == "feature_drift"}
    assert drifted == {"mean texture"}
    assert len(top.reference) == len(top.current) == len(top.labels) == 10


def test_categorical_frequency_change_is_flagged(reference: Reference) -> None:
    frame = reference.resample(1_000, seed=3)
    rng = np.random.default_rng(3)
    frame["diagnosis"] = rng.choice(["malignant", "benign"], size=1_000, p=[0.7, 0.3])
    report = judge(reference, frame)
    diagnosis = next(f for f in report.features if f.name == "diagnosis")
    assert diagnosis.kind == "categorical"
    assert diagnosis.drifted
    assert diagnosis.cramers_v is not None
    assert diagnosis.cramers_v > 0.1
    assert diagnosis.psi is not None
    assert diagnosis.psi > 0.2
    metrics = {b.metric for b in report.breaches if b.feature == "diagnosis"}
    assert {"cramers_v", "psi"} <= metrics


def test_unchanged_categorical_is_quiet(reference: Reference) -> None:
    report = judge(reference, reference.resample(1_000, seed=4))
    diagnosis = next(f for f in report.features if f.name == "diagnosis")
    assert not diagnosis.drifted
    assert diagnosis.cramers_v is not None
    assert diagnosis.cramers_v < 0.1


def test_missing_and_out_of_range_breach_data_quality(reference: Reference) -> None:
    frame = reference.resample(1_000, seed=5)
    frame["mean smoothness"] = frame["mean smoothness"].astype(object)
    frame.loc[:199, "mean smoothness"] = None
    frame.loc[:99, "mean area"] = reference.frame["mean area"].max() * 2
    report = judge(reference, frame)
    quality = {(b.feature, b.metric): b for b in report.breaches if b.rule == "data_quality"}
    assert set(quality) == {("mean smoothness", "missing"), ("mean area", "out_of_range")}
    assert quality["mean smoothness", "missing"].value == pytest.approx(0.2)
    assert quality["mean area", "out_of_range"].value >= 0.1
    smoothness = next(f for f in report.features if f.name == "mean smoothness")
    assert smoothness.missing_share == pytest.approx(0.2)


def test_window_below_min_rows_is_not_judged(reference: Reference) -> None:
    frame = reference.resample(150, seed=6)
    frame["mean texture"] = frame["mean texture"] * 3
    frame.loc[:50, "mean area"] = None
    report = judge(reference, frame)
    assert not report.judged
    assert report.breaches == []
    assert not any(f.drifted for f in report.features)
    assert report.top_features(1)[0].name == "mean texture"


def test_window_needs_every_profiled_feature(reference: Reference) -> None:
    window = window_of(reference, reference.resample(300, seed=7))
    features = dict(window.features)
    del features["diagnosis"]
    with pytest.raises(ValueError, match="diagnosis"):
        compare(reference.profile(), Window(features, window.predictions))


def test_prediction_shift_breaches_prediction_drift(reference: Reference) -> None:
    window = window_of(reference, reference.resample(1_000, seed=8))
    rng = np.random.default_rng(8)
    shifted = rng.choice([0, 1], size=1_000, p=[0.8, 0.2]).tolist()
    report = compare(reference.profile(), Window(window.features, shifted))
    assert report.prediction is not None
    assert report.prediction.psi > 0.2
    assert [b.metric for b in report.breaches if b.rule == "prediction_drift"] == ["prediction_psi"]
    assert not any(f.drifted for f in report.features)
