"""A real headless Chromium (Debian's `chromium`, installed by `make test`) driven
over the DevTools protocol, for the report and dashboard tests: they read the
rendered page (`document.body.innerText`), not the HTML source."""

from __future__ import annotations

import asyncio
import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import aiohttp

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
