"""Wires the inference proxy: the deployment watcher and the OIP v2 servicer."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any

import grpc

from mrm.client.credentials import ClientAuth
from mrm.core.auth import ServerAuth
from mrm.core.keyfile import load_or_create_subject_key
from mrm.core.prometheus import start_metrics_server
from mrm.core.server import Service
from mrm.core.settings import Settings
from mrm.core.telemetry import setup_metrics
from mrm.oip.v2 import grpc_predict_v2_pb2, grpc_predict_v2_pb2_grpc
from mrm.proxy.audit import Stamper, prediction_records
from mrm.proxy.core import InferenceCore
from mrm.proxy.metrics import ProxyMetrics, prometheus_registry
from mrm.proxy.rest import RestInference, serve_rest
from mrm.proxy.server import InferenceServicer
from mrm.proxy.shipper import Shipper
from mrm.proxy.shipping import ShipperConfig, ShipperProcess
from mrm.proxy.spool import Spool
from mrm.proxy.status import ProxyStatusServicer
from mrm.proxy.watcher import DeploymentWatcher
from mrm.proxy.workers import Workers
from mrm.v1 import proxy_pb2_grpc

SERVICE_NAME = grpc_predict_v2_pb2.DESCRIPTOR.services_by_name["GRPCInferenceService"].full_name


def audit_sink(
    settings: Settings, ledger_target: str, key: bytes, auth: ClientAuth
) -> Shipper | ShipperProcess:
    """The shipper MRM_PROXY_SHIPPER asks for: a thread (the default) or a child process."""
    spool = settings.home / "proxy-spool.db"
    if settings.proxy_shipper == "thread":
        return Shipper(
            ledger_target,
            Spool(spool, settings.proxy_spool_max_records),
            queue_max=settings.proxy_queue_max,
            build=prediction_records,
            auth=auth,
        )
    return ShipperProcess(
        ShipperConfig(
            ledger_target=ledger_target,
            spool_path=spool,
            spool_max_records=settings.proxy_spool_max_records,
            queue_max=settings.proxy_queue_max,
            subject_key=key,
            auth=auth,
            nice=settings.proxy_shipper_nice,
            log_level=settings.log_level,
        )
    )


def proxy_service(
    settings: Settings, registry_target: str, ledger_target: str, auth: ClientAuth
) -> Service:
    """`auth` is the proxy's own credential (role proxy) for the registry and the ledger.
    `/metrics` is served from here on, on MRM_PROXY_METRICS_ADDR (when set)."""
    watcher = DeploymentWatcher(
        registry_target,
        threads=settings.proxy_threads,
        load_timeout=settings.proxy_load_timeout,
        auth=auth,
    )
    key_file = settings.resolved_subject_key_file()
    key = load_or_create_subject_key(key_file)
    workers = Workers(settings, registry_target, ledger_target, key_file)
    shipper = audit_sink(settings, ledger_target, key, auth)
    registry, inference = prometheus_registry(shipper.snapshot)

    async def follow(stopping: asyncio.Event) -> None:
        await watcher.run(stopping)

    core = InferenceCore(
        watcher,
        Stamper(key),
        shipper,
        strict_timeout=settings.proxy_strict_timeout,
        metrics=inference,
    )
    servicer = InferenceServicer(watcher, core.stamper, shipper, core=core)
    background: list[Callable[[asyncio.Event], Coroutine[Any, Any, None]]] = [follow, workers.run]
    if settings.proxy_http_addr:  # the same core over REST/JSON
        needs_token = settings.proxy_require_token and not settings.insecure
        rest = RestInference(
            core,
            authenticator=ServerAuth.from_settings(settings).authenticator if needs_token else None,
            max_body_bytes=settings.grpc_max_message_bytes,
        )

        async def serve_http(stopping: asyncio.Event) -> None:
            await serve_rest(
                rest, settings.proxy_http_addr, stopping, reuse_port=settings.reuse_port
            )

        background.append(serve_http)
    status = ProxyStatusServicer(shipper.snapshot, lambda: watcher.table, ledger_target, auth=auth)
    ProxyMetrics.register(setup_metrics("mrm").get_meter("mrm.proxy"), shipper.snapshot)
    try:
        metrics = start_metrics_server(settings.proxy_metrics_addr, registry)
    except (OSError, ValueError) as exc:
        servicer.close()
        shipper.close(timeout=0)
        watcher.close()
        raise OSError(
            f"the proxy's /metrics cannot listen on {settings.proxy_metrics_addr!r} ({exc}); "
            "set MRM_PROXY_METRICS_ADDR to a free host:port, or to '' to switch it off"
        ) from exc

    def close() -> None:
        if metrics is not None:
            metrics.close()
        servicer.close()
        shipper.close(timeout=settings.shutdown_grace)
        watcher.close()

    async def ready() -> bool:
        # Ready once the models the registry deploys are loaded.
        return watcher.ready.is_set()

    def register(server: grpc.aio.Server) -> None:
        grpc_predict_v2_pb2_grpc.add_GRPCInferenceServiceServicer_to_server(servicer, server)
        proxy_pb2_grpc.add_ProxyServiceServicer_to_server(status, server)  # mrm.v1.ProxyService

    return Service(
        name=SERVICE_NAME,
        register=register,
        ready=ready,
        background=background,
        close=close,
        traces_itself=True,  # one cheap span per ModelInfer, made by the servicer
    )
