"""The MRM stack: the services of one installation, started together or one by one.

`mrm serve NAME…` runs the services named in one process (one container per
service in production); `mrm up` runs a few such processes (mrm.supervisor), or
all of them in one with `--single-process`. Tests and benchmarks start it through the
same API (`Stack.start`, or `BackgroundStack` from synchronous code).

A service started in this process is reached on its bound port; one that is not
is reached at its `MRM_*_ADDR`, like any other client would.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable, Coroutine, Iterable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import sqlalchemy as sa

from mrm.client.credentials import ClientAuth
from mrm.core import db
from mrm.core.auth import ServerAuth, service_auth
from mrm.core.auth.bootstrap import ensure_local_tokens
from mrm.core.errors import FailedPrecondition
from mrm.core.server import GrpcServer, Service
from mrm.core.settings import SERVICES, Settings
from mrm.dashboard.app import dashboard
from mrm.explain.app import explain_service
from mrm.ledger.app import ledger_service, open_ledger
from mrm.ledger.service import Ledger
from mrm.monitor.app import monitor_service
from mrm.proxy.app import proxy_service
from mrm.registry.app import registry_service

log = logging.getLogger(__name__)
_T = TypeVar("_T")

ADDR_VARIABLES = {
    "ledger": "MRM_LEDGER_ADDR",
    "registry": "MRM_REGISTRY_ADDR",
    "explain": "MRM_EXPLAIN_ADDR",
    "proxy": "MRM_PROXY_ADDR",
    "monitor": "MRM_MONITOR_ADDR",
    "http": "MRM_HTTP_ADDR",
}


def client_target(address: str) -> str:
    """How a client reaches a listen address: ':50052' and '0.0.0.0:…' mean this host."""
    host, _, port = address.rpartition(":")
    if host in ("", "[::]", "0.0.0.0", "::"):  # noqa: S104 (recognizing it, not binding)
        return f"127.0.0.1:{port}"
    return address


class BindError(OSError):
    """A service's address cannot be bound; the message names the variable to change."""


