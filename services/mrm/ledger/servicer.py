"""The LedgerService gRPC adapter: protobuf in, domain call, protobuf out."""

from __future__ import annotations

import asyncio

import grpc

from mrm.client.timestamps import timestamp_us
from mrm.core.auth import acting
from mrm.core.auth.policy import appendable
from mrm.core.errors import PermissionDenied
from mrm.kernel.clock import now_us
from mrm.ledger import validate
from mrm.ledger.batch import Sequenced
from mrm.ledger.pool import IntakePool
from mrm.ledger.records import SignedCheckpoint, StoredRecord
from mrm.ledger.service import Ledger
from mrm.v1 import ledger_pb2, ledger_pb2_grpc

Context = grpc.aio.ServicerContext[object, object]


_KIND_VALUES = {
    name.removeprefix("RECORD_KIND_"): value for name, value in ledger_pb2.RecordKind.items()
}


def record_pb(rec: StoredRecord) -> ledger_pb2.Record:
    return ledger_pb2.Record(
        record_id=str(rec.record_id),
        kind=_KIND_VALUES[rec.kind],
        model_name=rec.model_name,
        model_version=rec.model_version,
        subject=rec.subject,
        trace_id=rec.trace_id,
        span_id=rec.span_id,
        body_json=rec.body,
        leaf_index=rec.leaf_index,
        recorded_at=timestamp_us(rec.recorded_at_us),
        actor=rec.actor,
        leaf_hash=rec.leaf_hash,
    )


def _append_response(placed: Sequenced) -> ledger_pb2.AppendRecordsResponse:
    """One result per record, in request order; a replay reports its original leaf."""
    batch = placed.batch
    response = ledger_pb2.AppendRecordsResponse()
    add = response.results.add
    stamp = timestamp_us(batch.recorded_at_us)
    for record_id, index, leaf_hash in zip(
        batch.record_ids, placed.leaf_indexes, batch.leaf_hashes, strict=True
    ):
        add(record_id=record_id, leaf_index=index, leaf_hash=leaf_hash, recorded_at=stamp)
    for i, original in placed.originals.items():
        result = response.results[i]
        result.leaf_hash = original.leaf_hash
        result.recorded_at.CopyFrom(timestamp_us(original.recorded_at_us))
        result.duplicate = True
    return response


