"""The reports over HTTP on MRM_HTTP_ADDR (aiohttp): `GET /reports/<record_id>`, a
decision's report, and `GET /reports/drift/<model>[?version=X.Y.Z]`, a model's drift.

The listening socket is bound when the server is created, so a port in use is
an error at start-up and the bound port is known before serving begins. Every
page but /healthz and the sign-in needs a principal of a role that may read
explanations (mrm.core.auth.http), over TLS when it is configured.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import ssl
from collections.abc import Callable

from aiohttp import web

from mrm.core.auth.http import Sessions, auth_middleware, auth_routes
from mrm.core.auth.policy import TABLE
from mrm.core.errors import (
    FailedPrecondition,
    InvalidArgument,
    MrmError,
    NotFound,
    Unavailable,
    parse_field,
)
from mrm.explain.drift import valid_model, valid_version
from mrm.explain.report import ReportRenderer
from mrm.kernel.ids import parse_record_id

log = logging.getLogger(__name__)

# The report needs nothing from outside the page: forbid everything else.
_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; img-src data:",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}
_STATUS: dict[type[MrmError], int] = {
    InvalidArgument: 400,
    NotFound: 404,
    FailedPrecondition: 409,
    Unavailable: 503,
}


def _text(status: int, message: str) -> web.Response:
    return web.Response(status=status, text=message + "\n", headers=_HEADERS)


_READERS = TABLE["/mrm.v1.ExplainService/GetReport"]  # who may read a report over gRPC


def report_app(
    reports: ReportRenderer,
    sessions: Sessions,
    *,
    secure_cookie: bool = False,
    mount: Callable[[web.Application], None] | None = None,
) -> web.Application:
    """The reports' routes; `mount` adds more behind the same sign-in (the dashboard)."""

    async def report(request: web.Request) -> web.Response:
        record_id = request.match_info["record_id"].removesuffix(".html")
        try:
            parse_field("record_id", parse_record_id, record_id)
            html, _ = await asyncio.to_thread(reports.render, record_id)
        except MrmError as e:
            return _text(_STATUS.get(type(e), 500), e.message)
        except Exception:
            log.exception("rendering the report of %s failed", record_id)
            return _text(500, "internal error")
        return web.Response(text=html, content_type="text/html", charset="utf-8", headers=_HEADERS)

    async def drift(request: web.Request) -> web.Response:
        # match_info is percent-decoded: a name of control characters arrives as such.
        name = request.match_info["model"]
        version = request.query.get("version", "")
        try:
            valid_model(name)
            if version:
                valid_version(version)
            html = await asyncio.to_thread(reports.render_drift, name, version)
        except MrmError as e:
            return _text(_STATUS.get(type(e), 500), e.message)
        except Exception:
            log.exception("rendering the drift page failed")
            return _text(500, "internal error")
        return web.Response(text=html, content_type="text/html", charset="utf-8", headers=_HEADERS)

    async def healthz(_: web.Request) -> web.Response:
        return _text(200, "ok")

    app = web.Application(
        middlewares=[
            auth_middleware(sessions, public={"/healthz", "/login", "/logout"}, roles=_READERS)
        ]
    )
    auth_routes(app, sessions, secure_cookie=secure_cookie)
    app.router.add_get("/reports/drift/{model}", drift)
    app.router.add_get("/reports/{record_id}", report)
    app.router.add_get("/healthz", healthz)
    if mount is not None:
        mount(app)
    return app


def bind(address: str) -> socket.socket:
    """A listening TCP socket on host:port (':port' means every interface)."""
    host, _, port = address.rpartition(":")
    host = host.strip("[]") or "::"
    try:
        infos = socket.getaddrinfo(
            host, int(port), type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )
    except (OSError, ValueError) as e:
        raise OSError(f"cannot listen on {address}: {e}") from None
    family, kind, proto, _, sockaddr = infos[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if family == socket.AF_INET6 and host == "::":
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        sock.bind(sockaddr)
        sock.listen(128)
        sock.setblocking(False)
    except OSError as e:
        sock.close()
        raise OSError(f"cannot listen on {address} (is the port in use?): {e}") from None
    return sock


class ReportServer:
    """The HTTP server of the reports, run as a background job of the Explain service."""

    def __init__(
        self,
        reports: ReportRenderer,
        address: str,
        sessions: Sessions,
        ssl_context: ssl.SSLContext | None = None,
        mount: Callable[[web.Application], None] | None = None,
    ) -> None:
        self.app = report_app(reports, sessions, secure_cookie=ssl_context is not None, mount=mount)
        self.ssl_context = ssl_context
        self.sock = bind(address)
        self.port: int = self.sock.getsockname()[1]

    @property
    def scheme(self) -> str:
        return "https" if self.ssl_context is not None else "http"

    async def run(self, stopping: asyncio.Event) -> None:
        # No access log: a sign-in's form and a URL's query are nobody's business.
        runner = web.AppRunner(self.app, access_log=None)
        await runner.setup()
        try:
            await web.SockSite(runner, self.sock, ssl_context=self.ssl_context).start()
            log.info("serving reports over HTTP on port %d", self.port)
            await stopping.wait()
        finally:
            await runner.cleanup()
            self.sock.close()

    def close(self) -> None:
        self.sock.close()
