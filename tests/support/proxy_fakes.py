"""A stand-in for the proxy's auditing sink, for tests of the serving path without a ledger."""

from __future__ import annotations

from mrm.proxy.audit import PendingPrediction
from mrm.proxy.shipper import AuditUnavailable
from mrm.v1 import ledger_pb2


class Sink:
    """Records what the servicer hands over; strict offers succeed or fail on demand."""

    def __init__(self, strict_error: str = "") -> None:
        self.offered: list[PendingPrediction] = []
        self.strict: list[ledger_pb2.Record] = []
        self.strict_error = strict_error

    def offer(self, record: PendingPrediction) -> bool:
        self.offered.append(record)
        return True

    def strict_offer(self, record: ledger_pb2.Record, timeout: float) -> None:
        if self.strict_error:
            raise AuditUnavailable(self.strict_error)
        self.strict.append(record)
