"""The governance dashboard in a real headless Chromium (Debian's `chromium`), driven
over the DevTools protocol: signed in through the form as a person would, it shows
each section, every link on it resolves, nothing is fetched from another host, and
screenshots are kept as test artifacts (and the page's at /tmp/dashboard.png)."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import pytest

from tests.support.browser import CHROMIUM, Browser
from tests.support.dashboard import Governed, governed


class Page:
    """One DevTools page session that keeps every network event it sees."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws
        self.ids = iter(range(1, 1_000_000))
        self.waiting: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self.requests: list[str] = []
        self.responses: dict[str, int] = {}
        self.reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        async for msg in self.ws:
            data = json.loads(msg.data)
            if "id" in data and data["id"] in self.waiting:
                self.waiting.pop(data["id"]).set_result(data)
            elif data.get("method") == "Network.requestWillBeSent":
                self.requests.append(data["params"]["request"]["url"])
            elif data.get("method") == "Network.responseReceived":
                response = data["params"]["response"]
                self.responses[response["url"]] = response["status"]

    async def call(self, method: str, **params: Any) -> dict[str, Any]:
        n = next(self.ids)
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self.waiting[n] = future
        await self.ws.send_str(json.dumps({"id": n, "method": method, "params": params}))
        data = await asyncio.wait_for(future, 120)
        assert "error" not in data, data
        return dict(data["result"])

    async def value(self, expression: str) -> Any:
        got = await self.call("Runtime.evaluate", expression=expression, returnByValue=True)
        return got["result"].get("value")

    async def goto(self, url: str) -> None:
        """Navigate and wait until the document has loaded (and any redirect settled)."""
        await self.call("Page.navigate", url=url)
        for _ in range(1200):
            await asyncio.sleep(0.05)
            if await self.value("document.readyState") == "complete" and (
                await self.value("location.href") != "about:blank"
            ):
                return
        raise AssertionError(f"{url} never finished loading")

    async def screenshot(self, path: Path) -> None:
        await self.call(
            "Emulation.setDeviceMetricsOverride",
            width=1280,
            height=900,
            deviceScaleFactor=1,
            mobile=False,
        )
        height = await self.value("document.documentElement.scrollHeight")
        await self.call(
            "Emulation.setDeviceMetricsOverride",
            width=1280,
            height=min(int(height), 6000),
            deviceScaleFactor=1,
            mobile=False,
        )
        shot = await self.call("Page.captureScreenshot", format="png")
        path.write_bytes(base64.b64decode(shot["data"]))
        await self.call(
            "Emulation.setDeviceMetricsOverride",
            width=1280,
            height=900,
            deviceScaleFactor=1,
            mobile=False,
        )


@pytest.fixture(scope="module")
def dashboard_stack(
    tmp_path_factory: pytest.TempPathFactory, postgres_server: str
) -> Iterator[Governed]:
    with governed(tmp_path_factory.mktemp("dashboard-browser")) as state:
        yield state


@pytest.fixture
def browser() -> Iterator[Browser]:
    if not os.path.exists(CHROMIUM):
        pytest.fail("chromium is not installed: `make test` installs Debian's chromium package")
    with tempfile.TemporaryDirectory() as profile:
        b = Browser(Path(profile))
        yield b
        b.close()


SECTIONS = {
    "summary": "1 model in production; 1 needs attention",
    "inventory": "Which models we run",
    "live": "How each model is doing",
    "fairness": "Fairness",
    "integrity": "Can the record be trusted?",
    "timeline": "What happened",
}


async def _visit(port: int, dashboard_stack: Governed, token: str, shots: Path) -> dict[str, Any]:
    async with aiohttp.ClientSession() as http:
        async with http.get(f"http://127.0.0.1:{port}/json/list") as resp:
            targets = await resp.json(content_type=None)
        target = next(t for t in targets if t["type"] == "page")
        async with http.ws_connect(target["webSocketDebuggerUrl"], max_msg_size=0) as ws:
            page = Page(ws)
            try:
                await page.call("Network.enable")
                await page.call("Page.enable")
                await page.goto(f"{dashboard_stack.base}/dashboard")
                seen: dict[str, Any] = {"first_path": await page.value("location.pathname")}
                await page.value(
                    f"document.getElementById('token').value = {json.dumps(token)};"
                    "document.querySelector('form').submit()"
                )
                for _ in range(1200):
                    await asyncio.sleep(0.05)
                    if await page.value("location.pathname") == "/dashboard" and (
                        await page.value("document.readyState") == "complete"
                    ):
                        break
                seen["text"] = await page.value("document.body.innerText")
                seen["sections"] = {
                    key: await page.value(
                        f"(document.getElementById({json.dumps(key)}) || {{}}).innerText || ''"
                    )
                    for key in SECTIONS
                }
                seen["svgs"] = await page.value("document.querySelectorAll('svg').length")
                seen["links"] = await page.value("[...document.links].map(a => a.href)")
                await page.screenshot(shots / "dashboard.png")
                statuses = {}
                for link in dict.fromkeys(u.split("#")[0] for u in seen["links"]):
                    await page.goto(link)
                    statuses[link] = page.responses.get(link)
                    if "/dashboard/records/" in link and "proof.json" not in link:
                        seen.setdefault("record_text", await page.value("document.body.innerText"))
                        if not (shots / "record.png").exists():
                            await page.screenshot(shots / "record.png")
                seen["statuses"] = statuses
                seen["requests"] = list(page.requests)
            finally:
                page.reader.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await page.reader
            return seen


def test_the_dashboard_in_chromium(
    browser: Browser, dashboard_stack: Governed, tmp_path: Path
) -> None:
    shots = tmp_path / "screenshots"
    shots.mkdir()
    seen = asyncio.run(_visit(browser.port, dashboard_stack, dashboard_stack.auditor, shots))

    assert seen["first_path"] == "/login"  # no session yet: the sign-in page first
    for key, heading in SECTIONS.items():
        assert heading in seen["sections"][key], key
    text = seen["text"]
    assert "credit-risk" in text
    assert "quiet-model" in text
    assert "not assessed" in text  # quiet-model has no fairness snapshot
    assert "selection-rate ratio 0.72" in seen["sections"]["fairness"]
    assert "mrmctl ledger verify" in text
    assert "refused" in text
    assert seen["svgs"] >= 1  # the traffic light and the metric bars are inline SVG

    links = [u.split("#")[0] for u in seen["links"]]
    records = {u for u in links if "/dashboard/records/" in u and not u.endswith("proof.json")}
    ids = (
        dashboard_stack.drift_id,
        dashboard_stack.outcomes_id,
        dashboard_stack.firing_id,
        dashboard_stack.gap_id,
        dashboard_stack.refusal_id,
        dashboard_stack.fairness_id,
    )
    for record_id in ids:
        assert f"{dashboard_stack.base}/dashboard/records/{record_id}" in records
    bad = {url: status for url, status in seen["statuses"].items() if status != 200}
    assert bad == {}
    assert "This record is in the ledger, unaltered." in seen["record_text"]

    here = urlsplit(dashboard_stack.base).netloc
    elsewhere = [
        u
        for u in seen["requests"]
        if urlsplit(u).scheme not in ("data",) and urlsplit(u).netloc != here
    ]
    assert elsewhere == []

    for name in ("dashboard.png", "record.png"):
        assert (shots / name).stat().st_size > 10_000
    shutil.copy(shots / "dashboard.png", "/tmp/dashboard.png")
    shutil.copy(shots / "record.png", "/tmp/dashboard-record.png")
