"""The bundle's derived documents: figures from records, escaped HTML, stable PDF bytes."""

from __future__ import annotations

from typing import Any

from mrm.evidence import derive, render

SCOPE = derive.Scope("credit-risk", None, None)
LOG = derive.LogState("example.com/log", 10, "ab" * 32)


def leaf(index: int, kind: str, body: dict[str, Any], version: str = "1.0.0") -> derive.Leaf:
    return derive.Leaf(
        index,
        {
            "actor": "ci",
            "body": body,
            "kind": kind,
            "model_name": "credit-risk",
            "model_version": version,
            "record_id": f"00000000-0000-7000-8000-{index:012d}",
            "recorded_at": f"2026-12-01T00:00:{index:02d}.000000Z",
            "span_id": "",
            "subject": "",
            "trace_id": "",
            "v": 1,
        },
    )


FAIRNESS = {
    "passed": False,
    "favourable_label": "0",
    "failures": ["sex: demographic parity ratio 0.7 is below 0.8"],
    "attributes": {
        "sex": {
            "demographic_parity_ratio": 0.7,
            "demographic_parity_difference": 0.12,
            "equalized_odds_difference": 0.05,
            "ci": {"demographic_parity_ratio": [0.6, 0.8]},
            "groups": {
                "f": {"count": 90, "selection_rate": 0.28, "small": False},
                "m": {"count": 110, "selection_rate": 0.4, "small": False},
            },
        }
    },
}


def leaves(purpose: str = "Score applications") -> list[derive.Leaf]:
    return [
        leaf(0, "MODEL_INGESTED", {"facts": {"card": {"purpose": purpose, "risk_tier": "high"}}}),
        leaf(1, "FAIRNESS_SNAPSHOT", FAIRNESS),
        leaf(2, "ALERT", {"state": "firing", "metric": "psi", "summary": "drifted"}),
        leaf(
            3,
            "ALERT",
            {
                "state": "acknowledged",
                "alert_record_id": "00000000-0000-7000-8000-000000000002",
                "note": "ok",
            },
        ),
    ]


def test_fairness_headline_and_alert_acknowledgement() -> None:
    summary = derive.summary(SCOPE, LOG, leaves())
    (fair,) = summary["fairness"]
    (sex,) = fair["attributes"]
    assert sex["demographic_parity_ratio"] == 0.7
    assert sex["demographic_parity_ratio_ci"] == [0.6, 0.8]
    assert sex["groups"]["f"]["selection_rate"] == 0.28
    assert fair["passed"] is False
    assert fair["record_id"].endswith("000000000001")
    (alert,) = summary["alerts"]
    assert alert["acknowledgement"]["note"] == "ok"
    card = derive.model_card(SCOPE, LOG, leaves())
    assert card["card"]["risk_tier"] == "high"
    assert card["card"]["source"]["leaf_index"] == 0


def test_an_acknowledgement_of_a_missing_alert_is_named() -> None:
    missing = derive.missing_references(leaves()[:2] + leaves()[3:])
    assert [(r.leaf_index, rid) for r, rid in missing] == [
        (3, "00000000-0000-7000-8000-000000000002")
    ]


def report_of(purpose: str) -> render.Report:
    ls = leaves(purpose)
    return render.build_report(derive.model_card(SCOPE, LOG, ls), derive.summary(SCOPE, LOG, ls))


def test_html_escapes_recorded_text() -> None:
    html = render.render_html(report_of("<script>alert(1)</script>")).decode()
    assert "<script>" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "0.7 [0.6; 0.8]" in html  # the DP ratio with its interval


def test_pdf_bytes_are_stable_and_any_text_renders() -> None:
    report = report_of("Kreditwürdigkeit → 信用 ✓")
    first = render.render_pdf(report)
    assert first.startswith(b"%PDF-")
    assert render.render_pdf(report) == first
    assert render.render_pdf(report_of("other")) != first
