"""Wires the registry service from settings: store, artifacts, the ledger client."""

from __future__ import annotations

import asyncio

import sqlalchemy as sa

from mrm.client.credentials import ClientAuth
from mrm.client.ledger import LedgerClient
from mrm.core import db
from mrm.core.server import Service
from mrm.core.settings import Settings
from mrm.registry.artifacts import ArtifactStore
from mrm.registry.service import Registry
from mrm.registry.servicer import RegistryServicer
from mrm.registry.store import RegistryStore
from mrm.v1 import registry_pb2, registry_pb2_grpc

SERVICE_NAME = registry_pb2.DESCRIPTOR.services_by_name["RegistryService"].full_name


def registry_service(
    settings: Settings, engine: sa.Engine, ledger_target: str, auth: ClientAuth
) -> Service:
    """`auth` is the registry's own credential (role registry), for the ledger."""
    ledger = LedgerClient(ledger_target, timeout=10.0, auth=auth)
    registry = Registry(
        RegistryStore(engine),
        ArtifactStore(settings.resolved_artifact_dir(), settings.max_artifact_bytes),
        ledger,
    )
    servicer = RegistryServicer(registry, settings.watch_interval)

    def ledger_answers() -> bool:
        try:
            ledger.checkpoint()
            return True
        except Exception:  # any failure means: cannot record changes now
            return False

    async def ready() -> bool:
        # Without the ledger no change can be recorded, so none can be made.
        return await asyncio.to_thread(db.ping, engine) and await asyncio.to_thread(ledger_answers)

    return Service(
        name=SERVICE_NAME,
        register=lambda server: registry_pb2_grpc.add_RegistryServiceServicer_to_server(
            servicer, server
        ),
        ready=ready,
        close=ledger.close,
    )
