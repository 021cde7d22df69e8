"""HTTP for the report tests: a GET that answers errors instead of raising them."""

from __future__ import annotations

import urllib.error
import urllib.request

from tests.support.auth import TEST_TOKEN


def get(url: str, token: str | None = TEST_TOKEN) -> tuple[int, dict[str, str], str]:
    """GET `url` as `token` (the suite's by default): status, headers and body, errors too."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    try:
        with urllib.request.urlopen(
            urllib.request.Request(url, headers=headers), timeout=60
        ) as resp:
            return resp.status, dict(resp.headers), resp.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read().decode()
