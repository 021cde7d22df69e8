"""The report rendered by a real headless Chromium (Debian's `chromium`, installed
by `make test`): the test reads the page's rendered text through the DevTools
protocol (`document.body.innerText`), not the HTML source."""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from mrm.client.explain import ExplainClient, main_factors
from tests.conftest import RunningLedger
from tests.support.auth import TEST_TOKEN
from tests.support.decisions import decide, deploy_explained
from tests.support.drift import record_drift

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"


class Browser:
    """A headless Chromium driven over the DevTools protocol (one page)."""

    def __init__(self, profile: Path) -> None:
        self.proc = subprocess.Popen(
            [
                CHROMIUM,
                "--headless",
                "--no-sandbox",  # we run as root in CI
                "--disable-gpu",
                "--disable-dev-shm-usage",
                "--no-first-run",
                "--remote-debugging-port=0",
                f"--user-data-dir={profile}",
                "about:blank",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            match = re.search(r"DevTools listening on (ws://\S+)", line)
            if match:
                self.port = int(match[1].split(":")[2].split("/")[0])
                break
        else:
            raise RuntimeError("chromium did not start its DevTools endpoint")

    def close(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        assert self.proc.stderr is not None
        self.proc.stderr.close()

    def render(
        self, url: str, expressions: dict[str, str], token: str | None = None
    ) -> dict[str, Any]:
        """Open `url`; sent to the sign-in page, type `token` into its form as a person
        would, and come back. `login_text` is what the sign-in page said ("" if none)."""
        return asyncio.run(self._render(url, expressions, token))

    async def _render(
        self, url: str, expressions: dict[str, str], token: str | None
    ) -> dict[str, Any]:
        async with aiohttp.ClientSession() as http:
            async with http.get(f"http://127.0.0.1:{self.port}/json/list") as resp:
                targets = await resp.json(content_type=None)
            page = next(t for t in targets if t["type"] == "page")
            async with http.ws_connect(page["webSocketDebuggerUrl"], max_msg_size=0) as ws:
                ids = iter(range(1, 1_000_000))

                async def call(method: str, **params: Any) -> dict[str, Any]:
                    n = next(ids)
                    await ws.send_str(json.dumps({"id": n, "method": method, "params": params}))
                    async for msg in ws:
                        data = json.loads(msg.data)
                        if data.get("id") == n:
                            assert "error" not in data, data
                            return dict(data["result"])
                    raise RuntimeError("DevTools connection closed")

                async def value(expression: str) -> Any:
                    got = await call("Runtime.evaluate", expression=expression, returnByValue=True)
                    return got["result"].get("value")

                async def settle(done: Any) -> None:
                    for _ in range(600):
                        if await value("document.readyState") == "complete" and await done():
                            return
                        await asyncio.sleep(0.05)

                async def arrived() -> bool:
                    return await value("location.href") in (url,) or (
                        await value("location.pathname") == "/login"
                    )

                await call("Page.navigate", url=url)
                await settle(arrived)
                login_text = ""
                if await value("location.pathname") == "/login" and token is not None:
                    login_text = await value("document.body.innerText")
                    await value(
                        f"document.getElementById('token').value = {json.dumps(token)};"
                        "document.querySelector('form').submit()"
                    )

                    async def back() -> bool:
                        return bool(await value("location.href") == url)

                    await settle(back)
                seen = {name: await value(expr) for name, expr in expressions.items()}
                return seen | {"login_text": login_text}


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
