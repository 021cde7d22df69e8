"""The column-wise intake against the record-by-record reference validator.

The fast path may decline a batch (the reference then decides), but whatever
it accepts must be exactly what the reference makes of it: same columns, same
leaf hashes, same COPY rows. And every refusal must be the reference's.
"""

from __future__ import annotations

import hmac
import json
import pickle
import uuid
from typing import Any

import pytest
import rfc8785
from hypothesis import given, settings
from hypothesis import strategies as st

from mrm.core.errors import InvalidArgument
from mrm.ledger import intake, validate
from mrm.ledger.batch import PendingBatch
from mrm.ledger.seal import Sealer, seal
from mrm.tlog.canonical import already_canonical_object
from mrm.tlog.merkle import leaf_hash
from mrm.v1 import ledger_pb2 as pb
from tests.support.intake import (
    ACTOR,
    JSON,
    LIMITS,
    STAMP,
    TEXT,
    records,
    reference,
    same,
)
from tests.support.ledger import uuid7


def refusal(call: Any) -> tuple[str, str]:
    with pytest.raises(InvalidArgument) as caught:
        call()
    return caught.value.field, caught.value.description


@settings(max_examples=300, deadline=None)
@given(st.lists(records(), min_size=1, max_size=6))
def test_the_fast_path_accepts_only_what_the_reference_makes_the_same(
    recs: list[pb.Record],
) -> None:
    req = pb.AppendRecordsRequest(records=recs)
    try:
        want: PendingBatch | tuple[str, str] = reference(req)
    except InvalidArgument as exc:
        want = (exc.field, exc.description)
    fast = intake.prepare_fast(req, LIMITS, ACTOR, STAMP)
    if isinstance(want, tuple):
        assert fast is None
        assert refusal(lambda: intake.prepare_append(req, LIMITS, ACTOR, STAMP)) == want
        return
    if fast is not None:
        assert same(fast, want)
    got = intake.prepare_append(req, LIMITS, ACTOR, STAMP)
    assert same(got, want)
    for i in range(len(got)):
        assert got.leaf_hashes[i] == leaf_hash(got.record(i, i).leaf_bytes())


def test_client_records_take_the_fast_path() -> None:
    req = pb.AppendRecordsRequest(
        records=[
            pb.Record(
                record_id=str(uuid7()),
                kind=pb.RECORD_KIND_PREDICTION,
                model_name="credit-risk",
                trace_id="4bf92f3577b34da6a3ce929d0e0e4736",
                span_id="00f067aa0ba902b7",
                body_json='{"inputs":{"age":41,"income":52000.5},"label":1}',
            )
            for _ in range(3)
        ]
    )
    fast = intake.prepare_fast(req, LIMITS, ACTOR, STAMP)
    assert same(fast, reference(req))


TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"


def rec(**fields: Any) -> pb.Record:
    base: dict[str, Any] = {
        "record_id": str(uuid7()),
        "kind": pb.RECORD_KIND_PREDICTION,
        "body_json": '{"x":1}',
    }
    base.update(fields)
    return pb.Record(**base)


@pytest.mark.parametrize(
    "bad",
    [
        rec(record_id="not-a-uuid"),
        rec(record_id=str(uuid.uuid4())),
        rec(record_id=str(uuid7()) + "\n" + str(uuid7())),
        rec(record_id=str(uuid7()).upper()),
        rec(kind=0),
        rec(kind=999),
        rec(model_name="x" * 129),
        rec(subject="tab\there"),
        rec(model_version="v\n1"),
        rec(trace_id=TRACE + "\n" + TRACE),  # one value posing as two lines
        rec(trace_id=TRACE + "\n"),  # a regex `$` would let the newline through
        rec(trace_id=TRACE, span_id="00f067aa0ba902b7\n"),
        rec(trace_id="0" * 32),
        rec(trace_id=TRACE.upper()),
        rec(span_id="00f067aa0ba902b7"),  # a span without a trace
        rec(trace_id=TRACE, span_id="0" * 16),
        rec(body_json="[1]"),
        rec(body_json='{"a":1,"a":1}'),
        rec(body_json='{"a":' + "1" * 5000 + "}"),
        rec(body_json='{"big":"' + "x" * 5000 + '"}'),
        rec(leaf_index=3),
        rec(actor="me"),
        rec(leaf_hash=b"x"),
    ],
)
def test_refusals_are_the_reference_refusals(bad: pb.Record) -> None:
    req = pb.AppendRecordsRequest(records=[rec(), bad])
    want = refusal(lambda: validate.validate_append(req, LIMITS))
    assert intake.prepare_fast(req, LIMITS, ACTOR, STAMP) is None
    assert refusal(lambda: intake.prepare_append(req, LIMITS, ACTOR, STAMP)) == want
    assert want[0].startswith("records[1].")


