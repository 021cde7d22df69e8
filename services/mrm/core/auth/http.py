"""The HTTP side of authentication (aiohttp): the same credentials as gRPC, and a
browser sign-in.

A script sends `Authorization: Bearer <token>`, as to the gRPC servers. A
browser has no way to add that header to a link, so a page asked for without
credentials redirects to `/login`, where the user pastes their MRM token once;
the server checks it and sets a session cookie (HttpOnly, SameSite=Strict,
Secure over TLS) that holds no token: only the principal, the token's public id
and an expiry, signed with the server's session key. Every request re-checks
that the token is still live, so a revocation ends its browser sessions too.
With mTLS, a browser's client certificate is enough.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import html
import json
import logging
import time
from collections.abc import Awaitable, Callable, Collection
from dataclasses import dataclass
from urllib.parse import quote, urlsplit

from aiohttp import web
from aiohttp.typedefs import Middleware

from mrm.core.auth.authenticator import Authenticator
from mrm.core.auth.interceptor import _CALLER
from mrm.core.auth.principal import ANONYMOUS, Method, Principal, Role
from mrm.core.auth.tls import der_to_pem
from mrm.core.errors import PermissionDenied, Unauthenticated

log = logging.getLogger(__name__)

COOKIE = "mrm_session"
_PAGE_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",  # a form post then carries its Origin (checked)
    "Cache-Control": "no-store",
}
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@dataclass
class Sessions:
    """Signed, expiring browser sessions (the cookie's value, never a token)."""

    key: bytes
    hours: float
    authenticator: Authenticator

    def issue(self, who: Principal) -> str:
        expires = int(time.time() + self.hours * 3600)
        if who.expires_at_us:
            expires = min(expires, who.expires_at_us // 1_000_000)
        doc = {
            "p": who.name,
            "r": sorted(who.roles),
            "m": list(who.models),
            "t": who.token_id,
            "k": who.method.value,
            "x": expires,
        }
        payload = _b64(json.dumps(doc, separators=(",", ":")).encode())
        return payload + "." + _b64(hmac.new(self.key, payload.encode(), hashlib.sha256).digest())

    def check(self, value: str) -> Principal | None:
        payload, _, sig = value.partition(".")
        want = hmac.new(self.key, payload.encode(), hashlib.sha256).digest()
        try:
            if not hmac.compare_digest(_unb64(sig), want):
                return None
            doc = json.loads(_unb64(payload))
            who = Principal(
                doc["p"],
                frozenset(Role(r) for r in doc["r"]),
                Method(doc["k"]),
                models=tuple(doc["m"]),
                token_id=doc["t"],
                expires_at_us=int(doc["x"]) * 1_000_000,
            )
        except (ValueError, KeyError, TypeError):
            return None
        if doc["x"] < time.time():
            return None
        tokens = self.authenticator.tokens
        if who.token_id and (tokens is None or not tokens.live(who.token_id)):
            return None  # revoked or expired since the sign-in
        return who


def _peer_cert(request: web.Request) -> bytes | None:
    ssl_object = request.transport.get_extra_info("ssl_object") if request.transport else None
    der = ssl_object.getpeercert(binary_form=True) if ssl_object is not None else None
    return der_to_pem(der) if der else None


def _safe_next(value: str) -> str:
    """Only a path on this server: never an open redirect."""
    parts = urlsplit(value)
    if (
        parts.scheme
        or parts.netloc
        or not value.startswith("/")
        or value.startswith("//")
        or "\\" in value  # browsers read "/\\host" as "//host"
    ):
        return "/"
    return value


def _login_page(next_url: str, error: str = "", status: int = 200) -> web.Response:
    message = f'<p class="error">{html.escape(error)}</p>' if error else ""
    body = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>MRM: sign in</title>
<style>body{{font:16px system-ui,sans-serif;max-width:34rem;margin:4rem auto;padding:0 1rem}}
input{{width:100%;font:inherit;padding:.4rem;margin:.4rem 0 1rem;box-sizing:border-box}}
button{{font:inherit;padding:.4rem 1.2rem}}.error{{color:#b00020}}</style></head>
<body><h1>Sign in to MRM</h1>{message}
<p>Paste your MRM token. On the machine that runs <code>mrm up</code> it is in
<code>.mrm/admin.token</code>; an admin issues others with <code>mrm auth issue</code>.</p>
<form method="post" action="/login">
<input type="hidden" name="next" value="{html.escape(next_url)}">
<label for="token">Token</label>
<input id="token" name="token" type="password" autocomplete="off" required>
<button type="submit">Sign in</button></form></body></html>
"""
    return web.Response(text=body, content_type="text/html", status=status, headers=_PAGE_HEADERS)


def auth_routes(app: web.Application, sessions: Sessions, *, secure_cookie: bool) -> None:
    """GET and POST /login, POST /logout."""

    async def login_form(request: web.Request) -> web.Response:
        return _login_page(_safe_next(request.query.get("next", "/")))

    async def login(request: web.Request) -> web.Response:
        origin = request.headers.get("Origin")
        if origin and urlsplit(origin).netloc != request.host:
            return web.Response(status=403, text="cross-site sign-in refused\n")
        form = await request.post()
        next_url = _safe_next(str(form.get("next", "/")))
        token = str(form.get("token", "")).strip()
        try:
            who = sessions.authenticator.authenticate(f"Bearer {token}", None)
        except (Unauthenticated, PermissionDenied) as e:
            return _login_page(next_url, e.message, status=401)
        response = web.HTTPSeeOther(next_url)
        response.set_cookie(
            COOKIE,
            sessions.issue(who),
            max_age=int(sessions.hours * 3600),
            httponly=True,
            samesite="Strict",
            secure=secure_cookie,
            path="/",
        )
        log.info("browser session started for %s", who.name)
        raise response

    async def logout(request: web.Request) -> web.Response:
        response = web.HTTPSeeOther("/login")
        response.del_cookie(COOKIE, path="/")
        raise response

    app.router.add_get("/login", login_form)
    app.router.add_post("/login", login)
    app.router.add_post("/logout", logout)


def auth_middleware(
    sessions: Sessions, *, public: Collection[str], roles: frozenset[Role]
) -> Middleware:
    """Every path but `public` needs a principal holding one of `roles`."""
    authenticator = sessions.authenticator

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path in public:
            return await handler(request)
        try:
            who = _principal(request)
        except Unauthenticated as e:
            if "text/html" in request.headers.get("Accept", "") and request.method == "GET":
                raise web.HTTPSeeOther(f"/login?next={quote(request.path_qs)}") from None
            return web.Response(
                status=401,
                text=f"{e.message}\n",
                headers={"WWW-Authenticate": 'Bearer realm="mrm"', **_PAGE_HEADERS},
            )
        except PermissionDenied as e:
            return web.Response(status=403, text=f"{e.message}\n", headers=_PAGE_HEADERS)
        if not who.has(*roles):
            return web.Response(
                status=403,
                text=f"{who.describe()} may not read this: it needs one of the roles "
                f"{', '.join(sorted(roles))}\n",
                headers=_PAGE_HEADERS,
            )
        token = _CALLER.set(who)
        try:
            return await handler(request)
        finally:
            _CALLER.reset(token)

    def _principal(request: web.Request) -> Principal:
        if not authenticator.enabled:
            return ANONYMOUS
        authorization = request.headers.get("Authorization")
        if authorization:
            return authenticator.authenticate(authorization, None)
        cookie = request.cookies.get(COOKIE)
        if cookie:
            who = sessions.check(cookie)
            if who is not None:
                return who
        return authenticator.authenticate(None, _peer_cert(request))

    return middleware
