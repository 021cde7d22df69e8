"""mrm.v1.ProxyService: the proxy's delivery counters and models, for `mrm status`.

A thin adapter: the counters come from the shipper's snapshot, the models from
the watcher's table, and reachability from a health check of the ledger made
for each call (a fresh channel with a one-second deadline, so an outage shows
at once and a status call never waits on gRPC's reconnect backoff).
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Callable
from datetime import datetime
from typing import Any

import grpc
from google.protobuf.timestamp_pb2 import Timestamp
from grpc_health.v1 import health_pb2, health_pb2_grpc

from mrm.client.channel import open_aio_channel
from mrm.client.credentials import ClientAuth
from mrm.client.timestamps import timestamp
from mrm.proxy.metrics import Counts, Snapshot
from mrm.proxy.models import ModelTable
from mrm.v1 import ledger_pb2, proxy_pb2, proxy_pb2_grpc, registry_pb2

log = logging.getLogger(__name__)
SERVICE_NAME = proxy_pb2.DESCRIPTOR.services_by_name["ProxyService"].full_name
_LEDGER = ledger_pb2.DESCRIPTOR.services_by_name["LedgerService"].full_name
Context = grpc.aio.ServicerContext[Any, Any]


async def ledger_reachable(
    target: str, timeout: float = 1.0, auth: ClientAuth | None = None
) -> bool:
    """Whether the ledger at `target` reports SERVING within `timeout` seconds."""
    try:
        async with open_aio_channel(target, auth or ClientAuth()) as channel:
            stub = health_pb2_grpc.HealthStub(channel)
            reply = await stub.Check(
                health_pb2.HealthCheckRequest(service=_LEDGER), timeout=timeout
            )
    except grpc.aio.AioRpcError as exc:
        log.debug("ledger %s health check: %s", target, exc.code())
        return False
    return bool(reply.status == health_pb2.HealthCheckResponse.SERVING)


def _counters(c: Counts) -> proxy_pb2.DeliveryCounters:
    return proxy_pb2.DeliveryCounters(
        sampled=c.sampled,
        shipped=c.shipped,
        spooled=c.spooled,
        dropped=c.dropped,
        strict_failed=c.strict_failed,
    )


def _timestamp(moment: datetime | None) -> Timestamp | None:
    return None if moment is None else timestamp(moment)


def status_response(
    snap: Snapshot, table: ModelTable, ledger_target: str, reachable: bool
) -> proxy_pb2.GetProxyStatusResponse:
    models = [
        proxy_pb2.ServedModel(
            name=m.name,
            version=m.version,
            stage=registry_pb2.Stage.Value("STAGE_" + m.stage),
            sample_rate=m.sample_rate,
            onnx_sha256=m.onnx_sha256,
            counters=_counters(snap.by_model.get((m.name, m.version), Counts())),
        )
        for name in sorted(table.versions)
        for _, m in sorted(table.versions[name].items())
    ]
    return proxy_pb2.GetProxyStatusResponse(
        counters=_counters(snap.totals),
        queue_depth=snap.queue_depth,
        queue_capacity=snap.queue_capacity,
        spool_depth=snap.spool_depth,
        spool_capacity=snap.spool_capacity,
        gap_records_written=snap.gap_records_written,
        ledger_target=ledger_target,
        ledger_reachable=reachable,
        last_ledger_error=snap.last_ledger_error,
        last_ledger_error_time=_timestamp(snap.last_ledger_error_at),
        last_ledger_success_time=_timestamp(snap.last_ledger_success_at),
        models=models,
        instance=f"{socket.gethostname()}:{os.getpid()}",  # per call: workers may fork
    )


class ProxyStatusServicer(proxy_pb2_grpc.ProxyServiceServicer):
    def __init__(
        self,
        snapshot: Callable[[], Snapshot],
        table: Callable[[], ModelTable],
        ledger_target: str,
        *,
        probe_timeout: float = 1.0,
        auth: ClientAuth | None = None,
    ) -> None:
        self._auth = auth or ClientAuth()
        self._snapshot = snapshot
        self._table = table
        self._ledger_target = ledger_target
        self._probe_timeout = probe_timeout

    async def GetProxyStatus(
        self, request: proxy_pb2.GetProxyStatusRequest, context: Context
    ) -> proxy_pb2.GetProxyStatusResponse:
        reachable = await ledger_reachable(self._ledger_target, self._probe_timeout, self._auth)
        return status_response(self._snapshot(), self._table(), self._ledger_target, reachable)
