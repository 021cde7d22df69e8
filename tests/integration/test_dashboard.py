"""The governance dashboard's figures and data endpoints against a real stack on
PostgreSQL (tests/support/dashboard.py): each figure equals what the
ledger, registry and monitor hold, each names its record, each record's proof
verifies, and bad input answers 400/404 naming the parameter."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote, urlencode

import pytest

from mrm.client.ledger import LedgerClient, new_record
from mrm.tlog.note import parse_vkey
from mrm.tlog.proofs import InclusionProof, verify_proof
from tests.support.dashboard import HOSTILE, Governed, get, get_json, governed


@pytest.fixture(scope="module")
def dashboard_stack(
    tmp_path_factory: pytest.TempPathFactory, postgres_server: str
) -> Iterator[Governed]:
    with governed(tmp_path_factory.mktemp("dashboard")) as state:
        yield state


def _models(dashboard_stack: Governed) -> dict[str, Any]:
    status, doc = get_json(f"{dashboard_stack.base}/dashboard/api/models")
    assert status == 200, doc
    return dict(doc)


def test_the_figures_are_the_ledgers(dashboard_stack: Governed) -> None:
    doc = _models(dashboard_stack)
    models = {m["name"]: m for m in doc["models"]}
    assert set(models) == {"credit-risk", "quiet-model"}
    credit, quiet = models["credit-risk"], models["quiet-model"]

    # Inventory: the deployed version, who deployed it (verified), the card's absence.
    assert credit["production_version"] == "1.2.4"
    assert [v["version"] for v in credit["versions"]] == ["1.2.4"]
    assert credit["versions"][0]["stage"] == "production"
    deploy = credit["last_deploy"]
    assert deploy["version"] == "1.2.4"
    assert deploy["by"]["name"] == "test-suite"
    assert deploy["by"]["verified"] is True
    assert deploy["by"]["how"].startswith("token tok_")
    assert credit["owner"] == credit["risk_tier"] == "—"
    with LedgerClient(dashboard_stack.stack.addr) as led:
        promoted = led.get_record(deploy["record_id"])
        predictions = list(led.query(kind="PREDICTION", model_name="credit-risk"))
    assert json.loads(promoted.body_json)["action"] == "promote"

    # Live status: traffic as the ledger counts it, the GAP report, drift, alerts.
    assert credit["traffic"]["last_24h"] == len(predictions) >= 3
    assert credit["traffic"]["total"] == len(predictions)
    assert credit["traffic"]["newest_record_id"] == predictions[-1].record_id
    assert credit["traffic"]["dropped_24h"] == 3
    assert credit["traffic"]["gap_record_id"] == dashboard_stack.gap_id
    assert credit["traffic"]["proxy_sampled"] is not None  # the proxy's status RPC answered
    assert credit["drift"]["record_id"] == dashboard_stack.drift_id
    assert set(dashboard_stack.shifted) <= set(credit["drift"]["drifted"])
    assert credit["alerts"]["firing"] == 1  # two raised, one acknowledged
    assert credit["alerts"]["newest_record_id"] == dashboard_stack.firing_id
    assert credit["alerts"]["newest_summary"].endswith(HOSTILE)
    perf = credit["performance"]
    assert perf["record_id"] == dashboard_stack.outcomes_id
    assert {m["name"]: (m["live"], m["deploy"]) for m in perf["metrics"]} == {
        "accuracy": (0.74, 0.83),
        "f1": (0.61, 0.70),
    }
    fair = credit["fairness"]
    assert fair["record_id"] == dashboard_stack.fairness_id
    assert fair["passed"] is False
    assert fair["failures"] == ["sex: demographic parity ratio 0.7200 is below 0.8"]
    assert fair["attributes"] == [
        {"name": "age_band", "parity_ratio": 0.91, "odds_difference": 0.04},
        {"name": "sex", "parity_ratio": 0.72, "odds_difference": 0.11},
    ]
    assert quiet["fairness"] is None  # no FAIRNESS_SNAPSHOT: "not assessed"
    assert credit["unavailable"] == []

    # The summary names what needs attention, in words.
    assert quiet["production_version"] == ""
    assert quiet["concerns"] == []
    assert doc["summary"]["level"] == "amber"
    assert doc["summary"]["headline"] == "1 model in production; 1 needs attention"
    ((name, why),) = doc["summary"]["details"]
    assert name == "credit-risk"
    assert "1 open alert" in why
    assert "inputs have shifted" in why
    assert "3 decisions went unrecorded" in why
    assert "failed its fairness check" in why


def test_one_model_and_an_unknown_one(dashboard_stack: Governed) -> None:
    status, doc = get_json(f"{dashboard_stack.base}/dashboard/api/models/credit-risk")
    assert status == 200
    assert doc["name"] == "credit-risk"
    assert doc["drift"]["record_id"] == dashboard_stack.drift_id
    status, doc = get_json(f"{dashboard_stack.base}/dashboard/api/models/no-such-model")
    assert status == 404
    assert "no-such-model" in doc["error"]["message"]


def _every_record_id(doc: Any) -> set[str]:
    found: set[str] = set()
    if isinstance(doc, dict):
        for key, value in doc.items():
            if key.endswith("record_id") and isinstance(value, str) and value:
                found.add(value)
            else:
                found |= _every_record_id(value)
    elif isinstance(doc, list):
        for value in doc:
            found |= _every_record_id(value)
    return found


def test_every_figure_names_a_record_whose_proof_verifies(dashboard_stack: Governed) -> None:
    ids = _every_record_id(_models(dashboard_stack))
    assert {
        dashboard_stack.drift_id,
        dashboard_stack.outcomes_id,
        dashboard_stack.firing_id,
        dashboard_stack.gap_id,
        dashboard_stack.fairness_id,
    } <= ids
    for record_id in sorted(ids):
        status, _, html = get(
            f"{dashboard_stack.base}/dashboard/records/{record_id}", accept="text/html"
        )
        assert status == 200, record_id
        assert "This record is in the ledger, unaltered." in html
        assert "mrmctl ledger verify-proof proof.json --vkey " in html
    # The proof file checks offline with the client's verifier and the ledger's key.
    status, proof = get_json(
        f"{dashboard_stack.base}/dashboard/records/{dashboard_stack.drift_id}/proof.json"
    )
    assert status == 200
    with LedgerClient(dashboard_stack.stack.addr) as led:
        vkey = led.checkpoint().verifier_key
        record = led.get_record(dashboard_stack.drift_id)
    parsed = InclusionProof.from_json(proof)
    assert parsed.leaf_index == record.leaf_index
    assert "verified" in verify_proof(parsed, [parse_vkey(vkey)])
    # A hostile string in a record is text on the page, never markup.
    _, _, html = get(
        f"{dashboard_stack.base}/dashboard/records/{dashboard_stack.firing_id}", accept="text/html"
    )
    assert HOSTILE not in html
    assert "&lt;script&gt;" in html


def test_the_timeline_is_newest_first_and_pages_without_gaps(dashboard_stack: Governed) -> None:
    status, whole = get_json(f"{dashboard_stack.base}/dashboard/api/timeline?page_size=200")
    assert status == 200
    events = whole["events"]
    kinds = {e["kind"] for e in events}
    assert {"registered", "promoted", "refused", "fairness", "alert", "acknowledged"} <= kinds
    leaves = [e["leaf_index"] for e in events]
    assert leaves == sorted(leaves, reverse=True)
    assert whole["next_page_token"] == ""
    by_id = {e["record_id"]: e for e in events}
    assert by_id[dashboard_stack.refusal_id]["attention"] is True
    assert "accuracy 0.61 < 0.80" in by_id[dashboard_stack.refusal_id]["what"]
    assert by_id[dashboard_stack.ack_id]["by"]["name"] == "risk-officer"

    paged: list[str] = []
    token = ""
    for _ in range(50):
        query = urlencode({"page_size": 2, "page_token": token} if token else {"page_size": 2})
        status, page = get_json(f"{dashboard_stack.base}/dashboard/api/timeline?{query}")
        assert status == 200, page
        assert len(page["events"]) <= 2
        paged += [e["record_id"] for e in page["events"]]
        token = page["next_page_token"]
        if not token:
            break
    assert paged == [e["record_id"] for e in events]

    # The page pages the same way: an API token opens the older events there too.
    first = get_json(f"{dashboard_stack.base}/dashboard/api/timeline?page_size=2")[1]
    status, _, html = get(
        f"{dashboard_stack.base}/dashboard?page_token={first['next_page_token']}",
        accept="text/html",
    )
    assert status == 200
    assert '<a href="/dashboard#timeline">Newest</a>' in html
    assert events[2]["record_id"] in html
    assert events[0]["record_id"] not in html.split('id="timeline"')[1]

    status, one = get_json(f"{dashboard_stack.base}/dashboard/api/timeline?model=quiet-model")
    assert status == 200
    assert one["events"] == []
    future = (datetime.now(UTC) + timedelta(days=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    status, none = get_json(f"{dashboard_stack.base}/dashboard/api/timeline?since={future}")
    assert status == 200
    assert none["events"] == []


@pytest.mark.parametrize(
    ("path", "status", "field"),
    [
        ("/dashboard/api/models/no-such-model", 404, ""),
        ("/dashboard/api/models/" + quote("bad\x01name"), 400, "model"),
        ("/dashboard/api/models/" + "a" * 300, 400, "model"),
        ("/dashboard/api/timeline?model=" + quote("x\x00y"), 400, "model"),
        ("/dashboard/api/timeline?model=no-such-model", 404, ""),
        ("/dashboard/api/timeline?since=2026-12-02&until=2026-12-01", 400, "until"),
        ("/dashboard/api/timeline?since=0001-01-01", 400, "since"),
        ("/dashboard/api/timeline?since=1990-01-01&until=2026-01-01", 400, "since"),
        ("/dashboard/api/timeline?since=yesterday", 400, "since"),
        ("/dashboard/api/timeline?until=" + quote("2026-12-01\x7f"), 400, "until"),
        ("/dashboard/api/timeline?page_token=not-a-token", 400, "page_token"),
        ("/dashboard/api/timeline?page_token=" + "A" * 5000, 400, "page_token"),
        ("/dashboard/api/timeline?page_token=eyJ1cyI6LTEsImxlYWYiOjB9", 400, "page_token"),
        ("/dashboard/api/timeline?page_size=0", 400, "page_size"),
        ("/dashboard/api/timeline?page_size=100000", 400, "page_size"),
        ("/dashboard/api/timeline?page_size=2&page_size=3", 400, "page_size"),
        ("/dashboard/records/not-a-uuid/proof.json", 400, "record_id"),
        ("/dashboard/records/0190c1a2-0000-7000-8000-000000000000/proof.json", 404, ""),
    ],
)
def test_bad_input_is_refused_naming_the_parameter(
    dashboard_stack: Governed, path: str, status: int, field: str
) -> None:
    got, doc = get_json(dashboard_stack.base + path)
    assert got == status, doc
    assert doc["error"]["status"] == status
    assert doc["error"]["field"] == field
    assert doc["error"]["message"]


def test_bad_input_on_the_pages(dashboard_stack: Governed) -> None:
    status, _, text = get(f"{dashboard_stack.base}/dashboard?page_token=%00", accept="text/html")
    assert status == 400
    assert "page_token" in text
    status, _, _ = get(f"{dashboard_stack.base}/dashboard/records/not-a-uuid", accept="text/html")
    assert status == 400


def test_the_integrity_check_proves_each_new_checkpoint_extends_the_last(
    dashboard_stack: Governed,
) -> None:
    status, first = get_json(f"{dashboard_stack.base}/dashboard/api/integrity")
    assert status == 200
    assert first["ok"] is True
    assert first["signature"].startswith("signed by ")
    assert first["verify_command"] == "mrmctl ledger verify"
    with LedgerClient(dashboard_stack.stack.addr) as led:
        led.append([new_record("GAP", {"dropped": 1, "reason": "test", "model_name": "x"})])
        cp = led.checkpoint(refresh=True)
    status, second = get_json(f"{dashboard_stack.base}/dashboard/api/integrity")
    assert second["ok"] is True
    assert second["tree_size"] == cp.tree_size > first["tree_size"]
    assert second["consistency"].startswith("proven to extend the checkpoint")


def test_only_auditors_and_admins_see_it(dashboard_stack: Governed) -> None:
    url = f"{dashboard_stack.base}/dashboard"
    status, headers, _ = get(url, token=None, accept="text/html")
    assert status == 303
    assert headers["Location"].startswith("/login?next=")
    status, _, _ = get(f"{dashboard_stack.base}/dashboard/api/models", token=None)
    assert status == 401
    for token in (dashboard_stack.deployer, dashboard_stack.proxy):
        status, _, text = get(url, token=token, accept="text/html")
        assert status == 403
        assert "may not" in text
        status, _, _ = get(f"{dashboard_stack.base}/dashboard/api/timeline", token=token)
        assert status == 403
    _, _, text = get(url, token=dashboard_stack.deployer, accept="text/html")
    assert "deployer-dan (token; deployer) may not view the dashboard" in text
    status, headers, html = get(url, token=dashboard_stack.auditor, accept="text/html")
    assert status == 200
    assert "default-src 'none'" in headers["Content-Security-Policy"]
    assert not re.search(r"<(script|link|img|iframe)\b", html)
    assert not re.search(r"(src|href)=\"(?![/#])", html)  # every link stays on this server
    status, headers, _ = get(
        f"{dashboard_stack.base}/", token=dashboard_stack.auditor, accept="text/html"
    )
    assert status == 302
    assert headers["Location"] == "/dashboard"


def test_counts_are_capped_not_scanned(
    dashboard_stack: Governed, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A page load reads at most COUNT_CAP PREDICTION records per figure and says so
    ("N+"); the stack runs in this process, so a small cap shows it applies."""
    monkeypatch.setattr("mrm.dashboard.figures.COUNT_CAP", 2)
    status, doc = get_json(f"{dashboard_stack.base}/dashboard/api/models/credit-risk")
    assert status == 200
    traffic = doc["traffic"]
    assert (traffic["last_24h"], traffic["capped_24h"]) == (2, True)
    assert (traffic["total"], traffic["capped_total"]) == (2, True)
    _, _, html = get(f"{dashboard_stack.base}/dashboard", accept="text/html")
    assert "<strong>2+</strong> in the last 24 h" in html
