"""Drift in the reports: a decision's report shows the window the monitor evaluated
before it, and `/reports/drift/<model>` shows a model's windows and alerts.

The DRIFT record is the monitor's body built from real parts: the deployed version's
reference profile (the registry's artifact) compared by mrm.drift.compare with a
shifted window of its own evaluation data.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from mrm.client.explain import ExplainClient
from mrm.client.ledger import LedgerClient, new_record
from mrm.client.registry import RegistryClient
from tests.conftest import RunningLedger, start_ledger
from tests.support.decisions import decide, deploy_explained
from tests.support.drift import record_drift
from tests.support.http import get

HOSTILE = "<script>alert('x')</script>"
SVG = "{http://www.w3.org/2000/svg}"


@dataclass
class Drifted:
    stack: RunningLedger
    before: str
    """A decision made before the monitor recorded any window."""
    after: str
    """A decision made after the DRIFT record."""
    drift_id: str
    drift_leaf: int
    firing_id: str
    acked_id: str
    top: list[str]


@pytest.fixture(scope="module")
def drifted(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Drifted]:
    tmp = tmp_path_factory.mktemp("drift")
    stack = start_ledger(tmp / "home")
    try:
        model, X, _ = deploy_explained(stack, tmp / "project")
        rejected = X[model.predict(X) == 1].iloc[:1].to_numpy()
        (before,) = decide(stack, "credit-risk", rejected, "a-1")
        with RegistryClient(stack.registry_addr) as reg:
            reg.create_model("quiet-model", "registered, never served")
        drift = record_drift(stack, X)
        with LedgerClient(stack.addr) as led:
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
                        "summary": f"feature drift: {feature} psi 2 >= 0.2 {HOSTILE}",
                        "drift_record_id": drift.record_id,
                        "link": "",
                    },
                    model_name="credit-risk",
                    model_version="1.2.4",
                )
                for feature in drift.shifted
            ]
            led.append(alerts)
            ack = new_record(
                "ALERT",
                {
                    "state": "acknowledged",
                    "alert_record_id": alerts[1].record_id,
                    "note": "retrained " + HOSTILE,
                    "by": "risk-officer",
                },
                model_name="credit-risk",
                model_version="1.2.4",
            )
            led.append([ack])
        (after,) = decide(stack, "credit-risk", rejected, "a-2")
        yield Drifted(
            stack,
            before,
            after,
            drift.record_id,
            drift.leaf_index,
            alerts[0].record_id,
            alerts[1].record_id,
            drift.top,
        )
    finally:
        stack.stack.stop()


def report_of(d: Drifted, decision: str) -> str:
    with ExplainClient(d.stack.explain_addr) as ex:
        exp = ex.explain_record(decision)
    status, _, html = get(f"http://{d.stack.http_addr}{exp.report_path}")
    assert status == 200, html
    return html


def plots(html: str) -> list[ET.Element]:
    found = re.findall(
        r'<svg xmlns="http://www.w3.org/2000/svg" class="distribution".*?</svg>', html, re.S
    )
    return [ET.fromstring(svg) for svg in found]


def self_contained(html: str) -> None:
    # The one link a decision's report has is its trace (in the tracing UI, by design).
    html = re.sub(r"<p>Trace <code>[0-9a-f]+</code>: <a href=\"[^\"]*\">[^<]*</a></p>", "", html)
    assert not re.search(r"<(script|link|img|iframe|object|embed)\b", html)
    assert not re.search(r"\b(src|href)\s*=", html)
    assert "url(" not in html
    assert HOSTILE not in html


def test_a_decision_after_a_window_shows_its_drift(drifted: Drifted) -> None:
    html = report_of(drifted, drifted.after)
    self_contained(html)
    section = html.split('<h2 id="drift">', 1)[1].split("<h2>", 1)[0]
    text = re.sub(r"\s+", " ", section)
    # Where to find the window in the ledger.
    assert drifted.drift_id in text
    assert f"leaf {drifted.drift_leaf}," in text
    assert "decisions (" in text
    assert "leaves 0 to" in text
    # The table of features, most drifted first, with their statistics.
    assert "PSI" in text
    assert "JS" in text
    assert "KS" in text
    assert "Wasserstein" in text
    rows = re.findall(r"<tr><td>([^<]+)</td><td class=\"num\">", section)
    assert rows[:3] == drifted.top
    assert '<span class="bad">yes</span>' in section
    assert "Prediction drift" in text
    # Three charts, one per top feature, each well-formed and labelled.
    charts = plots(section)
    assert len(charts) == 3
    for chart, feature in zip(charts, drifted.top, strict=True):
        title = chart.find(f"{SVG}title")
        assert title is not None
        assert feature in (title.text or "")
        assert len([r for r in chart.iter(f"{SVG}rect") if r.get("class") == "current"]) >= 2
    # The firing alert of the version is listed; the acknowledged one is not.
    assert drifted.firing_id in section
    assert drifted.acked_id not in section
    assert "&lt;script&gt;" in section


def test_a_decision_before_any_window_says_so(drifted: Drifted) -> None:
    html = report_of(drifted, drifted.before)
    self_contained(html)
    section = re.sub(r"\s+", " ", html.split('<h2 id="drift">', 1)[1].split("<h2>", 1)[0])
    assert (
        "The monitor had not evaluated a window of credit-risk 1.2.4 before this decision."
        in section
    )
    # The later window is named, but not shown as this decision's drift.
    assert f"DRIFT record <code>{drifted.drift_id}</code> (leaf {drifted.drift_leaf}," in section
    assert not plots(section)
    assert "drift-features" not in section


def test_the_report_over_grpc_carries_the_same_section(drifted: Drifted) -> None:
    with ExplainClient(drifted.stack.explain_addr) as ex:
        html = ex.report(drifted.after).html
    assert drifted.drift_id in html
    assert len(plots(html)) == 3


def test_the_drift_page_of_a_model(drifted: Drifted) -> None:
    base = f"http://{drifted.stack.http_addr}/reports/drift/"
    status, headers, html = get(base + "credit-risk")
    assert status == 200, html
    assert headers["Content-Type"].startswith("text/html")
    assert "default-src 'none'" in headers["Content-Security-Policy"]
    self_contained(html)
    text = re.sub(r"\s+", " ", html)
    assert "<h1>Drift of credit-risk</h1>" in text
    assert "Latest window of credit-risk 1.2.4" in text
    assert drifted.drift_id in text
    assert len(plots(html)) == 3
    assert 'id="windows"' in html  # the recent windows
    # Both alerts, each with its state; the acknowledgement names who and why (escaped).
    alerts = html.split('<h2 id="alerts">', 1)[1].split("<h2", 1)[0]
    assert "1 firing." in re.sub(r"\s+", " ", alerts)
    firing = alerts.index(drifted.firing_id)
    acked = alerts.index(drifted.acked_id)
    assert firing < acked  # firing first
    assert '<span class="bad">firing</span>' in alerts[firing:acked]
    assert '<span class="ok">acknowledged</span>' in alerts[acked:]
    assert "by risk-officer" in alerts[acked:]
    assert "retrained &lt;script&gt;" in alerts


def test_the_drift_page_of_a_version(drifted: Drifted) -> None:
    base = f"http://{drifted.stack.http_addr}/reports/drift/credit-risk"
    status, _, html = get(base + "?version=1.2.4")
    assert status == 200
    assert "<h1>Drift of credit-risk 1.2.4</h1>" in html
    assert drifted.drift_id in html
    status, _, body = get(base + "?version=9.9.9")
    assert status == 404
    assert "model 'credit-risk' has no version 9.9.9" in body
    status, _, body = get(base + "?version=not-semver")
    assert status == 400
    assert "version" in body


def test_a_model_without_windows(drifted: Drifted) -> None:
    status, _, html = get(f"http://{drifted.stack.http_addr}/reports/drift/quiet-model")
    assert status == 200
    text = re.sub(r"\s+", " ", html)
    assert "The monitor has not evaluated a window for quiet-model yet." in text
    assert "The monitor has raised no alert for quiet-model." in text
    assert not plots(html)


@pytest.mark.parametrize(
    ("name", "status", "says"),
    [
        ("no-such-model", 404, "no model named 'no-such-model' is registered"),
        ("m" * 64, 400, "model: is 64 characters long (at most 63)"),
        ("credit%07risk", 400, "model: contains a non-printable character"),
        ("credit%00risk", 400, "model: contains a non-printable character"),
        ("Credit%3Cscript%3E", 400, "is not a model name"),
    ],
)
def test_drift_page_bad_input(drifted: Drifted, name: str, status: int, says: str) -> None:
    got, headers, body = get(f"http://{drifted.stack.http_addr}/reports/drift/{name}")
    assert got == status
    assert says in body
    assert headers["Content-Type"].startswith("text/plain")


def test_the_drift_page_needs_a_reader(drifted: Drifted, tmp_path: Path) -> None:
    url = f"http://{drifted.stack.http_addr}/reports/drift/credit-risk"
    status, headers, body = get(url, token=None)
    assert status == 401
    assert "Bearer" in headers["WWW-Authenticate"]
    assert drifted.drift_id not in body
    status, _, body = get(url, token="mrm_" + "x" * 40)
    assert status == 401
    assert drifted.drift_id not in body
