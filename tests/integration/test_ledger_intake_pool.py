"""AppendRecords with MRM_LEDGER_APPEND_WORKERS: requests parsed and hashed in worker processes."""

from __future__ import annotations

import multiprocessing
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from mrm.tlog.leaf import leaf_bytes_from_proto
from mrm.tlog.merkle import leaf_hash
from mrm.v1 import ledger_pb2 as pb
from mrm.v1 import ledger_pb2_grpc as pbg
from tests.conftest import RunningLedger, start_ledger
from tests.support.auth import channel as authorized_channel
from tests.support.ledger import uuid7
from tests.support.statuses import bad_request


@pytest.fixture
def running_stack_pg_append_worker(tmp_path: Path, pg_url: str) -> Iterator[RunningLedger]:
    """The whole stack on PostgreSQL, appending through one worker process."""
    running = start_ledger(tmp_path / "home", pg_url, ledger_append_workers=1)
    yield running
    running.stack.stop()


def batch(n: int, **fields: object) -> pb.AppendRecordsRequest:
    return pb.AppendRecordsRequest(
        records=[
            pb.Record(
                record_id=str(uuid7()),
                kind=pb.RECORD_KIND_PREDICTION,
                model_name="credit-risk",
                subject='é "quoted" \\',
                body_json=f'{{"i":{i},"p":[0.25,0.75]}}',
                **fields,  # type: ignore[arg-type]
            )
            for i in range(n)
        ]
    )


def test_appends_replays_and_refusals_through_workers(
    running_stack_pg_append_worker: RunningLedger,
) -> None:
    with authorized_channel(running_stack_pg_append_worker.addr) as channel:
        stub = pbg.LedgerServiceStub(channel)
        req = batch(20)
        first = stub.AppendRecords(req)
        assert [r.leaf_index for r in first.results] == list(range(20))
        assert not any(r.duplicate for r in first.results)
        replay = stub.AppendRecords(
            pb.AppendRecordsRequest(records=[*req.records[5:7], *batch(1).records])
        )
        assert [r.duplicate for r in replay.results] == [True, True, False]
        assert [r.leaf_index for r in replay.results] == [5, 6, 20]
        assert replay.results[0].recorded_at == first.results[5].recorded_at
        for sent, got in zip(req.records, first.results, strict=True):
            stored = stub.GetRecord(pb.GetRecordRequest(record_id=sent.record_id)).record
            assert stored.subject == sent.subject
            assert leaf_hash(leaf_bytes_from_proto(stored)) == got.leaf_hash
        # Refusals cross the process boundary with the field named.
        code, field, message = bad_request(lambda: stub.AppendRecords(batch(2, trace_id="not-hex")))
        assert code == grpc.StatusCode.INVALID_ARGUMENT
        assert field == "records[0].trace_id"
        assert "W3C trace id" in message
        raw: grpc.UnaryUnaryMultiCallable[bytes, bytes] = channel.unary_unary(
            "/mrm.v1.LedgerService/AppendRecords"
        )
        code, field, _ = bad_request(lambda: raw(b"\xff\xff\xff"))
        assert (code, field) == (grpc.StatusCode.INVALID_ARGUMENT, "request")
        other = pb.Record()
        other.CopyFrom(req.records[0])
        other.body_json = '{"forged":true}'
        with pytest.raises(grpc.RpcError) as caught:
            stub.AppendRecords(pb.AppendRecordsRequest(records=[other]))
        assert caught.value.code() == grpc.StatusCode.ALREADY_EXISTS
        size = stub.GetCheckpoint(pb.GetCheckpointRequest(refresh=True)).checkpoint.tree_size
        assert size == 21


def test_a_killed_worker_loses_no_acknowledged_record(
    running_stack_pg_append_worker: RunningLedger,
) -> None:
    with authorized_channel(running_stack_pg_append_worker.addr) as channel:
        stub = pbg.LedgerServiceStub(channel)
        acknowledged = [r.record_id for r in stub.AppendRecords(batch(10)).results]
        workers = multiprocessing.active_children()
        assert workers, "the pool's worker should be a child of this process"
        for worker in workers:
            os.kill(worker.pid or 0, signal.SIGKILL)
        codes = []
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                out = stub.AppendRecords(batch(5), timeout=30)
            except grpc.RpcError as exc:
                codes.append(exc.code())
                continue
            acknowledged += [r.record_id for r in out.results]
            break
        else:
            pytest.fail("appends never recovered after the worker died")
        # The call that met the dead worker was refused as retryable, not lost.
        assert codes
        assert set(codes) == {grpc.StatusCode.UNAVAILABLE}
        for record_id in acknowledged:
            stub.GetRecord(pb.GetRecordRequest(record_id=record_id))  # NOT_FOUND would raise
        size = stub.GetCheckpoint(pb.GetCheckpointRequest(refresh=True)).checkpoint.tree_size
        assert size == len(acknowledged)
