"""A governed installation for the dashboard's tests: a real stack on PostgreSQL with
a deployed model, decisions through the proxy, a refused deploy, a DRIFT window of
shifted inputs, an outcomes window, alerts (one acknowledged), a GAP report and a
model that was never deployed."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mrm.client.ledger import LedgerClient, new_record
from mrm.client.registry import RegistryClient
from mrm.core.auth import tokens
from tests.conftest import RunningLedger, start_ledger
from tests.support import postgres
from tests.support.auth import TEST_TOKEN
from tests.support.decisions import decide, deploy_explained
from tests.support.drift import record_drift

HOSTILE = "<script>alert('x')</script>"


@dataclass
class Governed:
    stack: RunningLedger
    decisions: list[str]
    drift_id: str
    shifted: list[str]
    outcomes_id: str
    firing_id: str
    acked_id: str
    ack_id: str
    gap_id: str
    fairness_id: str
    refusal_id: str
    auditor: str
    deployer: str
    proxy: str

    @property
    def base(self) -> str:
        return f"http://{self.stack.http_addr}"


def _issue(stack: RunningLedger, principal: str, role: str) -> str:
    with tokens.editing(stack.settings.resolved_tokens_file()) as entries:
        token, _ = tokens.issue(entries, principal, (role,), issued_by="test-suite")
    return token


@contextmanager
def governed(tmp: Path) -> Iterator[Governed]:
    with postgres.fresh_database() as url:
        stack = start_ledger(tmp / "home", url)
        try:
            yield _populate(stack, tmp)
        finally:
            stack.stack.stop()


def _populate(stack: RunningLedger, tmp: Path) -> Governed:
    _, X, _ = deploy_explained(stack, tmp / "project")
    decisions = decide(stack, "credit-risk", X.iloc[:3].to_numpy(), "applicant-1")
    with RegistryClient(stack.registry_addr) as reg:
        reg.create_model("quiet-model", "registered, never deployed")
        refusal = reg.record_refusal(
            "credit-risk", "1.3.0", ["accuracy 0.61 < 0.80 " + HOSTILE], {}
        ).record_id
    drift = record_drift(stack, X)
    outcomes = new_record(
        "DRIFT",
        {
            "window": {
                "source": "outcomes",
                "first_leaf": 0,
                "last_leaf": 10,
                "first_recorded_at_us": 1_790_000_000_000_000,
                "last_recorded_at_us": 1_790_000_060_000_000,
                "rows": 200,
            },
            "metrics": {
                "live": {"accuracy": 0.74, "f1": 0.61},
                "deploy": {"accuracy": 0.83, "f1": 0.70},
            },
            "report": {},
            "thresholds": {},
        },
        model_name="credit-risk",
        model_version="1.2.4",
    )
    alerts = [
        new_record(
            "ALERT",
            {
                "state": "firing",
                "rule": "feature_drift",
                "metric": "psi",
                "feature": feature,
                "value": 2.0,
                "threshold": 0.2,
                "summary": f"{feature} drifted: PSI 2.0 > 0.2 {HOSTILE}",
                "drift_record_id": drift.record_id,
                "link": "",
            },
            model_name="credit-risk",
            model_version="1.2.4",
        )
        for feature in drift.shifted
    ]
    ack = new_record(
        "ALERT",
        {
            "state": "acknowledged",
            "alert_record_id": alerts[0].record_id,
            "note": "retraining scheduled",
            "by": "risk-officer",
        },
        model_name="credit-risk",
        model_version="1.2.4",
    )
    gap = new_record(
        "GAP",
        {"dropped": 3, "reason": "ledger_unavailable", "model_name": "credit-risk"},
        model_name="credit-risk",
    )
    fairness = new_record(
        "FAIRNESS_SNAPSHOT",
        {  # the shape mrm.deploy.fairness records at deploy
            "attributes": {
                "age_band": {"demographic_parity_ratio": 0.91, "equalized_odds_difference": 0.04},
                "sex": {"demographic_parity_ratio": 0.72, "equalized_odds_difference": 0.11},
            },
            "passed": False,
            "failures": ["sex: demographic parity ratio 0.7200 is below 0.8"],
        },
        model_name="credit-risk",
        model_version="1.2.4",
    )
    with LedgerClient(stack.addr) as led:
        led.append([fairness])
        led.append([outcomes, *alerts])
        led.append([ack, gap])
        led.checkpoint(refresh=True)  # as the ledger's timer would within seconds
    return Governed(
        stack=stack,
        decisions=decisions,
        drift_id=drift.record_id,
        shifted=drift.shifted,
        outcomes_id=outcomes.record_id,
        firing_id=alerts[1].record_id,
        acked_id=alerts[0].record_id,
        ack_id=ack.record_id,
        gap_id=gap.record_id,
        fairness_id=fairness.record_id,
        refusal_id=refusal,
        auditor=_issue(stack, "auditor-ann", "auditor"),
        deployer=_issue(stack, "deployer-dan", "deployer"),
        proxy=_issue(stack, "proxy-pat", "proxy"),
    )


def get(
    url: str, token: str | None = TEST_TOKEN, accept: str = "application/json"
) -> tuple[int, dict[str, str], str]:
    headers = {"Accept": accept}
    if token:
        headers["Authorization"] = f"Bearer {token}"

    class NoRedirect(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *_: Any) -> None:
            return None

    opener = urllib.request.build_opener(NoRedirect)
    try:
        with opener.open(urllib.request.Request(url, headers=headers), timeout=120) as resp:
            return resp.status, dict(resp.headers), resp.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read().decode()


def get_json(url: str, token: str | None = TEST_TOKEN) -> tuple[int, Any]:
    status, _, text = get(url, token)
    return status, json.loads(text)