@dataclass
class Stack:
    settings: Settings
    local_ledger: Ledger | None
    servers: dict[str, GrpcServer]
    auth: ServerAuth | None = None
    engine: sa.Engine | None = None
    closers: list[Callable[[], object]] = field(default_factory=list)
    http_port: int = 0
    monitor_metrics_port: int = 0
    """The bound port of the monitor's /metrics, when this process runs the monitor."""
    """The bound port of the explanation reports' HTTP server, when this process runs it."""

    def target(self, name: str) -> str:
        """Where a client reaches service `name` (this process's port, or its address)."""
        server = self.servers.get(name)
        if server is not None:
            return f"127.0.0.1:{server.port}"
        return client_target(getattr(self.settings, f"{name}_addr"))

    @property
    def ledger(self) -> Ledger:
        """The ledger this process runs (only when it runs one)."""
        if self.local_ledger is None:
            raise RuntimeError("this stack does not run the ledger")
        return self.local_ledger

    @property
    def ledger_addr(self) -> str:
        return self.target("ledger")

    @property
    def proxy_addr(self) -> str:
        return self.target("proxy")

    @property
    def registry_addr(self) -> str:
        return self.target("registry")

    @property
    def monitor_addr(self) -> str:
        return self.target("monitor")

    @property
    def explain_addr(self) -> str:
        return self.target("explain")

    @property
    def http_addr(self) -> str:
        """Where the explanation reports are served over HTTP (host:port)."""
        if self.http_port:
            return f"127.0.0.1:{self.http_port}"
        return client_target(self.settings.http_addr)

    @classmethod
    async def start(
        cls, settings: Settings, services: Iterable[str] = SERVICES, *, bootstrap: bool = False
    ) -> Stack:
        """Start `services`. With `bootstrap` (`mrm up`), first make the local
        credentials that are missing (mrm.core.auth.bootstrap)."""
        wanted = set(services)
        unknown = wanted - set(SERVICES)
        if unknown:
            raise ValueError(f"unknown service(s) {sorted(unknown)}; known: {', '.join(SERVICES)}")
        stack = cls(settings, None, {})
        try:
            if bootstrap:
                await asyncio.to_thread(ensure_local_tokens, settings)
            try:
                stack.auth = ServerAuth.from_settings(settings)
            except ValueError as exc:
                raise FailedPrecondition(str(exc)) from None
            if wanted & {"ledger", "registry"}:
                stack.engine = db.create_engine(settings.resolved_database_url())
                await asyncio.to_thread(
                    db.upgrade, stack.engine, app_role=settings.database_app_role
                )
            for name in SERVICES:
                if name in wanted:
                    await stack._start_one(name)
        except BaseException:
            await stack.stop()
            raise
        return stack

    async def _start_one(self, name: str) -> None:
        settings = self.settings
        assert self.auth is not None
        if name == "ledger":
            assert self.engine is not None
            self.local_ledger = await asyncio.to_thread(open_ledger, settings, self.engine)
            service = ledger_service(settings, self.engine, self.local_ledger, self.auth)
        elif name == "registry":
            assert self.engine is not None
            service = registry_service(
                settings, self.engine, self.target("ledger"), self._credential("registry")
            )
        elif name == "explain":
            board = dashboard(settings, self.target)  # served with the reports
            self.closers.append(board.close)
            try:
                explain = explain_service(
                    settings,
                    self.target("registry"),
                    self.target("ledger"),
                    self._credential("explain"),
                    self.auth,
                    mount=board.mount,
                )
            except OSError as exc:
                raise BindError(
                    f"the reports' HTTP server cannot listen on {settings.http_addr} "
                    "(is the port in use?); "
                    f"set {ADDR_VARIABLES['http']} to a free host:port"
                ) from exc
            self.http_port = explain.http_port
            self.closers.append(explain.http.close)
            service = explain.service
        elif name == "monitor":
            try:
                monitor = monitor_service(
                    settings,
                    self.target("registry"),
                    self.target("ledger"),
                    self._credential("monitor"),
                )
            except OSError as exc:
                raise BindError(
                    f"the monitor's /metrics cannot listen on {settings.monitor_metrics_addr} "
                    "(is the port in use?); set MRM_MONITOR_METRICS_ADDR to a free host:port"
                ) from exc
            self.monitor_metrics_port = monitor.metrics_port
            service = monitor.service
        else:
            service = proxy_service(
                settings, self.target("registry"), self.target("ledger"), self._credential("proxy")
            )
        await self._serve(name, service)

    def _credential(self, name: str) -> ClientAuth:
        try:
            return service_auth(self.settings, name)
        except ValueError as exc:
            raise FailedPrecondition(str(exc)) from None

    async def _serve(self, name: str, service: Service) -> None:
        address = getattr(self.settings, f"{name}_addr")
        assert self.auth is not None
        server = GrpcServer(
            address,
            [service],
            auth=self.auth,
            grace=self.settings.shutdown_grace,
            health_interval=self.settings.health_interval,
            max_message_bytes=self.settings.grpc_max_message_bytes,
            reuse_port=self.settings.reuse_port,
        )
        try:
            await server.start()
        except OSError as exc:
            await server.stop()
            raise BindError(
                f"the {name} cannot listen on {address} (is the port in use?); "
                f"set {ADDR_VARIABLES[name]} to a free host:port"
            ) from exc
        self.servers[name] = server

    async def stop(self) -> None:
        await asyncio.gather(*(s.stop() for s in self.servers.values()))
        for close in self.closers:
            close()
        if self.local_ledger is not None:
            await asyncio.to_thread(self.local_ledger.close)
        if self.engine is not None:
            self.engine.dispose()


class BackgroundStack:
    """A Stack on its own event loop thread, for synchronous callers."""

    def __init__(
        self, settings: Settings, services: Iterable[str] = SERVICES, *, bootstrap: bool = True
    ) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._thread.start()
        try:
            self.stack: Stack = asyncio.run_coroutine_threadsafe(
                Stack.start(settings, services, bootstrap=bootstrap), self._loop
            ).result(timeout=120)
        except BaseException:
            self._halt()
            raise

    def _halt(self) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        self._loop.close()

    def run(self, coro: Coroutine[Any, Any, _T], timeout: float = 60.0) -> _T:
        """Run `coro` on the stack's event loop and wait for its result, e.g. stopping
        one of `stack.servers` while the others keep serving."""
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout=timeout)

    def stop(self) -> None:
        self.run(self.stack.stop())
        self._halt()
