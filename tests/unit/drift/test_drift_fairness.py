"""Fairness over windows of live traffic (mrm.drift.fairness): the numbers are
fairlearn's on the same rows; a biased window breaches the deploy gates and a fair
one of the same size is silent; an attribute the model does not take is reported
as not monitored; small groups are shown but left out, as at deploy."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from fairlearn.metrics import (  # type: ignore[import-untyped,unused-ignore]
    MetricFrame,
    demographic_parity_difference,
    demographic_parity_ratio,
    equalized_odds_difference,
    false_positive_rate,
    selection_rate,
    true_positive_rate,
)
from sklearn.metrics import accuracy_score  # type: ignore[import-untyped,unused-ignore]

from mrm.drift.config import MonitorConfig
from mrm.drift.fairness import (
    NOT_AN_INPUT,
    body_groups,
    decision_fairness,
    independence_p,
    outcome_fairness,
)
from mrm.drift.fairness_reference import FairnessReference, fairness_reference
from mrm.drift.profile import ReferenceProfile, build_profile
from mrm.kernel.schema import Feature, InputSchema

ALPHA = 0.01


def _snapshot() -> dict[str, Any]:
    """A FAIRNESS_SNAPSHOT body as mrm.deploy.fairness writes it (numbers abridged)."""
    group = {"count": 100, "selection_rate": 0.5, "accuracy": 0.8, "tpr": 0.8, "fpr": 0.2}
    attr = {
        "groups": {"a": group | {"small": False}, "b": group | {"small": False}},
        "demographic_parity_difference": 0.02,
        "demographic_parity_ratio": 0.96,
        "equalized_odds_difference": 0.03,
        "ci": {},
    }
    return {
        "favourable_label": "1",
        "data": {"rows": 200, "sha256": "0" * 64},
        "attributes": {"region": attr, "sex": attr},
        "gates": {"min_demographic_parity_ratio": 0.8, "max_equalized_odds_difference": 0.1},
        "passed": True,
        "failures": [],
        "library": "fairlearn",
    }


def _ref(min_group_size: int = 30) -> FairnessReference:
    doc = fairness_reference(_snapshot(), min_group_size, ["x", "region"])
    return FairnessReference.from_json(doc)


def _decisions(rates: dict[str, float], n: int, seed: int) -> tuple[list[str], list[int]]:
    """`n` decisions per group, a share `rates[group]` of them favourable (label 1)."""
    rng = np.random.default_rng(seed)
    groups: list[str] = []
    labels: list[int] = []
    for g, rate in rates.items():
        groups += [g] * n
        labels += (rng.random(n) < rate).astype(int).tolist()
    return groups, labels


def test_the_reference_knows_which_attributes_are_inputs() -> None:
    ref = _ref()
    assert ref.monitored == ("region",)
    assert ref.inputs == {"region": True, "sex": False}
    assert ref.min_demographic_parity_ratio == 0.8
    assert ref.deploy["region"]["demographic_parity_ratio"] == 0.96
    assert FairnessReference.from_json(ref.to_json()) == ref


def test_a_biased_window_breaches_and_a_fair_one_of_the_same_size_is_silent() -> None:
    ref = _ref()
    biased_groups, biased = _decisions({"a": 0.6, "b": 0.3}, 150, 1)
    fair_groups, fair = _decisions({"a": 0.5, "b": 0.5}, 150, 1)
    assert len(biased) == len(fair)

    report = decision_fairness(ref, {"region": biased_groups}, biased, judged=True, alpha=ALPHA)
    (breach,) = report.breaches
    assert (breach.rule, breach.metric, breach.feature) == (
        "fairness",
        "demographic_parity_ratio",
        "region",
    )
    assert breach.value < 0.8
    assert breach.threshold == 0.8
    region = report.attributes["region"]
    assert region["breached"] is True
    assert region["p_value"] < ALPHA
    assert region["deploy"]["demographic_parity_ratio"] == 0.96

    silent = decision_fairness(ref, {"region": fair_groups}, fair, judged=True, alpha=ALPHA)
    assert silent.breaches == []
    assert silent.attributes["region"]["breached"] is False
    # A window too small to judge (fewer than min_rows) measures but never breaches.
    unjudged = decision_fairness(ref, {"region": biased_groups}, biased, judged=False, alpha=ALPHA)
    assert unjudged.breaches == []
    assert unjudged.attributes["region"]["demographic_parity_ratio"] == pytest.approx(
        region["demographic_parity_ratio"]
    )


def test_a_ratio_below_the_gate_that_is_only_noise_does_not_breach() -> None:
    # 40 rows a group, 12 vs 18 favourable: ratio 0.67, yet no test at 0.01 tells them apart.
    ref = _ref()
    groups = ["a"] * 40 + ["b"] * 40
    labels = [1] * 18 + [0] * 22 + [1] * 12 + [0] * 28
    report = decision_fairness(ref, {"region": groups}, labels, judged=True, alpha=ALPHA)
    region = report.attributes["region"]
    assert region["demographic_parity_ratio"] == pytest.approx(12 / 18)
    assert region["p_value"] > ALPHA
    assert report.breaches == []


def test_window_numbers_equal_fairlearns_on_the_same_rows() -> None:
    ref = _ref(min_group_size=30)
    groups, labels = _decisions({"a": 0.7, "b": 0.4, "c": 0.55}, 60, 3)
    groups += ["tiny"] * 5  # reported, flagged small, left out of the summaries
    labels += [0] * 5
    report = decision_fairness(ref, {"region": groups}, labels, judged=True, alpha=ALPHA)
    got = report.attributes["region"]
    y = np.asarray(labels)
    g = np.asarray(groups, dtype=object)
    frame = MetricFrame(metrics=selection_rate, y_true=y, y_pred=y, sensitive_features=g).by_group
    for name, rate in frame.items():
        assert got["groups"][name]["selection_rate"] == pytest.approx(rate, abs=1e-12)
    assert got["groups"]["tiny"] == {"count": 5, "selection_rate": 0.0, "small": True}
    keep = g != "tiny"
    for key, fn in (
        ("demographic_parity_difference", demographic_parity_difference),
        ("demographic_parity_ratio", demographic_parity_ratio),
    ):
        want = fn(y[keep], y[keep], sensitive_features=g[keep])
        assert got[key] == pytest.approx(want, abs=1e-12)
    assert got["test"] == "chi2"


def test_an_attribute_that_is_not_an_input_is_reported_as_not_monitored() -> None:
    ref = _ref()
    groups, labels = _decisions({"a": 0.6, "b": 0.3}, 150, 1)
    report = decision_fairness(ref, {"region": groups}, labels, judged=True, alpha=ALPHA)
    assert report.attributes["sex"] == {
        "monitored": False,
        "reason": NOT_AN_INPUT,
        "deploy": report.attributes["sex"]["deploy"],
    }
    assert report.attributes["sex"]["deploy"]["demographic_parity_ratio"] == 0.96
    assert NOT_AN_INPUT == "not monitored: not a model input"
    assert [b.feature for b in report.breaches] == ["region"]
    json = report.to_json()
    assert json["gates"]["min_demographic_parity_ratio"] == 0.8
    assert json["breaches"][0]["metric"] == "demographic_parity_ratio"


def test_a_window_with_one_group_big_enough_has_nothing_to_compare() -> None:
    ref = _ref(min_group_size=100)
    groups, labels = _decisions({"a": 0.9, "b": 0.1}, 60, 2)
    groups += ["a"] * 60
    labels += [1] * 60
    report = decision_fairness(ref, {"region": groups}, labels, judged=True, alpha=ALPHA)
    region = report.attributes["region"]
    assert region["groups"]["b"]["small"] is True
    assert region["demographic_parity_ratio"] is None
    assert report.breaches == []


def _outcomes(
    tpr: dict[str, float], n: int, seed: int
) -> tuple[list[int], list[int], list[dict[str, str]]]:
    """`n` outcomes per group, half truly favourable; TPR as given, FPR 0.2 everywhere."""
    rng = np.random.default_rng(seed)
    truth: list[int] = []
    pred: list[int] = []
    groups: list[dict[str, str]] = []
    for g, rate in tpr.items():
        y = np.asarray([1] * (n // 2) + [0] * (n - n // 2))
        p = np.where(y == 1, rng.random(n) < rate, rng.random(n) < 0.2).astype(int)
        truth += y.tolist()
        pred += p.tolist()
        groups += [{"region": g}] * n
    return truth, pred, groups


def test_an_outcomes_window_breaches_equalized_odds_and_equals_fairlearn() -> None:
    ref = _ref()
    truth, pred, groups = _outcomes({"a": 0.9, "b": 0.5}, 200, 4)
    report = outcome_fairness(ref, truth, pred, groups, judged=True, alpha=ALPHA)
    got = report.attributes["region"]
    y, p = np.asarray(truth), np.asarray(pred)
    g = np.asarray([r["region"] for r in groups], dtype=object)
    assert got["equalized_odds_difference"] == pytest.approx(
        equalized_odds_difference(y, p, sensitive_features=g), abs=1e-12
    )
    frame = MetricFrame(
        metrics={
            "accuracy": accuracy_score,
            "tpr": true_positive_rate,
            "fpr": false_positive_rate,
        },
        y_true=y,
        y_pred=p,
        sensitive_features=g,
    ).by_group
    for name, row in frame.iterrows():
        for key in ("accuracy", "tpr", "fpr"):
            assert got["groups"][name][key] == pytest.approx(row[key], abs=1e-12)
    (breach,) = report.breaches
    assert (breach.metric, breach.feature) == ("equalized_odds_difference", "region")
    assert breach.value > 0.1
    assert got["tests"]["tpr"]["p_value"] < ALPHA
    assert report.attributes["sex"]["reason"] == NOT_AN_INPUT

    fair_truth, fair_pred, fair_groups = _outcomes({"a": 0.8, "b": 0.8}, 200, 4)
    fair = outcome_fairness(ref, fair_truth, fair_pred, fair_groups, judged=True, alpha=ALPHA)
    assert fair.breaches == []


def test_outcomes_whose_decisions_had_no_groups_are_counted_not_guessed() -> None:
    ref = _ref()
    truth, pred, groups = _outcomes({"a": 0.9, "b": 0.5}, 200, 4)
    groups[0] = {}
    report = outcome_fairness(ref, truth, pred, groups, judged=True, alpha=ALPHA)
    assert report.attributes["region"]["rows"] == 399
    assert report.attributes["region"]["unread"] == 1


def test_independence_uses_fisher_for_a_sparse_two_by_two_and_skips_a_constant_table() -> None:
    p, test = independence_p(np.asarray([[3, 1], [0, 4]]))
    assert test == "fisher"
    assert p is not None
    assert 0 < p < 1
    assert independence_p(np.asarray([[5, 0], [7, 0]])) == (None, None)  # nobody favoured


def test_a_decisions_groups_are_read_from_its_inputs() -> None:
    ref = _ref()
    schema = InputSchema((Feature("x", "float", 0), Feature("region", "string", 1)), "columns")
    body = {"request": {"inputs": {"x": [[1.5]], "region": [["b"]]}}, "response": {"label": [1]}}
    assert body_groups(body, schema, ref) == {"region": "b"}
    several = {"request": {"inputs": {"x": [[1.5], [2.0]], "region": [["a"], ["b"]]}}}
    assert body_groups(several, schema, ref) is None
    assert body_groups({"request": {}}, schema, ref) is None


def test_a_profile_keeps_its_fairness_and_an_older_one_reads_without() -> None:
    import pandas as pd  # type: ignore[import-untyped,unused-ignore]

    frame = pd.DataFrame({"x": np.linspace(0, 1, 50), "region": ["a", "b"] * 25})
    kinds: dict[str, Any] = {"x": "numeric", "region": "categorical"}
    fair = fairness_reference(_snapshot(), 30, ["x", "region"])
    doc = build_profile(frame, kinds, [0, 1] * 25, None, {}, MonitorConfig(), fair)
    assert ReferenceProfile.from_json(doc).fairness == FairnessReference.from_json(fair)
    older = build_profile(frame, kinds, [0, 1] * 25, None, {}, MonitorConfig())
    assert "fairness" not in older
    assert ReferenceProfile.from_json(older).fairness is None


def test_groups_are_named_alike_at_deploy_and_in_production() -> None:
    from mrm.drift.fairness import group_of

    snapshot = _snapshot()
    snapshot["attributes"]["region"]["groups"] = {"1.0": {"count": 9}, "north": {"count": 9}}
    ref = FairnessReference.from_json(fairness_reference(snapshot, 30, ["region"]))
    assert set(ref.deploy["region"]["groups"]) == {"1", "north"}
    assert [group_of(v) for v in (1.0, 1, "north", None, float("nan"))] == [
        "1", "1", "north", "(missing)", "(missing)",
    ]  # fmt: skip
