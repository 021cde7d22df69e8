"""Wires the inference proxy: the deployment watcher and the OIP v2 servicer."""

from __future__ import annotations

import asyncio

from mrm.core.server import Service
from mrm.core.settings import Settings
from mrm.oip.v2 import grpc_predict_v2_pb2, grpc_predict_v2_pb2_grpc
from mrm.proxy.server import InferenceServicer
from mrm.proxy.watcher import DeploymentWatcher

SERVICE_NAME = grpc_predict_v2_pb2.DESCRIPTOR.services_by_name["GRPCInferenceService"].full_name


def proxy_service(settings: Settings, registry_target: str) -> Service:
    watcher = DeploymentWatcher(
        registry_target, threads=settings.proxy_threads, load_timeout=settings.proxy_load_timeout
    )
    servicer = InferenceServicer(watcher)

    async def ready() -> bool:
        # Ready once the models the registry deploys are loaded.
        return watcher.ready.is_set()

    async def follow(stopping: asyncio.Event) -> None:
        await watcher.run(stopping)

    return Service(
        name=SERVICE_NAME,
        register=lambda server: grpc_predict_v2_pb2_grpc.add_GRPCInferenceServiceServicer_to_server(
            servicer, server
        ),
        ready=ready,
        background=[follow],
        close=watcher.close,
    )
