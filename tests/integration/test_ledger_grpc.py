"""LedgerService over real gRPC: statuses, field names, health and reflection."""

from __future__ import annotations

import json
from collections.abc import Iterator

import grpc
import pytest
from google.protobuf.timestamp_pb2 import Timestamp
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from mrm.v1 import ledger_pb2 as pb
from mrm.v1 import ledger_pb2_grpc as pbg
from tests.conftest import RunningLedger
from tests.support.auth import channel as authorized_channel
from tests.support.ledger import uuid7
from tests.support.statuses import bad_request


@pytest.fixture
def stub(ledger_server: RunningLedger) -> Iterator[pbg.LedgerServiceStub]:
    with authorized_channel(ledger_server.addr) as channel:
        yield pbg.LedgerServiceStub(channel)


def rec(**fields: object) -> pb.Record:
    base: dict[str, object] = {
        "record_id": str(uuid7()),
        "kind": pb.RECORD_KIND_PREDICTION,
        "model_name": "credit-risk",
        "body_json": '{"x": 1}',
    }
    base.update(fields)
    return pb.Record(**base)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("record", "field", "message"),
    [
        (rec(record_id="not-a-uuid"), "records[0].record_id", "is not a UUID"),
        (
            rec(record_id="6ba7b810-9dad-11d1-80b4-00c04fd430c8"),
            "records[0].record_id",
            "version 1",
        ),
        (rec(record_id=str(uuid7()).upper()), "records[0].record_id", "canonical lowercase"),
        (rec(kind=pb.RECORD_KIND_UNSPECIFIED), "records[0].kind", "is not a record kind"),
        (rec(kind=99), "records[0].kind", "is not a record kind"),
        (rec(body_json="[1, 2]"), "records[0].body_json", "not a JSON object"),
        (rec(body_json="{"), "records[0].body_json", "not a JSON object"),
        (rec(body_json=""), "records[0].body_json", "not a JSON object"),
        (rec(body_json='{"a": 1, "a": 2}'), "records[0].body_json", "not a JSON object"),
        (rec(body_json='{"a": NaN}'), "records[0].body_json", "not a JSON object"),
        (
            rec(body_json=json.dumps({"blob": "x" * (1 << 20)})),
            "records[0].body_json",
            "limit is 1048576 bytes",
        ),
        (rec(trace_id="xyz"), "records[0].trace_id", "W3C trace id"),
        (rec(trace_id="0" * 32), "records[0].trace_id", "W3C trace id"),
        (rec(span_id="00f067aa0ba902b7"), "records[0].span_id", "without a trace_id"),
        (rec(model_name="m" * 129), "records[0].model_name", "at most 128"),
        (rec(subject="a\nb"), "records[0].subject", "control characters"),
        (rec(leaf_index=4), "records[0].leaf_index", "output only"),
        (rec(actor="me"), "records[0].actor", "output only"),
    ],
)
def test_append_rejects_bad_records(
    stub: pbg.LedgerServiceStub, record: pb.Record, field: str, message: str
) -> None:
    good = rec()
    code, got_field, details = bad_request(
        lambda: stub.AppendRecords(pb.AppendRecordsRequest(records=[record, good][:1]))
    )
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert got_field == field
    assert message in details
    # Nothing of a refused batch is appended.
    assert stub.GetCheckpoint(pb.GetCheckpointRequest(refresh=True)).checkpoint.tree_size == 0


def test_batch_limits(stub: pbg.LedgerServiceStub) -> None:
    code, field, _ = bad_request(lambda: stub.AppendRecords(pb.AppendRecordsRequest()))
    assert (code, field) == (grpc.StatusCode.INVALID_ARGUMENT, "records")
    code, field, details = bad_request(
        lambda: stub.AppendRecords(pb.AppendRecordsRequest(records=[rec() for _ in range(4097)]))
    )
    assert (code, field) == (grpc.StatusCode.INVALID_ARGUMENT, "records")
    assert "at most 4096" in details
    same = rec()
    other = pb.Record()
    other.CopyFrom(same)
    other.body_json = '{"x": 2}'
    code, field, _ = bad_request(
        lambda: stub.AppendRecords(pb.AppendRecordsRequest(records=[same, other]))
    )
    assert (code, field) == (grpc.StatusCode.INVALID_ARGUMENT, "records[1].record_id")


def test_replay_with_other_content_is_already_exists(stub: pbg.LedgerServiceStub) -> None:
    first = rec()
    stub.AppendRecords(pb.AppendRecordsRequest(records=[first]))
    again = stub.AppendRecords(pb.AppendRecordsRequest(records=[first]))
    assert again.results[0].duplicate
    assert again.results[0].leaf_index == 0
    forged = pb.Record()
    forged.CopyFrom(first)
    forged.body_json = '{"x": 666}'
    code, _, details = bad_request(
        lambda: stub.AppendRecords(pb.AppendRecordsRequest(records=[forged]))
    )
    assert code == grpc.StatusCode.ALREADY_EXISTS
    assert first.record_id in details
    got = stub.GetRecord(pb.GetRecordRequest(record_id=first.record_id)).record
    assert json.loads(got.body_json) == {"x": 1}


