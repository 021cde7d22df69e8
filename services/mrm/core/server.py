"""The gRPC server bootstrap every MRM service shares.

grpc.aio; grpc.health.v1 that follows real readiness; reflection; one error
interceptor; authentication (mrm.core.auth) and mrm.v1.AuthService; TLS when
configured; the OpenTelemetry interceptor; SIGTERM → NOT_SERVING → stop(grace).
"""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from dataclasses import dataclass, field
from typing import Any

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection
from opentelemetry.instrumentation.grpc import aio_server_interceptor

from mrm.core.auth import ServerAuth
from mrm.core.auth.service import SERVICE_NAME as AUTH_SERVICE
from mrm.core.auth.service import AuthServicer
from mrm.core.interceptors import ErrorInterceptor
from mrm.core.telemetry import setup_tracing
from mrm.v1 import auth_pb2_grpc

log = logging.getLogger(__name__)

Probe = Callable[[], Awaitable[bool]]


@dataclass
class Service:
    """One gRPC service to host: its full name, how to register it, whether it is ready."""

    name: str
    register: Callable[[grpc.aio.Server], None]
    ready: Probe
    background: list[Callable[[asyncio.Event], Coroutine[Any, Any, None]]] = field(
        default_factory=list
    )
    """Jobs that run while the server does; each returns soon after its event is set."""
    close: Callable[[], None] | None = None
    """Releases what the service holds (clients, pools) once the server has stopped."""
    traces_itself: bool = False
    """The service makes its own spans (the inference proxy, on its hot path), so the
    OpenTelemetry interceptor leaves its RPCs alone."""
    also: tuple[str, ...] = ()
    """The full names of further services `register` adds, ready when this one is:
    health answers for each and reflection lists them."""

    @property
    def names(self) -> tuple[str, ...]:
        return (self.name, *self.also)


async def wait_either(event: asyncio.Event, stopping: asyncio.Event, timeout: float) -> None:
    """Return when `event` or `stopping` is set, or after `timeout` seconds."""
    waiters = [asyncio.ensure_future(event.wait()), asyncio.ensure_future(stopping.wait())]
    try:
        await asyncio.wait(waiters, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waiters:
            waiter.cancel()


class GrpcServer:
    """Hosts services on one address and keeps their health status truthful."""

    def __init__(
        self,
        address: str,
        services: Sequence[Service],
        *,
        auth: ServerAuth,
        grace: float,
        health_interval: float,
        max_message_bytes: int,
        reuse_port: bool = False,
    ) -> None:
        self.address = address if not address.startswith(":") else "[::]" + address
        self.services = list(services)
        self.grace = grace
        self.health_interval = health_interval
        self.auth = auth
        setup_tracing("mrm")
        own = {n for s in services if s.traces_itself for n in s.names}
        otel: grpc.aio.ServerInterceptor = aio_server_interceptor(  # type: ignore[no-untyped-call]
            filter_=(lambda call: call.method.split("/")[1] not in own) if own else None
        )
        self.server = grpc.aio.server(
            interceptors=[otel, ErrorInterceptor(), auth.interceptor()],
            options=[
                ("grpc.max_receive_message_length", max_message_bytes),
                ("grpc.max_send_message_length", max_message_bytes),
                ("grpc.so_reuseport", int(reuse_port)),
            ],
        )
        self.health = health.aio.HealthServicer()
        self.port = 0
        self._tasks: list[asyncio.Task[None]] = []
        self._stopping = asyncio.Event()

    async def start(self) -> int:
        """Bind, start serving and begin probing readiness. Returns the bound port."""
        for svc in self.services:
            svc.register(self.server)
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self.server)
        auth_pb2_grpc.add_AuthServiceServicer_to_server(AuthServicer(), self.server)
        names = [n for s in self.services for n in s.names]
        reflection.enable_server_reflection(
            [
                *names,
                AUTH_SERVICE,
                health_pb2.DESCRIPTOR.services_by_name["Health"].full_name,
                reflection.SERVICE_NAME,
            ],
            self.server,
        )
        for name in [*names, ""]:
            await self.health.set(name, health_pb2.HealthCheckResponse.NOT_SERVING)
        tls = self.auth.tls
        try:
            if tls is None:
                self.port = self.server.add_insecure_port(self.address)
            else:
                self.port = self.server.add_secure_port(self.address, tls.grpc_credentials())
        except RuntimeError as exc:  # grpc reports a failed bind this way
            raise OSError(f"cannot listen on {self.address}: {exc}") from exc
        if not self.port:
            raise OSError(f"cannot listen on {self.address} (is the port in use?)")
        await self.server.start()
        await self._probe()
        self._tasks.append(asyncio.create_task(self._probe_loop()))
        for svc in self.services:
            for job in svc.background:
                self._tasks.append(asyncio.create_task(job(self._stopping)))
        log.info("serving %s on %s (port %d)", ", ".join(names), self.address, self.port)
        return self.port

    async def wait_serving(self, timeout: float) -> bool:
        """Probe until every service is ready (True) or `timeout` seconds pass (False)."""
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            if await self._probe():
                return True
            if asyncio.get_running_loop().time() >= deadline:
                return False
            await asyncio.sleep(0.1)

    async def _probe(self) -> bool:
        all_ok = True
        for svc in self.services:
            try:
                ok = await svc.ready()
            except Exception:
                log.exception("readiness probe of %s failed", svc.name)
                ok = False
            all_ok &= ok
            status = (
                health_pb2.HealthCheckResponse.SERVING
                if ok
                else health_pb2.HealthCheckResponse.NOT_SERVING
            )
            for name in svc.names:
                await self.health.set(name, status)
        overall = (
            health_pb2.HealthCheckResponse.SERVING
            if all_ok
            else health_pb2.HealthCheckResponse.NOT_SERVING
        )
        await self.health.set("", overall)
        return all_ok

    async def _probe_loop(self) -> None:
        while not self._stopping.is_set():
            try:
                await asyncio.wait_for(self._stopping.wait(), self.health_interval)
            except TimeoutError:
                await self._probe()

    async def stop(self) -> None:
        """NOT_SERVING first, so balancers drain us; then finish in-flight calls."""
        if self._stopping.is_set():
            return
        self._stopping.set()
        await self.health.enter_graceful_shutdown()
        # Let background jobs finish the step they are in (it may be holding a
        # database connection in a worker thread) rather than abandon it.
        _, pending = (
            await asyncio.wait(self._tasks, timeout=self.grace + 5) if self._tasks else ((), ())
        )
        for task in pending:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.server.stop(self.grace)
        for svc in self.services:
            if svc.close is not None:
                svc.close()
        log.info("stopped %s", self.address)


def stop_on_signals() -> asyncio.Event:
    """An event set by SIGTERM or SIGINT. Install it before starting anything, so a
    signal during start-up still means a clean stop rather than an abrupt kill."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    return stop