def test_batch_size_limits_are_the_reference_refusals() -> None:
    for n in (0, LIMITS.max_batch + 1):
        req = pb.AppendRecordsRequest(records=[rec() for _ in range(n)])
        want = refusal(lambda: validate.validate_append(req, LIMITS))  # noqa: B023
        assert refusal(lambda: intake.prepare_append(req, LIMITS, ACTOR, STAMP)) == want  # noqa: B023


def test_a_replayed_id_in_one_batch_goes_to_the_reference() -> None:
    first = rec()
    same = pb.AppendRecordsRequest(records=[first, first])
    assert intake.prepare_fast(same, LIMITS, ACTOR, STAMP) is None
    assert not intake.prepare_append(same, LIMITS, ACTOR, STAMP).unique
    other = pb.AppendRecordsRequest(records=[first, rec(record_id=first.record_id, subject="x")])
    field, message = refusal(lambda: intake.prepare_append(other, LIMITS, ACTOR, STAMP))
    assert field == "records[1].record_id"
    assert "twice" in message


def test_serialized_requests_and_garbage() -> None:
    req = pb.AppendRecordsRequest(records=[rec(), rec()])
    got = intake.prepare_serialized(req.SerializeToString(), LIMITS, ACTOR, STAMP)
    assert isinstance(got, PendingBatch)
    assert same(got, reference(req))
    garbage = intake.prepare_serialized(b"\xff\xff\xff", LIMITS, ACTOR, STAMP)
    assert isinstance(garbage, tuple)
    assert garbage[0] == "request"
    bad = pb.AppendRecordsRequest(records=[rec(kind=999)]).SerializeToString()
    assert intake.prepare_serialized(bad, LIMITS, ACTOR, STAMP) == (
        "records[0].kind",
        refusal(lambda: validate.validate_append(pb.AppendRecordsRequest.FromString(bad), LIMITS))[
            1
        ],
    )


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(TEXT, JSON, max_size=5), st.sampled_from([None, 0, 1]))
def test_already_canonical_means_the_reference_form(value: dict[str, Any], indent: Any) -> None:
    want = rfc8785.dumps(value)
    spelled = [want, json.dumps(value, indent=indent).encode()]
    for text in spelled:
        assert already_canonical_object(text) <= (text == want)


@settings(max_examples=200, deadline=None)
@given(st.binary(min_size=0, max_size=100), st.integers(0, 2**63 - 1), st.binary(min_size=32))
def test_sealer_is_hmac_sha256(key: bytes, index: int, h: bytes) -> None:
    sealer = Sealer(key)
    assert sealer.seal(index, h) == seal(key, index, h)
    assert sealer.seal(index, h) == hmac.digest(key, index.to_bytes(8, "big") + h, "sha256")
    assert sealer.ok(index, h, seal(key, index, h))
    assert not sealer.ok(index + 1, h, seal(key, index, h))


def test_a_batch_crosses_a_process_boundary_without_its_contents() -> None:
    req = pb.AppendRecordsRequest(records=[rec(subject="ü"), rec(model_name="m")])
    data = req.SerializeToString()
    made = intake.prepare_serialized(data, LIMITS, ACTOR, STAMP)
    assert isinstance(made, PendingBatch)
    sent = pickle.dumps(made)
    assert len(sent) < len(pickle.dumps(reference(req)))  # the content columns stay behind
    back = pickle.loads(sent)
    back.contents.rebuilt_from(data)
    assert same(back, reference(req))
    assert back.record(0, 7) == reference(req).record(0, 7)
