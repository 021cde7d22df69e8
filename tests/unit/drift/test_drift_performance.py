"""Live metrics against the deploy snapshot: a drop breaches only when a one-sided test,
Benjamini-Hochberg adjusted, says the live value is below the deploy-time one.

The models are fitted on one half of a real dataset and their deploy snapshot (mrm's own,
with its confusion matrix) is taken on the other half; live windows of 200 outcomes are
drawn from that evaluation half, the very population the snapshot describes."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from sklearn import metrics  # type: ignore[import-untyped,unused-ignore]
from sklearn.datasets import (  # type: ignore[import-untyped,unused-ignore]
    load_breast_cancer,
    load_wine,
)
from sklearn.model_selection import train_test_split  # type: ignore[import-untyped,unused-ignore]
from sklearn.tree import DecisionTreeClassifier  # type: ignore[import-untyped,unused-ignore]

from mrm.deploy.metrics import snapshot as deploy_snapshot
from mrm.drift.config import MonitorConfig
from mrm.drift.performance import GUARDED, judge_performance, live_metrics

from .conftest import Reference

IntArray = np.ndarray[Any, np.dtype[np.int64]]


class Deployed:
    """A shallow tree, its deploy snapshot, and its evaluation rows' labels/predictions."""

    def __init__(self, loader: Any, depth: int) -> None:
        X, y = loader(return_X_y=True)
        X_fit, X_eval, y_fit, y_eval = train_test_split(
            X, y, test_size=0.5, random_state=0, stratify=y
        )
        tree = DecisionTreeClassifier(max_depth=depth, random_state=0).fit(X_fit, y_fit)
        self.snapshot = deploy_snapshot(tree, X_eval, y_eval, eval_sha256="0" * 64)
        self.truth: IntArray = np.asarray(y_eval)
        self.pred: IntArray = np.asarray(tree.predict(X_eval))

    def windows(self, n: int, rows: int = 200) -> list[tuple[IntArray, IntArray]]:
        rng = np.random.default_rng(7)
        picks = [rng.integers(0, len(self.truth), rows) for _ in range(n)]
        return [(self.truth[i], self.pred[i]) for i in picks]


@pytest.fixture(scope="module")
def binary() -> Deployed:
    # A one-split tree (accuracy ~0.90): noisy enough that raw drops of 0.05 happen.
    return Deployed(load_breast_cancer, depth=1)


@pytest.fixture(scope="module")
def multiclass() -> Deployed:
    return Deployed(load_wine, depth=2)


def _without_counts(snapshot: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in snapshot.items() if k not in ("confusion_matrix", "rows")}


def _naive_drops(snapshot: dict[str, Any], live: dict[str, float]) -> bool:
    """Whether the drop alone (the rule before the tests) would have breached."""
    macro = snapshot.get("average", {}).get("macro", {})
    deploy = {m: snapshot.get(m, macro.get(m)) for m in GUARDED}
    return any(deploy[m] - live[m] >= 0.05 for m in GUARDED if deploy[m] is not None)


def test_live_metrics_match_sklearn(reference: Reference) -> None:
    truth, pred = reference.target.tolist(), reference.predictions.tolist()
    live = live_metrics(truth, pred, positive_label="1")
    assert live["accuracy"] == pytest.approx(metrics.accuracy_score(truth, pred))
    assert live["f1"] == pytest.approx(metrics.f1_score(truth, pred, pos_label=1))
    macro = live_metrics(truth, pred, positive_label=None)
    assert macro["recall"] == pytest.approx(metrics.recall_score(truth, pred, average="macro"))
    assert live_metrics([], [], None) == {}


def test_same_population_windows_are_silent(binary: Deployed) -> None:
    noisy = 0
    for truth, pred in binary.windows(200):
        report = judge_performance(truth.tolist(), pred.tolist(), binary.snapshot, MonitorConfig())
        assert report.judged
        assert report.breaches == [], (report.live, report.p_values)
        assert set(report.p_values) == set(GUARDED)
        assert all(p is not None and 0 < p <= 1 for p in report.p_values.values())
        assert {t.test for t in report.tests} == {"fisher"}
        noisy += _naive_drops(binary.snapshot, report.live)
    # The drop alone would have alarmed on some of these windows of sampling noise.
    assert noisy >= 5


def test_same_population_against_the_deploy_rate_alarms_at_most_about_alpha(
    binary: Deployed,
) -> None:
    """Without the deploy-time counts the deploy figure is taken as the true rate (here
    it is: the windows are drawn from the evaluation rows), so a window falsely alarms
    with probability at most alpha (1%): far less often than the drop alone."""
    snapshot = _without_counts(binary.snapshot)
    alarms = noisy = 0
    for truth, pred in binary.windows(200):
        report = judge_performance(truth.tolist(), pred.tolist(), snapshot, MonitorConfig())
        assert {t.test for t in report.tests} == {"binomial"}
        alarms += bool(report.breaches)
        noisy += _naive_drops(snapshot, report.live)
    assert alarms <= 4
    assert noisy >= 5 * max(alarms, 1)


