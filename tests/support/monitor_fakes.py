"""An in-memory ledger and registry for the monitor engine (starts no server)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import grpc

from mrm.client.errors import NotFound
from mrm.client.ledger import kind_value
from mrm.monitor.engine import Monitor
from mrm.v1 import ledger_pb2

T0_US = 1_767_225_600_000_000  # 2026-01-01T00:00:00Z


S = 1_000_000


class FakeLedger:
    """The LedgerClient calls the monitor makes, over a list; a repeated id with the
    same content is a duplicate (nothing appended), with other content an error."""

    def __init__(self) -> None:
        self.records: list[ledger_pb2.Record] = []
        self.by_id: dict[str, ledger_pb2.Record] = {}
        self.clock_us = T0_US

    def add(self, rec: ledger_pb2.Record, us: int) -> ledger_pb2.Record:
        stored = ledger_pb2.Record()
        stored.CopyFrom(rec)
        stored.leaf_index = len(self.records)
        stored.recorded_at.seconds, micros = divmod(us, S)
        stored.recorded_at.nanos = micros * 1000
        self.records.append(stored)
        self.by_id[stored.record_id] = stored
        return stored

    def append(self, records: Sequence[ledger_pb2.Record]) -> list[str]:
        for rec in records:
            old = self.by_id.get(rec.record_id)
            if old is not None and (old.body_json, old.kind) != (rec.body_json, rec.kind):
                raise ValueError(f"{rec.record_id}: a different record has this id")
        for rec in records:
            if rec.record_id not in self.by_id:
                self.add(rec, self.clock_us)
        return [r.record_id for r in records]

    def get_record(self, record_id: str) -> ledger_pb2.Record:
        if record_id not in self.by_id:
            raise NotFound(grpc.StatusCode.NOT_FOUND, record_id)
        return self.by_id[record_id]

    def _match(self, req: ledger_pb2.QueryRecordsRequest) -> list[ledger_pb2.Record]:
        found = [
            r
            for r in self.records
            if r.leaf_index >= req.start_leaf_index
            and (not req.kind or r.kind == req.kind)
            and (not req.model_name or r.model_name == req.model_name)
            and (not req.model_version or r.model_version == req.model_version)
        ]
        return found[::-1] if req.newest_first else found

    def query_page(self, req: ledger_pb2.QueryRecordsRequest) -> Any:
        return ledger_pb2.QueryRecordsResponse(records=self._match(req)[: req.page_size or 1000])

    def query(self, **q: Any) -> Iterator[ledger_pb2.Record]:
        req = ledger_pb2.QueryRecordsRequest(
            kind=kind_value(q.get("kind", 0)), newest_first=q.get("newest_first", False)
        )
        yield from self._match(req)

    def kinds(self, kind: str) -> list[ledger_pb2.Record]:
        return list(self.query(kind=kind))


class FakeRegistry:
    def list_models(self) -> list[Any]:
        return []

    def get_version(self, *key: str) -> Any:
        raise NotFound(grpc.StatusCode.NOT_FOUND, " ".join(key))


def drain(monitor: Monitor) -> None:
    """Step the monitor until it has nothing left to judge."""
    while monitor.step():
        pass
