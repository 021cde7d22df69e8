"""The dashboard's routes, mounted on the reports' HTTP server (mrm.explain.http).

    GET /                                      → /dashboard
    GET /dashboard[?page_token=…]              the page (timeline paged by the token)
    GET /dashboard/records/<record_id>         a record, its leaf and its verified proof
    GET /dashboard/records/<record_id>/proof.json   the proof file for `mrmctl ledger verify-proof`
    GET /dashboard/api/models                  every model's figures (JSON)
    GET /dashboard/api/models/<model>          one model's figures (JSON; 404 if unknown)
    GET /dashboard/api/timeline?since=&until=&model=&page_size=&page_token=
    GET /dashboard/api/integrity               the latest checkpoint, checked

Read-only, for the auditor and admin roles (the sign-in is the reports'). Bad
input answers 400 naming the parameter, as every RPC does; the JSON endpoints
answer errors as `{"error": {"status", "field", "message"}}`.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import jinja2
from aiohttp import web

from mrm.core.auth import Role, caller
from mrm.core.errors import InvalidArgument, MrmError, NotFound, Unavailable, parse_field
from mrm.dashboard.figures import Gatherer
from mrm.dashboard.integrity import CheckpointWatch, prove
from mrm.dashboard.sources import Sources
from mrm.dashboard.timeline import Cursor, page_size, time_range, timeline
from mrm.dashboard.views import summarize
from mrm.kernel.ids import parse_record_id
from mrm.kernel.names import MODEL_NAME

log = logging.getLogger(__name__)

VIEWERS = frozenset({Role.AUDITOR, Role.ADMIN})
"""Who may see the dashboard: it shows every model, so the auditor's view, not a
deployer's."""
_TEMPLATES = Path(__file__).parent / "templates"
_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'unsafe-inline'; img-src data:; "
        "form-action 'self'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}
_STATUS: dict[type[MrmError], int] = {InvalidArgument: 400, NotFound: 404, Unavailable: 503}
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def valid_model(name: str) -> str:
    if not name.isprintable():
        raise InvalidArgument("model", "contains a non-printable character")
    if len(name) > 63 or not MODEL_NAME.fullmatch(name):
        raise InvalidArgument(
            "model", f"{name[:64]!r} is not a model name (lowercase letters, digits and '-')"
        )
    return name


def _error_body(e: MrmError, status: int) -> dict[str, Any]:
    return {
        "error": {
            "status": status,
            "field": getattr(e, "field", ""),
            "message": e.message,
        }
    }


