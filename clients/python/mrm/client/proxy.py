"""A typed client for mrm.v1.ProxyService: the inference proxy's delivery status.

    with ProxyClient("localhost:8001") as proxy:
        s = proxy.status()
        print(s.counters.dropped, s.ledger_reachable)

The result is a frozen dataclass (a handful of numbers, unlike the ledger's
record pages), so `mrm status` and scripts can print or compare it directly.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from google.protobuf.timestamp_pb2 import Timestamp

from mrm.client.channel import ServiceClient
from mrm.client.credentials import ClientAuth
from mrm.client.registry import stage_name
from mrm.v1 import proxy_pb2, proxy_pb2_grpc


@dataclass(frozen=True)
class DeliveryCounters:
    """Sampled records by what became of them, since the proxy process started.

    Once the queue and spool are empty: shipped + dropped + strict_failed = sampled.
    Every dropped record is reported in a GAP record in the ledger.
    """

    sampled: int
    shipped: int
    spooled: int
    dropped: int
    strict_failed: int

    @classmethod
    def from_proto(cls, c: proxy_pb2.DeliveryCounters) -> DeliveryCounters:
        return cls(c.sampled, c.shipped, c.spooled, c.dropped, c.strict_failed)


@dataclass(frozen=True)
class ServedModel:
    """A model version the proxy serves."""

    name: str
    version: str
    stage: str  # "production" or "staging"
    sample_rate: float
    onnx_sha256: str
    counters: DeliveryCounters


@dataclass(frozen=True)
class ProxyStatus:
    """One proxy process's view of its audit delivery (mrm.v1.GetProxyStatusResponse)."""

    counters: DeliveryCounters
    queue_depth: int
    queue_capacity: int
    spool_depth: int
    spool_capacity: int
    gap_records_written: int
    ledger_target: str
    ledger_reachable: bool
    last_ledger_error: str
    last_ledger_error_at: datetime | None
    last_ledger_success_at: datetime | None
    models: tuple[ServedModel, ...]
    instance: str
    """Which process answered ("<host>:<pid>"); its counters are its own."""

    @classmethod
    def from_proto(cls, r: proxy_pb2.GetProxyStatusResponse) -> ProxyStatus:
        return cls(
            counters=DeliveryCounters.from_proto(r.counters),
            queue_depth=r.queue_depth,
            queue_capacity=r.queue_capacity,
            spool_depth=r.spool_depth,
            spool_capacity=r.spool_capacity,
            gap_records_written=r.gap_records_written,
            ledger_target=r.ledger_target,
            ledger_reachable=r.ledger_reachable,
            last_ledger_error=r.last_ledger_error,
            last_ledger_error_at=_moment(r, "last_ledger_error_time"),
            last_ledger_success_at=_moment(r, "last_ledger_success_time"),
            models=tuple(
                ServedModel(
                    name=m.name,
                    version=m.version,
                    stage=stage_name(m.stage),
                    sample_rate=m.sample_rate,
                    onnx_sha256=m.onnx_sha256,
                    counters=DeliveryCounters.from_proto(m.counters),
                )
                for m in r.models
            ),
            instance=r.instance,
        )


def _moment(r: proxy_pb2.GetProxyStatusResponse, name: str) -> datetime | None:
    if not r.HasField(name):  # type: ignore[arg-type]
        return None
    ts: Timestamp = getattr(r, name)
    return ts.ToDatetime(tzinfo=UTC)


class ProxyClient(ServiceClient):
    """ProxyService over one channel, on the proxy's own (inference) port."""

    def __init__(
        self,
        target: str,
        *,
        timeout: float = 10.0,
        auth: ClientAuth | None = None,
    ) -> None:
        super().__init__(target, timeout=timeout, auth=auth)
        self._stub = proxy_pb2_grpc.ProxyServiceStub(self._channel)

    def status(self) -> ProxyStatus:
        """The proxy's counters, depths, models and whether it reaches the ledger.

        Raises mrm.client.errors.Unavailable (an MrmRpcError) when the proxy is down.
        """
        reply = self._call(self._stub.GetProxyStatus, proxy_pb2.GetProxyStatusRequest())
        return ProxyStatus.from_proto(reply)
