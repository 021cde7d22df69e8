"""A window's breaches grouped into one alert per problem."""

from __future__ import annotations

from mrm.drift.compare import Breach
from mrm.monitor.problems import alert_key, problems

INCOME = [
    Breach("feature_drift", "psi", "income", 1.71, 0.2),
    Breach("feature_drift", "js", "income", 0.52, 0.1),
    Breach("feature_drift", "ks", "income", 0.53, 0.1),
    Breach("feature_drift", "wasserstein", "income", 1.71, 0.1),
]


def test_one_problem_per_rule_and_feature() -> None:
    breaches = [
        *INCOME,
        Breach("data_quality", "out_of_range", "income", 0.3, 0.05),
        Breach("feature_drift", "psi", "age", 0.25, 0.2),
        Breach("prediction_drift", "prediction_psi", None, 0.4, 0.2),
        Breach("prediction_drift", "score_psi", None, 0.9, 0.2),
    ]
    found = problems(breaches)
    assert [(p.rule, p.feature, len(p.breaches)) for p in found] == [
        ("feature_drift", "income", 4),
        ("data_quality", "income", 1),
        ("feature_drift", "age", 1),
        ("prediction_drift", "", 2),
    ]
    keys = {p.key("credit", "1.0.0") for p in found}
    assert len(keys) == len(found)
    assert ("credit", "1.0.0", "prediction_drift", "") in keys


def test_the_most_severe_breach_leads_and_every_one_is_kept() -> None:
    (income,) = problems(INCOME)
    body = income.to_json()
    # Largest value/threshold: Wasserstein 1.71/0.1 = 17.1, over PSI's 1.71/0.2.
    assert (body["metric"], body["value"], body["threshold"]) == ("wasserstein", 1.71, 0.1)
    assert [b["metric"] for b in body["breaches"]] == ["wasserstein", "psi", "ks", "js"]
    assert {(b["metric"], b["value"], b["threshold"]) for b in body["breaches"]} == {
        (b.metric, b.value, b.threshold) for b in INCOME
    }
    assert (
        income.summary() == "income drifted: Wasserstein 1.71 (>= 0.1), PSI 1.71, KS 0.53, JS 0.52"
    )
    assert alert_key("credit", "1.0.0", body) == income.key("credit", "1.0.0")


def test_performance_summary_names_live_and_deploy_values() -> None:
    (fell,) = problems(
        [
            Breach("performance", "accuracy", None, 0.053, 0.05),
            Breach("performance", "f1", None, 0.08, 0.05),
        ]
    )
    assert fell.worst.metric == "f1"
    live, deploy = {"accuracy": 0.845, "f1": 0.8}, {"accuracy": 0.898, "f1": 0.88}
    assert fell.summary(live, deploy) == (
        "live performance fell: f1 0.800 vs 0.880 at deploy (-0.080), "
        "accuracy 0.845 vs 0.898 at deploy (-0.053)"
    )
    assert fell.summary() == "live performance fell: f1 -0.08 (>= 0.05), accuracy -0.053 (>= 0.05)"


def test_an_alert_raised_per_metric_keys_as_its_problem() -> None:
    """ALERT bodies recorded before grouping (one per metric) still say which problem
    is firing, so a resumed monitor does not raise it again."""
    old = {"rule": "feature_drift", "metric": "ks", "feature": "income", "value": 0.5}
    assert alert_key("credit", "1.0.0", old) == ("credit", "1.0.0", "feature_drift", "income")
    performance = {"rule": "performance", "metric": "f1", "feature": None}
    assert alert_key("m", "v", performance) == ("m", "v", "performance", "")