def test_reads_validate_and_answer_not_found(stub: pbg.LedgerServiceStub) -> None:
    stub.AppendRecords(pb.AppendRecordsRequest(records=[rec(), rec()]))
    cases = [
        (
            lambda: stub.GetRecord(pb.GetRecordRequest(record_id="")),
            grpc.StatusCode.INVALID_ARGUMENT,
            "record_id",
        ),
        (
            lambda: stub.GetRecord(pb.GetRecordRequest(record_id=str(uuid7()))),
            grpc.StatusCode.NOT_FOUND,
            "",
        ),
        (
            lambda: stub.QueryRecords(pb.QueryRecordsRequest(page_size=-1)),
            grpc.StatusCode.INVALID_ARGUMENT,
            "page_size",
        ),
        (
            lambda: stub.QueryRecords(pb.QueryRecordsRequest(page_token="garbage!")),
            grpc.StatusCode.INVALID_ARGUMENT,
            "page_token",
        ),
        (
            lambda: stub.QueryRecords(pb.QueryRecordsRequest(kind=42)),  # type: ignore[arg-type]
            grpc.StatusCode.INVALID_ARGUMENT,
            "kind",
        ),
        (
            lambda: stub.GetInclusionProof(pb.GetInclusionProofRequest()),
            grpc.StatusCode.INVALID_ARGUMENT,
            "leaf",
        ),
        (
            lambda: stub.GetInclusionProof(pb.GetInclusionProofRequest(leaf_index=0, tree_size=3)),
            grpc.StatusCode.INVALID_ARGUMENT,
            "tree_size",
        ),
        (
            lambda: stub.GetInclusionProof(pb.GetInclusionProofRequest(leaf_index=7)),
            grpc.StatusCode.INVALID_ARGUMENT,
            "leaf_index",
        ),
        (
            lambda: stub.GetInclusionProof(pb.GetInclusionProofRequest(record_id=str(uuid7()))),
            grpc.StatusCode.NOT_FOUND,
            "",
        ),
        (
            lambda: stub.GetConsistencyProof(pb.GetConsistencyProofRequest(old_size=1, new_size=9)),
            grpc.StatusCode.INVALID_ARGUMENT,
            "new_size",
        ),
        (
            lambda: stub.GetConsistencyProof(pb.GetConsistencyProofRequest(old_size=2, new_size=1)),
            grpc.StatusCode.INVALID_ARGUMENT,
            "old_size",
        ),
    ]
    for call, code, field in cases:
        got_code, got_field, _ = bad_request(call)
        assert (got_code, got_field) == (code, field)


def test_uncovered_leaf_needs_a_fresh_checkpoint(stub: pbg.LedgerServiceStub) -> None:
    r = rec()
    stub.AppendRecords(pb.AppendRecordsRequest(records=[r]))
    code, _, details = bad_request(
        lambda: stub.GetInclusionProof(pb.GetInclusionProofRequest(record_id=r.record_id))
    )
    assert code == grpc.StatusCode.FAILED_PRECONDITION
    assert "not yet covered" in details
    stub.GetCheckpoint(pb.GetCheckpointRequest(refresh=True))
    proof = stub.GetInclusionProof(pb.GetInclusionProofRequest(record_id=r.record_id))
    assert proof.checkpoint.tree_size == 1
    assert proof.record.record_id == r.record_id


def test_health_and_reflection(ledger_server: RunningLedger) -> None:
    with authorized_channel(ledger_server.addr) as channel:
        health = health_pb2_grpc.HealthStub(channel)
        for name in ("", "mrm.v1.LedgerService"):
            resp = health.Check(health_pb2.HealthCheckRequest(service=name))
            assert resp.status == health_pb2.HealthCheckResponse.SERVING
        refl = reflection_pb2_grpc.ServerReflectionStub(channel)
        replies = refl.ServerReflectionInfo(
            iter([reflection_pb2.ServerReflectionRequest(list_services="")])
        )
        names = {s.name for r in replies for s in r.list_services_response.service}
        assert "mrm.v1.LedgerService" in names


def test_query_pages_through_grpc(stub: pbg.LedgerServiceStub) -> None:
    stub.AppendRecords(
        pb.AppendRecordsRequest(records=[rec(subject=f"s{i % 2}") for i in range(7)])
    )
    got: list[int] = []
    token = ""
    while True:
        page = stub.QueryRecords(
            pb.QueryRecordsRequest(subject="s1", page_size=2, page_token=token)
        )
        got += [r.leaf_index for r in page.records]
        token = page.next_page_token
        if not token:
            break
    assert got == [1, 3, 5]


def test_extreme_values_are_invalid_not_internal(stub: pbg.LedgerServiceStub) -> None:
    stub.AppendRecords(pb.AppendRecordsRequest(records=[rec()]))
    deep = "[" * 5000 + "]" * 5000
    cases = [
        (
            lambda: stub.GetInclusionProof(pb.GetInclusionProofRequest(leaf_index=2**63)),
            "leaf_index",
        ),
        (
            lambda: stub.GetInclusionProof(
                pb.GetInclusionProofRequest(leaf_index=0, tree_size=2**64 - 1)
            ),
            "tree_size",
        ),
        (
            lambda: stub.GetConsistencyProof(pb.GetConsistencyProofRequest(old_size=2**63)),
            "old_size",
        ),
        (
            lambda: stub.QueryRecords(pb.QueryRecordsRequest(start_time=Timestamp(seconds=2**62))),
            "start_time",
        ),
        (
            lambda: stub.QueryRecords(pb.QueryRecordsRequest(end_time=Timestamp(seconds=-(2**62)))),
            "end_time",
        ),
        (
            lambda: stub.QueryRecords(pb.QueryRecordsRequest(start_leaf_index=2**63)),
            "start_leaf_index",
        ),
        (lambda: stub.QueryRecords(pb.QueryRecordsRequest(subject="a\x00b")), "subject"),
        (lambda: stub.QueryRecords(pb.QueryRecordsRequest(model_name="m" * 500)), "model_name"),
        (
            lambda: stub.AppendRecords(
                pb.AppendRecordsRequest(records=[rec(body_json='{"a":' + deep + "}")])
            ),
            "records[0].body_json",
        ),
    ]
    for call, field in cases:
        assert bad_request(call)[:2] == (grpc.StatusCode.INVALID_ARGUMENT, field)
