"""Principal reasons of adverse decisions: which factors, in which order, in which words."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mrm.client.explain import Explanation
from mrm.client.reasons import (
    MIN_SHARE,
    ReasonWording,
    favourable_label,
    is_adverse,
    principal_reasons,
)
from mrm.v1 import explain_pb2

CREDIT = {
    "positive_label": "1",
    "labels": {"1": "Rejected", "0": "Approved"},
    "reasons": {
        "debt_to_income": "Debt is high relative to income",
        "late_payments_12m": "Recent late payments",
        "employment": "Employment status",
    },
}


def explanation(
    predicted: str, explained: str, shap: dict[str, float], values: dict[str, Any] | None = None
) -> Explanation:
    values = values or {}
    return explain_pb2.Explanation(
        predicted_label=predicted,
        class_label=explained,
        contributions=[
            explain_pb2.Contribution(feature=f, value_json=json.dumps(values.get(f, 1.0)), shap=s)
            for f, s in shap.items()
        ],
    )


SHAP = {
    "income": -0.30,
    "debt_to_income": 0.90,
    "credit_history_months": 0.10,
    "loan_amount": 0.40,
    "open_credit_lines": -0.05,
    "late_payments_12m": 0.60,
    "employment": 0.20,
}


def test_explaining_the_adverse_class_positive_pushes_are_reasons() -> None:
    exp = explanation(
        "1", "1", SHAP, {"debt_to_income": 0.62, "loan_amount": 4178.0, "employment": "unemployed"}
    )
    reasons = principal_reasons(exp, ReasonWording.from_explain(CREDIT))
    assert [r.feature for r in reasons] == [
        "debt_to_income",
        "late_payments_12m",
        "loan_amount",
        "employment",
    ]
    assert [r.rank for r in reasons] == [1, 2, 3, 4]
    assert reasons[0].text == "Debt is high relative to income"
    assert reasons[0].value == 0.62
    assert reasons[0].contribution == 0.90
    # No wording for loan_amount: a generated sentence with its value.
    assert reasons[2].text == 'loan_amount of 4178 weighed against "Approved"'
    # A categorical column is one feature, with its category as the value.
    assert reasons[3].value == "unemployed"
    assert reasons[3].text == "Employment status"


def test_explaining_the_favourable_class_negative_pushes_are_reasons() -> None:
    # The same decision explained as the probability of approval: every sign flips.
    flipped = {f: -s for f, s in SHAP.items()}
    table = CREDIT | {"positive_label": "0"}  # explains "0", which must then be named favourable
    table["favourable_label"] = "0"
    reasons = principal_reasons(explanation("1", "0", flipped), ReasonWording.from_explain(table))
    assert [r.feature for r in reasons] == [
        "debt_to_income",
        "late_payments_12m",
        "loan_amount",
        "employment",
    ]
    assert reasons[0].contribution == -0.90  # as explained, in the explained class's sign


def test_factors_that_pushed_the_other_way_are_never_reasons() -> None:
    exp = explanation("1", "1", {"income": -2.0, "debt_to_income": 0.3, "employment": 0.0})
    reasons = principal_reasons(exp, ReasonWording.from_explain(CREDIT))
    assert [r.feature for r in reasons] == ["debt_to_income"]  # fewer than four is fine


def test_ties_keep_the_schema_order() -> None:
    exp = explanation("1", "1", {"b": 0.5, "a": 0.5, "c": 0.7, "d": 0.5, "e": 0.5})
    reasons = principal_reasons(exp, ReasonWording.from_explain(CREDIT))
    assert [r.feature for r in reasons] == ["c", "b", "a", "d"]


def test_max_reasons_is_configurable() -> None:
    wording = ReasonWording.from_explain(CREDIT | {"max_reasons": 2})
    assert len(principal_reasons(explanation("1", "1", SHAP), wording)) == 2
    # five features pushed towards rejection; credit_history_months (0.10 of 2.20) is under
    # MIN_SHARE, so at most four can be reasons
    assert len(principal_reasons(explanation("1", "1", SHAP), wording, n=6)) == 4


def test_a_favourable_decision_has_no_reasons() -> None:
    wording = ReasonWording.from_explain(CREDIT)
    exp = explanation("0", "1", SHAP)  # approved, though some factors pushed towards rejection
    assert not is_adverse(exp, wording)
    assert principal_reasons(exp, wording) == []


def test_without_a_favourable_label_or_for_a_regressor_nothing_is_adverse() -> None:
    assert not is_adverse(explanation("1", "1", SHAP), ReasonWording.from_explain({}))
    unnamed = {"positive_label": "1"}  # binary, but the other label is not known
    assert not is_adverse(explanation("1", "1", SHAP), ReasonWording.from_explain(unnamed))
    regressor = explanation("", "", SHAP)
    assert principal_reasons(regressor, ReasonWording.from_explain(CREDIT)) == []


def test_multiclass_any_label_but_the_favourable_one_is_adverse() -> None:
    table = {"labels": {"a": "Approved", "r": "Rejected", "m": "Manual review"}}
    assert favourable_label(table) is None  # three labels: no default
    wording = ReasonWording.from_explain(table | {"favourable_label": "a"})
    assert is_adverse(explanation("m", "m", SHAP), wording)
    assert not is_adverse(explanation("a", "a", SHAP), wording)
    # The predicted class "m" explained: its positive pushes are the reasons.
    assert principal_reasons(explanation("m", "m", SHAP), wording)[0].feature == "debt_to_income"


@pytest.mark.parametrize(
    ("table", "want"),
    [
        ({"positive_label": "1", "labels": {"1": "Rejected", "0": "Approved"}}, "0"),
        ({"positive_label": "0", "labels": {"1": "Rejected", "0": "Approved"}}, "1"),
        ({"positive_label": "1", "labels": {"1": "Rejected"}}, None),
        ({"positive_label": "2", "labels": {"1": "Rejected", "0": "Approved"}}, None),
        ({"labels": {"1": "Rejected", "0": "Approved"}}, None),
        ({"positive_label": "1", "favourable_label": "1"}, "1"),
    ],
)
def test_the_default_favourable_label(table: dict[str, Any], want: str | None) -> None:
    assert favourable_label(table) == want


def test_malformed_facts_give_no_wording() -> None:
    assert ReasonWording.from_facts("not json") == ReasonWording()
    assert ReasonWording.from_facts(json.dumps({"explain": ["x"]})) == ReasonWording()
    stored = ReasonWording.from_facts(json.dumps({"explain": CREDIT | {"max_reasons": 0}}))
    assert stored.favourable_label == "0"
    assert stored.max_reasons == 4


@given(
    st.dictionaries(
        st.text(min_size=1, max_size=5),
        st.floats(-10, 10, allow_nan=False),
        max_size=12,
    ),
    st.booleans(),
)
def test_reasons_are_the_strongest_adverse_pushes_in_order(
    shap: dict[str, float], explains_adverse: bool
) -> None:
    wording = ReasonWording.from_explain(CREDIT)
    exp = explanation("1", "1" if explains_adverse else "0", shap)
    towards = 1 if explains_adverse else -1
    reasons = principal_reasons(exp, wording)
    pushes = [towards * r.contribution for r in reasons]
    assert all(p > 0 for p in pushes)
    assert pushes == sorted(pushes, reverse=True)
    adverse = sorted((towards * s for s in shap.values() if towards * s > 0), reverse=True)
    assert pushes == [a for a in adverse if a >= MIN_SHARE * sum(adverse)][:4]


def test_a_factor_that_barely_mattered_is_not_a_reason() -> None:
    shap = {"debt_to_income": 0.90, "late_payments_12m": 0.60, "income": 0.05}
    # income carries 0.05 / 1.55 = 3% of the push towards rejection: below MIN_SHARE
    reasons = principal_reasons(explanation("1", "1", shap), ReasonWording.from_explain(CREDIT))
    assert [r.feature for r in reasons] == ["debt_to_income", "late_payments_12m"]
    shap["income"] = 0.09  # 0.09 / 1.59 = 5.7%: a reason
    reasons = principal_reasons(explanation("1", "1", shap), ReasonWording.from_explain(CREDIT))
    assert [r.feature for r in reasons] == ["debt_to_income", "late_payments_12m", "income"]
