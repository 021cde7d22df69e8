"""Wires the Explain service from settings: the ledger and registry clients, the
subject key shared with the proxy, the gRPC servicer and the HTTP report server."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Callable
from dataclasses import dataclass

from aiohttp import web

from mrm.client.credentials import ClientAuth
from mrm.client.ledger import LedgerClient
from mrm.client.registry import RegistryClient
from mrm.core.auth import ServerAuth
from mrm.core.auth.http import Sessions
from mrm.core.keyfile import load_or_create_subject_key, read_or_create
from mrm.core.server import Service
from mrm.core.settings import Settings
from mrm.explain.decisions import Decisions
from mrm.explain.evidence import Evidence
from mrm.explain.http import ReportServer
from mrm.explain.report import ReportRenderer
from mrm.explain.service import Explain
from mrm.explain.servicer import ExplainServicer
from mrm.kernel.subjects import SubjectHasher
from mrm.v1 import explain_pb2, explain_pb2_grpc

SERVICE_NAME = explain_pb2.DESCRIPTOR.services_by_name["ExplainService"].full_name


@dataclass
class ExplainApp:
    service: Service
    http: ReportServer

    @property
    def http_port(self) -> int:
        return self.http.port


def _subject_key(settings: Settings) -> bytes:
    return load_or_create_subject_key(settings.resolved_subject_key_file())


def explain_service(
    settings: Settings,
    registry_target: str,
    ledger_target: str,
    auth: ClientAuth,
    server_auth: ServerAuth,
    mount: Callable[[web.Application], None] | None = None,
) -> ExplainApp:
    """`auth` is the service's own credential (role explainer); `server_auth` checks
    the callers of the HTTP pages as the gRPC servers check theirs; `mount` adds
    routes to the HTTP server (the governance dashboard)."""
    ledger = LedgerClient(ledger_target, timeout=30.0, auth=auth)
    registry = RegistryClient(registry_target, timeout=60.0, auth=auth)
    evidence = Evidence(ledger, registry)
    explain = Explain(evidence, Decisions(evidence, SubjectHasher(_subject_key(settings))))
    reports = ReportRenderer(explain, settings.trace_url_template)
    key, _ = read_or_create(
        settings.session_key_file or settings.home / "session.key",
        "session key",
        lambda: secrets.token_hex(32),
        bytes.fromhex,
    )
    sessions = Sessions(key, settings.session_hours, server_auth.authenticator)
    tls = server_auth.tls
    http = ReportServer(
        reports,
        settings.http_addr,
        sessions,
        tls.ssl_context() if tls is not None else None,
        mount=mount,
    )

    def dependencies_answer() -> bool:
        try:
            ledger.checkpoint()
            next(registry.list_models(), None)
            return True
        except Exception:  # any failure means: cannot explain now
            return False

    async def ready() -> bool:
        return await asyncio.to_thread(dependencies_answer)

    def close() -> None:
        http.close()
        ledger.close()
        registry.close()

    servicer = ExplainServicer(explain, reports)
    return ExplainApp(
        Service(
            name=SERVICE_NAME,
            register=lambda server: explain_pb2_grpc.add_ExplainServiceServicer_to_server(
                servicer, server
            ),
            ready=ready,
            background=[http.run],
            close=close,
        ),
        http,
    )