@pytest.mark.parametrize("counts", [True, False], ids=["fisher", "binomial"])
def test_thirty_percent_of_labels_flipped_breaches_with_a_small_p(
    binary: Deployed, counts: bool
) -> None:
    snapshot = binary.snapshot if counts else _without_counts(binary.snapshot)
    rng = np.random.default_rng(3)
    truth, pred = binary.windows(1)[0]
    flipped = truth.copy()
    wrong = rng.random(len(truth)) < 0.3
    flipped[wrong] = 1 - flipped[wrong]
    report = judge_performance(flipped.tolist(), pred.tolist(), snapshot, MonitorConfig())
    by_metric = {b.metric: b for b in report.breaches}
    assert set(by_metric) == set(GUARDED)
    accuracy = by_metric["accuracy"]
    assert accuracy.rule == "performance"
    assert accuracy.threshold == 0.05
    assert accuracy.value == pytest.approx(snapshot["accuracy"] - report.live["accuracy"])
    p_accuracy = report.p_values["accuracy"]
    assert p_accuracy is not None
    assert p_accuracy < 1e-6
    # The p-values are in the window's body, test by test.
    body = report.to_json()
    (test,) = [t for t in body["tests"] if t["name"] == "accuracy"]
    assert test["live"] == [int(np.sum(flipped == pred)), len(pred)]
    assert test["p_adjusted"] >= test["p"]
    assert body["p_values"]["accuracy"] == test["p_adjusted"]


def test_a_significant_drop_smaller_than_the_threshold_does_not_breach(
    binary: Deployed,
) -> None:
    truth, pred = binary.truth, binary.pred
    flipped = truth.copy()
    flipped[::25] = 1 - flipped[::25]  # 4% more wrong: a drop under metric_drop
    many = np.tile(np.arange(len(truth)), 40)  # 11400 rows: the test alone would fire
    config = MonitorConfig()
    snapshot = _without_counts(binary.snapshot)
    report = judge_performance(flipped[many].tolist(), pred[many].tolist(), snapshot, config)
    p_accuracy = report.p_values["accuracy"]
    assert p_accuracy is not None
    assert p_accuracy < config.alpha
    assert report.breaches == []


def test_no_predicted_positives_leaves_precision_untested(binary: Deployed) -> None:
    truth = binary.truth[:200]
    none_positive = [0] * len(truth)
    report = judge_performance(truth.tolist(), none_positive, binary.snapshot, MonitorConfig())
    assert report.live["precision"] == 0.0  # 0/0 counts as 0: a "drop" of 0.93 ...
    assert "precision" not in {t.name for t in report.tests}
    assert report.p_values["precision"] is None
    # ... that is not judged; recall (0 of the positives found) is, and f1 with it.
    assert {b.metric for b in report.breaches} == {"accuracy", "recall", "f1"}


def test_a_window_under_min_rows_is_not_judged(binary: Deployed) -> None:
    config = MonitorConfig(min_rows=300)
    report = judge_performance([1] * 200, [0] * 200, binary.snapshot, config)
    assert not report.judged
    assert report.breaches == []
    assert report.tests == []


def test_multiclass_tests_each_class(multiclass: Deployed) -> None:
    snapshot = multiclass.snapshot
    assert "positive_label" not in snapshot
    for truth, pred in multiclass.windows(30):
        report = judge_performance(truth.tolist(), pred.tolist(), snapshot, MonitorConfig())
        assert report.breaches == [], (report.live, report.p_values)
    names = {t.name for t in report.tests}
    assert names == {"accuracy"} | {f"{m}[{c}]" for m in ("precision", "recall") for c in (0, 1, 2)}

    # The model stops recognising class 2: its recall falls, so macro recall and f1 breach
    # (accuracy falls too, but 89 evaluation rows cannot show it is not chance).
    truth, pred = multiclass.windows(1)[0]
    broken = np.where(pred == 2, 1, pred)
    report = judge_performance(truth.tolist(), broken.tolist(), snapshot, MonitorConfig())
    breached = {b.metric for b in report.breaches}
    assert {"recall", "f1"} <= breached
    (recall2,) = [t for t in report.tests if t.name == "recall[2]"]
    assert recall2.live[0] == 0
    assert report.p_values["recall"] == recall2.p_adjusted


def test_a_macro_average_without_the_confusion_matrix_is_not_judged() -> None:
    snapshot = {"accuracy": 0.9, "average": {"macro": {"f1": 0.9}}}
    truth = ["a", "b", "c"] * 100
    pred = ["a", "b", "a"] * 100  # f1 far down, accuracy 0.667
    report = judge_performance(truth, pred, snapshot, MonitorConfig())
    assert [t.name for t in report.tests] == ["accuracy"]
    assert report.tests[0].test == "binomial"
    assert report.p_values["f1"] is None
    assert [b.metric for b in report.breaches] == ["accuracy"]
