"""Live metrics against the deploy snapshot, on the breast cancer labels."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn import metrics  # type: ignore[import-untyped,unused-ignore]

from mrm.drift.config import MonitorConfig
from mrm.drift.performance import live_metrics, performance_breaches

from .conftest import Reference


def test_live_metrics_match_sklearn(reference: Reference) -> None:
    truth, pred = reference.target.tolist(), reference.predictions.tolist()
    live = live_metrics(truth, pred, positive_label="1")
    assert live["accuracy"] == pytest.approx(metrics.accuracy_score(truth, pred))
    assert live["f1"] == pytest.approx(metrics.f1_score(truth, pred, pos_label=1))
    macro = live_metrics(truth, pred, positive_label=None)
    assert macro["recall"] == pytest.approx(metrics.recall_score(truth, pred, average="macro"))
    assert live_metrics([], [], None) == {}


def test_accuracy_drop_breaches(reference: Reference) -> None:
    truth, pred = reference.target, reference.predictions
    snapshot = live_metrics(truth.tolist(), pred.tolist(), "1")
    rng = np.random.default_rng(0)
    flipped = pred.copy()
    idx = rng.choice(len(pred), size=len(pred) // 5, replace=False)
    flipped[idx] = 1 - flipped[idx]
    live = live_metrics(truth.tolist(), flipped.tolist(), "1")
    config = MonitorConfig()
    breaches = performance_breaches(live, snapshot, len(truth), config)
    by_metric = {b.metric: b for b in breaches}
    assert "accuracy" in by_metric
    assert by_metric["accuracy"].rule == "performance"
    assert by_metric["accuracy"].value == pytest.approx(snapshot["accuracy"] - live["accuracy"])
    assert performance_breaches(snapshot, snapshot, len(truth), config) == []
    assert performance_breaches(live, snapshot, config.min_rows - 1, config) == []


def test_multiclass_snapshot_reads_macro_average() -> None:
    snapshot = {"accuracy": 0.9, "average": {"macro": {"f1": 0.9}}}
    live = {"accuracy": 0.9, "f1": 0.8}
    breaches = performance_breaches(live, snapshot, 500, MonitorConfig())
    assert [(b.metric, round(b.value, 6)) for b in breaches] == [("f1", 0.1)]
