"""The HTML report: served over HTTP, self-contained, escaped, built from the records."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import markupsafe
import pytest

from mrm.client.explain import ExplainClient, sentence
from mrm.client.ledger import LedgerClient
from tests.conftest import RunningLedger, start_ledger
from tests.support.decisions import EXPLAIN_TABLE, decide, deploy_explained
from tests.support.http import get

HOSTILE = "<script>alert('x')</script>"
# income has no wording: its reason, if it is one, is a generated sentence.
REASONS = {
    "debt_to_income": "Debt is high relative to income " + HOSTILE,
    "credit_history_months": "Length of credit history is too short",
}


@dataclass
class Reported:
    stack: RunningLedger
    decision: str
    approval: str


@pytest.fixture(scope="module")
def reported(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Reported]:
    tmp = tmp_path_factory.mktemp("report")
    stack = start_ledger(tmp / "home", trace_url_template="https://traces.example/t/{trace_id}")
    try:
        # Words from mrm.toml end up in the page: they must be escaped.
        labels = {"1": "Rejected " + HOSTILE, "0": "Approved " + HOSTILE}
        explain = EXPLAIN_TABLE | {"labels": labels, "reasons": REASONS}
        model, X, _ = deploy_explained(stack, tmp, explain=explain)
        rejected = X[model.predict(X) == 1].iloc[:1].to_numpy()
        approved = X[model.predict(X) == 0].iloc[:1].to_numpy()
        (decision,) = decide(stack, "credit-risk", rejected, "a-1")
        (approval,) = decide(stack, "credit-risk", approved, "a-2")
        yield Reported(stack, decision, approval)
    finally:
        stack.stack.stop()


def test_report_over_http_shows_the_recorded_explanation(reported: Reported) -> None:
    with ExplainClient(reported.stack.explain_addr) as ex:
        exp = ex.explain_record(reported.decision)
    status, headers, html = get(f"http://{reported.stack.http_addr}{exp.report_path}")
    assert status == 200
    assert headers["Content-Type"].startswith("text/html")
    assert "default-src 'none'" in headers["Content-Security-Policy"]
    # Self-contained: no scripts, stylesheets, images or fonts from anywhere.
    assert not re.search(r"<(script|link|img|iframe)\b", html)
    assert not re.search(r"(src|href)=\"(?!https://traces\.example/)", html)
    assert "<svg" in html
    assert html.count("<rect") >= 3
    # Escaped: the hostile label arrives as text.
    assert HOSTILE not in html
    assert "&lt;script&gt;" in html
    # The parts the issue lists.
    assert exp.decision.startswith("Rejected")
    text = re.sub(r"\s+", " ", html)
    for feature in ("income", "debt_to_income", "credit_history_months"):
        assert f"<td>{feature}</td>" in text
    assert f"https://traces.example/t/{exp.trace_id}" in html
    assert "PERFORMANCE_SNAPSHOT" in html
    assert "accuracy" in html
    assert "MODEL_INGESTED" in html
    assert "DEPLOYMENT" in html
    assert "EXPLAINABILITY_BASELINE" in html
    assert "global mean |SHAP|" in html
    with LedgerClient(reported.stack.addr) as led:
        cp = led.checkpoint()
        proof = led.inclusion_proof(record_id=exp.record_id, tree_size=cp.tree_size)
    assert proof.leaf_hash.hex() in html
    assert cp.note.split("\n")[0] in html
    assert reported.decision in html
    assert exp.record_id in html


def test_a_prediction_id_shows_its_latest_explanation(reported: Reported) -> None:
    with ExplainClient(reported.stack.explain_addr) as ex:
        latest = ex.explain_record(reported.decision)
        got = ex.report(reported.decision)
    assert got.explanation_record_id == latest.record_id
    status, _, html = get(f"http://{reported.stack.http_addr}/reports/{reported.decision}")
    assert status == 200
    assert latest.record_id in html


def test_http_errors_are_plain_statuses(reported: Reported) -> None:
    base = f"http://{reported.stack.http_addr}/reports/"
    assert get(base + "01900000-0000-7000-8000-000000000000")[0] == 404
    status, _, body = get(base + "not-a-record")
    assert status == 400
    assert "record_id" in body
    with LedgerClient(reported.stack.addr) as led:
        ingested = next(iter(led.query(kind="MODEL_INGESTED")))
    assert get(base + ingested.record_id)[0] == 400
    assert get(f"http://{reported.stack.http_addr}/elsewhere")[0] == 404


def test_report_sentence_matches_the_client_sentence(reported: Reported, tmp_path: Path) -> None:
    with ExplainClient(reported.stack.explain_addr) as ex:
        exp = ex.explain_record(reported.decision)
        html = ex.report(exp.record_id).html
    (tmp_path / "report.html").write_text(html)
    assert markupsafe.escape(sentence(exp)) in html


def test_a_rejection_states_its_principal_reasons_an_approval_none(reported: Reported) -> None:
    with ExplainClient(reported.stack.explain_addr) as ex:
        exp = ex.explain_record(reported.decision)
    _, _, html = get(f"http://{reported.stack.http_addr}{exp.report_path}")
    assert "Principal reasons for this decision" in html
    items = re.search(r'<ol id="reasons">(.*?)</ol>', html, re.S)
    assert items is not None
    shown = [markupsafe.Markup(li).unescape() for li in re.findall(r"<li>(.*?)</li>", items[1])]
    # The factors that raised the explained probability of default, the largest first.
    pushing = sorted((c for c in exp.contributions if c.shap > 0), key=lambda c: -c.shap)
    assert pushing
    assert len(shown) == min(4, len(pushing))
    for text, c in zip(shown, pushing, strict=False):
        assert text == REASONS.get(c.feature) or (
            c.feature not in REASONS
            and text.startswith(f"{c.feature} of ")
            and text.endswith(f'weighed against "Approved {HOSTILE}"')
        )
    assert HOSTILE not in html
    with ExplainClient(reported.stack.explain_addr) as ex:
        approval = ex.explain_record(reported.approval)
    _, _, html = get(f"http://{reported.stack.http_addr}{approval.report_path}")
    assert approval.decision.startswith("Approved")
    assert "Principal reasons" not in html