@dataclass
class Dashboard:
    """The dashboard's state: its sources and the checkpoint it saw last."""

    sources: Sources

    def __post_init__(self) -> None:
        self.gatherer = Gatherer(self.sources)
        self.watch = CheckpointWatch(self.sources)
        self.env = jinja2.Environment(
            loader=jinja2.FileSystemLoader(_TEMPLATES),
            autoescape=True,
            undefined=jinja2.StrictUndefined,
        )
        self.env.filters["num"] = _num

    def close(self) -> None:
        self.sources.close()

    def page(self, token: str) -> str:
        cursor = Cursor.parse(token) if token else None
        models = self.gatherer.models()
        integrity = self.watch.check()
        events = timeline(self.sources, cursor=cursor)
        who = caller()
        return self.env.get_template("dashboard.html").render(
            summary=summarize(models),
            models=models,
            integrity=integrity,
            timeline=events,
            paged=bool(token),
            who=who.name,
            now=datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        )

    def record(self, record_id: str) -> str:
        return self.env.get_template("record.html").render(p=prove(self.sources, record_id))

    def mount(self, app: web.Application) -> None:
        """Add the routes to `app` (whose middleware has signed the caller in)."""
        app.router.add_get("/", _root)
        app.router.add_get("/dashboard", self._html(lambda r: self.page(_query(r, "page_token"))))
        app.router.add_get("/dashboard/records/{record_id}", self._html(self._record_page))
        app.router.add_get("/dashboard/records/{record_id}/proof.json", self._json(self._proof))
        app.router.add_get("/dashboard/api/models", self._json(self._models))
        app.router.add_get("/dashboard/api/models/{model}", self._json(self._model))
        app.router.add_get("/dashboard/api/timeline", self._json(self._timeline))
        app.router.add_get("/dashboard/api/integrity", self._json(self._integrity))

    def _record_page(self, request: web.Request) -> str:
        return self.record(
            str(parse_field("record_id", parse_record_id, request.match_info["record_id"]))
        )

    def _proof(self, request: web.Request) -> Any:
        record_id = parse_field("record_id", parse_record_id, request.match_info["record_id"])
        return prove(self.sources, str(record_id)).proof

    def _models(self, _: web.Request) -> Any:
        models = self.gatherer.models()
        summary = summarize(models)
        return {"summary": asdict(summary), "models": [m.to_json() for m in models]}

    def _model(self, request: web.Request) -> Any:
        return self.gatherer.model(valid_model(request.match_info["model"])).to_json()

    def _timeline(self, request: web.Request) -> Any:
        model = _query(request, "model")
        if model:
            valid_model(model)
        since, until = time_range(
            _query(request, "since"), _query(request, "until"), datetime.now(UTC)
        )
        token = _query(request, "page_token")
        cursor = Cursor.parse(token) if token else None
        size = page_size(_query(request, "page_size"))
        if model:
            self.gatherer.model(model)  # 404 for a model the registry does not know
        page = timeline(
            self.sources, model=model, since=since, until=until, cursor=cursor, size=size
        )
        return asdict(page)

    def _integrity(self, _: web.Request) -> Any:
        return asdict(self.watch.check())

    def _html(self, render: Callable[[web.Request], str]) -> Handler:
        async def handler(request: web.Request) -> web.StreamResponse:
            if (refused := _refused()) is not None:
                return refused
            try:
                html = await asyncio.to_thread(render, request)  # carries the caller
            except MrmError as e:
                status = _STATUS.get(type(e), 500)
                return web.Response(status=status, text=e.message + "\n", headers=_HEADERS)
            except Exception:
                log.exception("the dashboard page %s failed", request.path)
                return web.Response(status=500, text="internal error\n", headers=_HEADERS)
            return web.Response(
                text=html, content_type="text/html", charset="utf-8", headers=_HEADERS
            )

        return handler

    def _json(self, answer: Callable[[web.Request], Any]) -> Handler:
        async def handler(request: web.Request) -> web.StreamResponse:
            if (refused := _refused()) is not None:
                return refused
            try:
                doc, status = await asyncio.to_thread(answer, request), 200
            except MrmError as e:
                status = _STATUS.get(type(e), 500)
                doc = _error_body(e, status)
            except Exception:
                log.exception("the dashboard endpoint %s failed", request.path)
                status = 500
                doc = {"error": {"status": 500, "field": "", "message": "internal error"}}
            return web.json_response(
                doc, status=status, headers=_HEADERS, dumps=lambda d: json.dumps(d, indent=1)
            )

        return handler


def _refused() -> web.Response | None:
    who = caller()
    if who.has(*VIEWERS):
        return None
    return web.Response(
        status=403,
        text=f"{who.describe()} may not view the dashboard: it needs the auditor or admin role\n",
        headers=_HEADERS,
    )


def _query(request: web.Request, name: str) -> str:
    values = request.query.getall(name, [])
    if len(values) > 1:
        raise InvalidArgument(name, "is given more than once")
    return values[0] if values else ""


async def _root(_: web.Request) -> web.StreamResponse:
    raise web.HTTPFound("/dashboard")


def _num(value: float | None, digits: int = 3) -> str:
    if value is None:
        return "—"
    return f"{value:.{digits}f}"