class LedgerServicer(ledger_pb2_grpc.LedgerServiceServicer):
    """Thin transport over `Ledger`; storage work runs in worker threads."""

    def __init__(self, ledger: Ledger, intake: IntakePool, on_append: asyncio.Event) -> None:
        self.ledger = ledger
        self.intake = intake
        self._sign_wanted = on_append

    def _checkpoint_pb(self, cp: SignedCheckpoint) -> ledger_pb2.Checkpoint:
        return ledger_pb2.Checkpoint(
            origin=self.ledger.origin,
            tree_size=cp.tree_size,
            root_hash=cp.root_hash,
            note=cp.note,
            signed_at=timestamp_us(cp.signed_at_us),
            verifier_key=self.ledger.verifier_key,
        )

    async def append_serialized(
        self, data: bytes, context: Context
    ) -> ledger_pb2.AppendRecordsResponse:
        """AppendRecords as registered: the request arrives as wire bytes, so it is
        parsed (with validation and hashing) where the intake runs, maybe another process."""
        who = acting()
        batch = await self.intake.prepare(data, who.actor, now_us())
        allowed = appendable(who.principal.roles)
        if not batch.kinds <= allowed:
            refused = ", ".join(sorted(batch.kinds - allowed))
            raise PermissionDenied(
                f"{who.principal.describe()} may not append {refused} records"
                + (f" (it may append {', '.join(sorted(allowed))})" if allowed else "")
                + "; nothing of the batch was appended"
            )
        placed = await asyncio.wrap_future(self.ledger.submit(batch))
        if self.ledger.checkpoint_due():
            self._sign_wanted.set()
        return _append_response(placed)

    async def AppendRecords(
        self, request: ledger_pb2.AppendRecordsRequest, context: Context
    ) -> ledger_pb2.AppendRecordsResponse:
        return await self.append_serialized(request.SerializeToString(), context)

    async def GetRecord(
        self, request: ledger_pb2.GetRecordRequest, context: Context
    ) -> ledger_pb2.GetRecordResponse:
        record_id = validate.validate_get_record(request)
        rec = await asyncio.to_thread(self.ledger.get, record_id)
        return ledger_pb2.GetRecordResponse(record=record_pb(rec))

    async def QueryRecords(
        self, request: ledger_pb2.QueryRecordsRequest, context: Context
    ) -> ledger_pb2.QueryRecordsResponse:
        flt = validate.validate_query(request)
        size = validate.page_size(request.page_size, 100)
        page = await asyncio.to_thread(
            lambda: self.ledger.query(
                flt,
                page_token=request.page_token,
                page_size=size,
                newest_first=request.newest_first,
            )
        )
        return ledger_pb2.QueryRecordsResponse(
            records=[record_pb(r) for r in page.records], next_page_token=page.next_token
        )

    async def GetCheckpoint(
        self, request: ledger_pb2.GetCheckpointRequest, context: Context
    ) -> ledger_pb2.GetCheckpointResponse:
        cp = await asyncio.to_thread(self.ledger.latest_checkpoint, refresh=request.refresh)
        return ledger_pb2.GetCheckpointResponse(checkpoint=self._checkpoint_pb(cp))

    async def ListCheckpoints(
        self, request: ledger_pb2.ListCheckpointsRequest, context: Context
    ) -> ledger_pb2.ListCheckpointsResponse:
        size = validate.page_size(request.page_size, 1000)
        cps, token = await asyncio.to_thread(
            lambda: self.ledger.list_checkpoints(page_token=request.page_token, page_size=size)
        )
        return ledger_pb2.ListCheckpointsResponse(
            checkpoints=[self._checkpoint_pb(c) for c in cps], next_page_token=token
        )

    async def GetInclusionProof(
        self, request: ledger_pb2.GetInclusionProofRequest, context: Context
    ) -> ledger_pb2.GetInclusionProofResponse:
        record_id, leaf_index = validate.validate_inclusion(request)
        proof = await asyncio.to_thread(
            lambda: self.ledger.inclusion_proof(
                record_id=record_id, leaf_index=leaf_index, tree_size=request.tree_size
            )
        )
        return ledger_pb2.GetInclusionProofResponse(
            leaf_index=proof.leaf_index,
            tree_size=proof.tree_size,
            leaf_hash=proof.leaf_hash,
            inclusion_path=proof.path,
            root_hash=proof.root_hash,
            checkpoint=self._checkpoint_pb(proof.checkpoint) if proof.checkpoint else None,
            record=record_pb(proof.record),
        )

    async def GetConsistencyProof(
        self, request: ledger_pb2.GetConsistencyProofRequest, context: Context
    ) -> ledger_pb2.GetConsistencyProofResponse:
        old_size, new_size = validate.validate_consistency(request)
        proof = await asyncio.to_thread(self.ledger.consistency_proof, old_size, new_size)
        return ledger_pb2.GetConsistencyProofResponse(
            old_size=proof.old_size,
            new_size=proof.new_size,
            old_root=proof.old_root,
            new_root=proof.new_root,
            consistency_path=proof.path,
        )


def register(servicer: LedgerServicer, server: grpc.aio.Server) -> None:
    """`add_LedgerServiceServicer_to_server`, except that AppendRecords gets the
    request's bytes undecoded (see LedgerServicer.append_serialized)."""
    service = ledger_pb2.DESCRIPTOR.services_by_name["LedgerService"]
    handlers = {}
    for method in service.methods:
        request_type = getattr(ledger_pb2, method.input_type.name)
        response_type = getattr(ledger_pb2, method.output_type.name)
        handlers[method.name] = grpc.unary_unary_rpc_method_handler(
            getattr(servicer, method.name),
            request_deserializer=request_type.FromString,
            response_serializer=response_type.SerializeToString,
        )
    handlers["AppendRecords"] = grpc.unary_unary_rpc_method_handler(
        servicer.append_serialized,
        request_deserializer=None,  # bytes as received
        response_serializer=ledger_pb2.AppendRecordsResponse.SerializeToString,
    )
    server.add_generic_rpc_handlers(
        (grpc.method_handlers_generic_handler(service.full_name, handlers),)
    )
    server.add_registered_method_handlers(service.full_name, handlers)
