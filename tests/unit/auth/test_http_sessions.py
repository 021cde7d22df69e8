"""Browser sign-in on the HTTP pages: safe redirects, signed sessions, revocation."""

from __future__ import annotations

import base64
import json
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from mrm.core.auth import tokens
from mrm.core.auth.authenticator import Authenticator
from mrm.core.auth.http import COOKIE, Sessions, _safe_next, auth_middleware, auth_routes
from mrm.core.auth.interceptor import caller
from mrm.core.auth.oidc import OidcVerifier
from mrm.core.auth.principal import Method, Principal, Role

KEY = b"k" * 32
T0 = 1_900_000_000.0


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> float:
        return self.now


@dataclass
class Site:
    path: Path
    clock: Clock
    sessions: Sessions
    token: str

    def revoke(self) -> None:
        with tokens.editing(self.path) as entries:
            tokens.revoke(entries, "ops@example.com", revoked_by="sec")
        self.clock.now += 2  # past the store's once-a-second re-read


def _issue(path: Path, principal: str, role: str, expires_at_us: int = 0) -> str:
    with tokens.editing(path) as entries:
        token, _ = tokens.issue(
            entries, principal, (role,), issued_by="admin", expires_at_us=expires_at_us
        )
    return token


@pytest.fixture
def site(tmp_path: Path) -> Site:
    path = tmp_path / "tokens.json"
    token = _issue(path, "ops@example.com", "auditor")
    clock = Clock()
    store = tokens.TokenStore(path, clock=clock)
    sessions = Sessions(KEY, 8.0, Authenticator(store, OidcVerifier(())))
    return Site(path, clock, sessions, token)


def _cookie(site: Site) -> str:
    return site.sessions.issue(
        site.sessions.authenticator.authenticate(f"Bearer {site.token}", None)
    )


@asynccontextmanager
async def _client(site: Site) -> AsyncIterator[TestClient[web.Request, web.Application]]:
    async def report(request: web.Request) -> web.Response:
        return web.Response(text=f"report for {caller().name}")

    async def healthz(request: web.Request) -> web.Response:
        return web.Response(text="ok")

    app = web.Application(
        middlewares=[
            auth_middleware(
                site.sessions,
                public={"/healthz", "/login", "/logout"},
                roles=frozenset({Role.AUDITOR, Role.ADMIN}),
            )
        ]
    )
    app.router.add_get("/report", report)
    app.router.add_get("/healthz", healthz)
    auth_routes(app, site.sessions, secure_cookie=False)
    async with TestClient(TestServer(app)) as client:
        yield client


HTML = {"Accept": "text/html"}


@pytest.mark.parametrize(
    "target",
    [
        "//evil.example/x",
        "http://evil.example/",
        "https://evil.example",
        "javascript:alert(1)",
        "JavaScript:alert(1)",
        "data:text/html,hi",
        "evil.example/x",
        "reports",
        "",
        " //evil.example",
        "/\t/evil.example",
    ],
    ids=repr,
)
def test_safe_next_refuses_anything_off_this_server(target: str) -> None:
    assert _safe_next(target) == "/"


@pytest.mark.parametrize("target", ["/", "/report", "/reports/abc?x=1&y=%2F", "/a//b"])
def test_safe_next_keeps_a_path_on_this_server(target: str) -> None:
    assert _safe_next(target) == target


def test_a_session_cookie_holds_no_token_and_is_accepted(site: Site) -> None:
    cookie = _cookie(site)
    assert site.token not in cookie
    who = site.sessions.check(cookie)
    assert who is not None
    assert (who.name, who.roles, who.method) == (
        "ops@example.com",
        frozenset({Role.AUDITOR}),
        Method.TOKEN,
    )


def test_a_tampered_session_cookie_is_refused(site: Site) -> None:
    cookie = _cookie(site)
    payload, sig = cookie.split(".")
    doc = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    doc["r"] = ["admin"]
    forged = base64.urlsafe_b64encode(json.dumps(doc).encode()).rstrip(b"=").decode()
    assert site.sessions.check(f"{forged}.{sig}") is None
    assert site.sessions.check(f"{payload}.{sig[:-4]}AAAA") is None
    assert site.sessions.check(payload) is None
    assert site.sessions.check("") is None
    assert site.sessions.check("garbage.garbage!") is None


def test_a_session_signed_with_another_key_is_refused(site: Site) -> None:
    other = Sessions(b"o" * 32, 8.0, site.sessions.authenticator)
    assert other.check(_cookie(site)) is None


def test_an_expired_session_cookie_is_refused(site: Site) -> None:
    expired = Sessions(KEY, -1.0, site.sessions.authenticator)
    cookie = expired.issue(site.sessions.authenticator.authenticate(f"Bearer {site.token}", None))
    assert site.sessions.check(cookie) is None


def test_a_session_ends_no_later_than_its_token(site: Site) -> None:
    site.clock.now = time.time()  # the session's own expiry is on the wall clock
    soon_us = int((time.time() + 60) * 1e6)
    token = _issue(site.path, "brief@example.com", "auditor", expires_at_us=soon_us)
    who = site.sessions.authenticator.authenticate(f"Bearer {token}", None)
    checked = site.sessions.check(site.sessions.issue(who))
    assert checked is not None
    assert checked.expires_at_us == soon_us // 1_000_000 * 1_000_000


def test_a_session_of_a_token_revoked_later_stops_working(site: Site) -> None:
    cookie = _cookie(site)
    assert site.sessions.check(cookie) is not None
    site.revoke()
    assert site.sessions.check(cookie) is None


