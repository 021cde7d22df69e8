"""The report rendered by a real headless Chromium (Debian's `chromium`, installed
by `make test`): the test reads the page's rendered text through the DevTools
protocol (`document.body.innerText`), not the HTML source."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from mrm.client.explain import ExplainClient, main_factors
from tests.conftest import RunningLedger
from tests.support.auth import TEST_TOKEN
from tests.support.browser import CHROMIUM, Browser
from tests.support.decisions import decide, deploy_explained
from tests.support.drift import record_drift


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if not os.path.exists(CHROMIUM):
        pytest.fail("chromium is not installed: `make test` installs Debian's chromium package")
    with tempfile.TemporaryDirectory() as profile:
        b = Browser(Path(profile))
        yield b
        b.close()


def test_the_report_renders_in_chromium(
    browser: Browser, running_stack: RunningLedger, tmp_path: Path
) -> None:
    model, X, _ = deploy_explained(running_stack, tmp_path / "project")
    rejected = X[model.predict(X) == 1].iloc[:1].to_numpy()
    (decision,) = decide(running_stack, "credit-risk", rejected, "applicant-7")
    with ExplainClient(running_stack.explain_addr) as ex:
        exp = ex.explain_record(decision)
    seen = browser.render(
        f"http://{running_stack.http_addr}{exp.report_path}",
        {
            "text": "document.body.innerText",
            "title": "document.title",
            "chart_width": "document.querySelector('svg').getBoundingClientRect().width",
            "bars": "document.querySelectorAll('svg rect').length",
            "bar_widths": "[...document.querySelectorAll('svg rect')]"
            ".map(r => r.getBoundingClientRect().width)",
            "resources": "performance.getEntriesByType('resource').length",
            "decision_box": "document.getElementById('decision').getBoundingClientRect().height",
            "cookie_js": "document.cookie",
        },
        token=TEST_TOKEN,
    )
    # A browser without a session is sent to the sign-in page first; after it the
    # session cookie is HttpOnly (scripts on the page cannot read it).
    assert "Sign in to MRM" in seen["login_text"]
    assert seen["cookie_js"] == ""
    text = seen["text"]
    assert "Rejected by credit-risk 1.2.4 on" in text
    assert "(probability of default" in text
    assert "Main factors:" in text
    top = main_factors(exp, 1)[0].feature
    assert f"Main factors: {top} = " in text
    for feature in X.columns:
        assert feature in text
    assert "Compared with the model's global baseline" in text
    assert "Metrics at deploy time" in text
    assert "registered by\ttest-suite verified (token tok_" in text
    assert TEST_TOKEN not in text
    assert "accuracy" in text
    assert exp.trace_id in text
    assert "Signed checkpoint" in text
    assert "REPRODUCIBILITY FAILURE" not in text  # the re-run matched
    assert seen["title"].startswith(f"Decision {decision}")
    assert seen["chart_width"] > 300
    assert seen["bars"] == len(X.columns)
    assert all(w >= 1 for w in seen["bar_widths"])
    assert seen["resources"] == 0  # nothing fetched besides the page itself
    assert seen["decision_box"] > 0


def test_drift_renders_in_chromium_and_fetches_nothing(
    browser: Browser, running_stack: RunningLedger, tmp_path: Path
) -> None:
    model, X, _ = deploy_explained(running_stack, tmp_path / "project")
    drift = record_drift(running_stack, X)
    rejected = X[model.predict(X) == 1].iloc[:1].to_numpy()
    (decision,) = decide(running_stack, "credit-risk", rejected, "applicant-8")
    with ExplainClient(running_stack.explain_addr) as ex:
        exp = ex.explain_record(decision)
    charts = {
        "charts": "document.querySelectorAll('svg.distribution').length",
        "chart_sizes": "[...document.querySelectorAll('svg.distribution')]"
        ".map(s => [s.getBoundingClientRect().width, s.getBoundingClientRect().height])",
        "chart_titles": "[...document.querySelectorAll('svg.distribution > title')]"
        ".map(t => t.textContent)",
        "current_heights": "[...document.querySelectorAll('svg.distribution rect.current')]"
        ".map(r => r.getBoundingClientRect().height)",
        "resources": "performance.getEntriesByType('resource').length",
        "text": "document.body.innerText",
    }
    for url in (
        f"http://{running_stack.http_addr}{exp.report_path}",
        f"http://{running_stack.http_addr}/reports/drift/credit-risk?version=1.2.4",
    ):
        seen = browser.render(url, charts, token=TEST_TOKEN)
        assert seen["resources"] == 0  # no font, style, image or script fetched
        assert seen["charts"] == 3
        assert all(w > 300 and h > 200 for w, h in seen["chart_sizes"])
        assert [t.split(":")[0] for t in seen["chart_titles"]] == [
            f"Distribution of {f}" for f in drift.top
        ]
        assert max(seen["current_heights"]) > 50  # the shifted bins stand out
        assert drift.record_id in seen["text"]
        assert f"leaf {drift.leaf_index}," in seen["text"]
        assert "Prediction drift" in seen["text"]
