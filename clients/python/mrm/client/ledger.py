"""A typed, synchronous client for mrm.v1.LedgerService.

Results are the protobuf messages themselves (typed by the generated .pyi):
converting a 10,000-record page into dataclasses would cost more than the
audit that reads it. Every failed call raises a subclass of MrmRpcError.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from datetime import datetime
from typing import Any, TypedDict, Unpack

import grpc

from mrm.client.channel import ServiceClient
from mrm.client.credentials import ClientAuth
from mrm.client.errors import from_rpc_error
from mrm.client.timestamps import timestamp
from mrm.kernel.ids import new_record_id
from mrm.tlog.canonical import canonical_json
from mrm.v1 import ledger_pb2, ledger_pb2_grpc

Record = ledger_pb2.Record
Checkpoint = ledger_pb2.Checkpoint
AppendResult = ledger_pb2.AppendResult
InclusionProof = ledger_pb2.GetInclusionProofResponse
ConsistencyProof = ledger_pb2.GetConsistencyProofResponse


def kind_value(kind: str | int) -> ledger_pb2.RecordKind.ValueType:
    """A RecordKind from its name ("PREDICTION" or "RECORD_KIND_PREDICTION") or number."""
    if isinstance(kind, int):
        return ledger_pb2.RecordKind.ValueType(kind)
    name = kind.upper()
    if not name.startswith("RECORD_KIND_"):
        name = "RECORD_KIND_" + name
    return ledger_pb2.RecordKind.Value(name)


def kind_names() -> list[str]:
    """Every appendable kind, spelled as in the leaf JSON (without the prefix)."""
    return [
        name.removeprefix("RECORD_KIND_")
        for name, number in ledger_pb2.RecordKind.items()
        if number != ledger_pb2.RECORD_KIND_UNSPECIFIED
    ]


def new_record(
    kind: str | int,
    body: Mapping[str, Any],
    *,
    record_id: str | None = None,
    model_name: str = "",
    model_version: str = "",
    subject: str = "",
    trace_id: str = "",
    span_id: str = "",
) -> Record:
    """A record ready to append, its body in RFC 8785 form (the ledger's fast path).

    Raises CanonicalJSONError for a body JSON cannot carry exactly (NaN, lone
    surrogates, integers beyond 2**53).
    """
    return Record(
        record_id=record_id or new_record_id(),
        kind=kind_value(kind),
        model_name=model_name,
        model_version=model_version,
        subject=subject,
        trace_id=trace_id,
        span_id=span_id,
        body_json=canonical_json(body).decode(),
    )


class RecordQuery(TypedDict, total=False):
    """Filters of QueryRecords; an absent one matches everything."""

    kind: str | int
    model_name: str
    model_version: str
    subject: str
    trace_id: str
    since: datetime | None
    until: datetime | None
    page_size: int
    newest_first: bool
    start_leaf_index: int


class LedgerClient(ServiceClient):
    """LedgerService over one channel. Use as a context manager or call close()."""

    def __init__(
        self,
        target: str,
        *,
        timeout: float = 30.0,
        auth: ClientAuth | None = None,
    ) -> None:
        super().__init__(target, timeout=timeout, auth=auth)
        self._stub = ledger_pb2_grpc.LedgerServiceStub(self._channel)

    def append(self, records: Sequence[Record], *, on_behalf_of: str = "") -> list[AppendResult]:
        """Append a batch atomically; results are in request order.

        `on_behalf_of` (the registry and the Explain service only) names the
        principal they verified, whom the ledger then records as the actor.
        """
        req = ledger_pb2.AppendRecordsRequest(records=records)
        metadata = (("mrm-on-behalf-of", on_behalf_of),) if on_behalf_of else None
        return list(self._call(self._stub.AppendRecords, req, metadata).results)

    def get_record(self, record_id: str) -> Record:
        req = ledger_pb2.GetRecordRequest(record_id=record_id)
        return self._call(self._stub.GetRecord, req).record

    def query_page(
        self, request: ledger_pb2.QueryRecordsRequest
    ) -> ledger_pb2.QueryRecordsResponse:
        """One page of QueryRecords as asked, with the ledger's continuation token
        (for callers that hand the token on, as a paged service does)."""
        return self._call(self._stub.QueryRecords, request)

    def query_pages(self, **q: Unpack[RecordQuery]) -> Iterator[Sequence[Record]]:
        """Pages of matching records; the next page is fetched while the caller
        works on the current one, so a full audit overlaps network and hashing."""
        req = ledger_pb2.QueryRecordsRequest(
            kind=kind_value(q.get("kind", 0)),
            model_name=q.get("model_name", ""),
            model_version=q.get("model_version", ""),
            subject=q.get("subject", ""),
            trace_id=q.get("trace_id", ""),
            page_size=q.get("page_size", 1000),
            newest_first=q.get("newest_first", False),
            start_leaf_index=q.get("start_leaf_index", 0),
        )
        if (since := q.get("since")) is not None:
            req.start_time.CopyFrom(timestamp(since))
        if (until := q.get("until")) is not None:
            req.end_time.CopyFrom(timestamp(until))
        future = self._stub.QueryRecords.future(req, timeout=self.timeout)
        while True:
            try:
                page = future.result()
            except grpc.RpcError as e:
                raise from_rpc_error(e) from None
            if page.next_page_token:
                req.page_token = page.next_page_token
                future = self._stub.QueryRecords.future(req, timeout=self.timeout)
            yield page.records
            if not page.next_page_token:
                return

    def query(self, **q: Unpack[RecordQuery]) -> Iterator[Record]:
        """Every record matching all the given filters, following page tokens.

        `since` is inclusive and `until` exclusive; naive datetimes are taken as UTC.
        """
        for page in self.query_pages(**q):
            yield from page

    def checkpoint(self, *, refresh: bool = False) -> Checkpoint:
        """The latest signed checkpoint; `refresh` signs one covering every leaf first."""
        req = ledger_pb2.GetCheckpointRequest(refresh=refresh)
        return self._call(self._stub.GetCheckpoint, req).checkpoint

    def list_checkpoints(self, *, page_size: int = 1000) -> Iterator[Checkpoint]:
        """Every checkpoint the ledger has signed, oldest first."""
        req = ledger_pb2.ListCheckpointsRequest(page_size=page_size)
        while True:
            page = self._call(self._stub.ListCheckpoints, req)
            yield from page.checkpoints
            if not page.next_page_token:
                return
            req.page_token = page.next_page_token

    def inclusion_proof(
        self, *, record_id: str | None = None, leaf_index: int | None = None, tree_size: int = 0
    ) -> InclusionProof:
        """The audit path of one leaf, by record id or by index (exactly one)."""
        req = ledger_pb2.GetInclusionProofRequest(tree_size=tree_size)
        if record_id is not None and leaf_index is None:
            req.record_id = record_id
        elif leaf_index is not None and record_id is None:
            req.leaf_index = leaf_index
        else:
            raise ValueError("give exactly one of record_id and leaf_index")
        return self._call(self._stub.GetInclusionProof, req)

    def inclusion_proof_future(
        self, leaf_index: int, tree_size: int
    ) -> grpc.Future[InclusionProof]:
        """Start an inclusion-proof call; `.result()` raises grpc.RpcError on failure.

        For callers that check many leaves at once (the audit's localization).
        """
        req = ledger_pb2.GetInclusionProofRequest(leaf_index=leaf_index, tree_size=tree_size)
        return self._stub.GetInclusionProof.future(req, timeout=self.timeout)

    def consistency_proof(self, old_size: int, new_size: int = 0) -> ConsistencyProof:
        """Proof that the tree of new_size (0: latest checkpoint) extends that of old_size."""
        req = ledger_pb2.GetConsistencyProofRequest(old_size=old_size, new_size=new_size)
        return self._call(self._stub.GetConsistencyProof, req)