def test_a_session_of_a_token_that_expired_since_stops_working(site: Site) -> None:
    token = _issue(site.path, "brief@example.com", "auditor", expires_at_us=int((T0 + 60) * 1e6))
    # sessions use the wall clock for their own expiry, the store its clock for the token's
    who = Principal(
        "brief@example.com",
        frozenset({Role.AUDITOR}),
        Method.TOKEN,
        token_id=tokens.token_id(tokens.token_sha256(token)),
    )
    cookie = site.sessions.issue(who)
    assert site.sessions.check(cookie) is not None
    site.clock.now = T0 + 61
    assert site.sessions.check(cookie) is None


async def test_a_page_without_credentials_redirects_a_browser_to_sign_in(site: Site) -> None:
    async with _client(site) as client:
        resp = await client.get("/report?a=1", headers=HTML, allow_redirects=False)
        assert resp.status == 303
        location = urlsplit(resp.headers["Location"])
        assert location.path == "/login"
        assert parse_qs(location.query) == {"next": ["/report?a=1"]}


async def test_a_script_without_credentials_gets_401(site: Site) -> None:
    async with _client(site) as client:
        resp = await client.get("/report", allow_redirects=False)
        assert resp.status == 401
        assert resp.headers["WWW-Authenticate"] == 'Bearer realm="mrm"'


async def test_a_public_path_needs_no_credentials(site: Site) -> None:
    async with _client(site) as client:
        resp = await client.get("/healthz")
        assert (resp.status, await resp.text()) == (200, "ok")


async def test_a_bearer_token_reads_a_page(site: Site) -> None:
    async with _client(site) as client:
        resp = await client.get("/report", headers={"Authorization": f"Bearer {site.token}"})
        assert (resp.status, await resp.text()) == (200, "report for ops@example.com")


async def test_a_principal_without_a_reading_role_is_forbidden(site: Site) -> None:
    proxy = _issue(site.path, "proxy", "proxy")
    async with _client(site) as client:
        resp = await client.get("/report", headers={"Authorization": f"Bearer {proxy}"})
        assert resp.status == 403
        assert "needs one of the roles admin, auditor" in await resp.text()


async def test_signing_in_sets_a_strict_http_only_cookie_and_goes_to_next(site: Site) -> None:
    async with _client(site) as client:
        resp = await client.post(
            "/login", data={"token": site.token, "next": "/report"}, allow_redirects=False
        )
        assert resp.status == 303
        assert resp.headers["Location"] == "/report"
        set_cookie = resp.headers["Set-Cookie"]
        assert set_cookie.startswith(f"{COOKIE}=")
        assert "HttpOnly" in set_cookie
        assert "SameSite=Strict" in set_cookie
        assert site.token not in set_cookie
        page = await client.get("/report", headers=HTML)  # the jar sends the cookie
        assert await page.text() == "report for ops@example.com"


async def test_sign_in_never_redirects_off_the_server(site: Site) -> None:
    async with _client(site) as client:
        resp = await client.post(
            "/login", data={"token": site.token, "next": "//evil.example/"}, allow_redirects=False
        )
        assert resp.headers["Location"] == "/"
        form = await client.get("/login", params={"next": "https://evil.example/"})
        assert 'name="next" value="/"' in await form.text()


async def test_sign_in_with_a_backslash_next_stays_on_this_server(site: Site) -> None:
    # Browsers read "/\evil.example" as "//evil.example". _safe_next lets it through;
    # the redirect is safe only because aiohttp (yarl) percent-encodes the backslash.
    async with _client(site) as client:
        resp = await client.post(
            "/login", data={"token": site.token, "next": "/\\evil.example/"}, allow_redirects=False
        )
        location = resp.headers["Location"]
        assert location.startswith("/")
        assert not location.startswith(("//", "/\\"))


async def test_a_wrong_token_at_sign_in_is_401_with_the_reason_and_no_cookie(site: Site) -> None:
    wrong = tokens.new_token()
    async with _client(site) as client:
        resp = await client.post("/login", data={"token": wrong, "next": "/report"})
        text = await resp.text()
        assert resp.status == 401
        assert "not one this server issued" in text
        assert wrong not in text
        assert "Set-Cookie" not in resp.headers
        assert resp.headers["Content-Security-Policy"].startswith("default-src 'none'")


async def test_a_cross_site_sign_in_is_refused(site: Site) -> None:
    async with _client(site) as client:
        resp = await client.post(
            "/login",
            data={"token": site.token},
            headers={"Origin": "https://evil.example"},
            allow_redirects=False,
        )
        assert resp.status == 403
        assert "Set-Cookie" not in resp.headers


async def test_a_tampered_cookie_sends_the_browser_to_sign_in(site: Site) -> None:
    payload, sig = _cookie(site).split(".")
    async with _client(site) as client:
        resp = await client.get(
            "/report",
            headers={**HTML, "Cookie": f"{COOKIE}={payload}x.{sig}"},
            allow_redirects=False,
        )
        assert resp.status == 303
        assert resp.headers["Location"].startswith("/login?next=")


async def test_a_browser_session_ends_when_its_token_is_revoked(site: Site) -> None:
    cookie = {"Cookie": f"{COOKIE}={_cookie(site)}", **HTML}
    async with _client(site) as client:
        ok = await client.get("/report", headers=cookie, allow_redirects=False)
        assert ok.status == 200
        site.revoke()
        gone = await client.get("/report", headers=cookie, allow_redirects=False)
        assert gone.status == 303


async def test_signing_out_deletes_the_cookie(site: Site) -> None:
    async with _client(site) as client:
        resp = await client.post("/logout", allow_redirects=False)
        assert resp.status == 303
        assert resp.headers["Location"] == "/login"
        assert resp.headers["Set-Cookie"].startswith(f'{COOKIE}=""')
