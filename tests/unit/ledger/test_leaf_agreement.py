"""The server and the verifier agree on every leaf.

The ledger hashes a batch with `mrm.tlog.leaf.batch_leaf_bytes`; an auditor
re-derives each leaf from what the ledger returns, with `leaf_bytes_from_proto`.
For any records, the two must produce the same bytes, or an honest log fails
its audit.
"""

from __future__ import annotations

import pickle
import uuid

import rfc8785
from hypothesis import given, settings
from hypothesis import strategies as st

from mrm.ledger import intake
from mrm.ledger.batch import PendingBatch
from mrm.ledger.postgres import copy_rows
from mrm.ledger.records import RECORD_KINDS, NewRecord
from mrm.ledger.servicer import record_pb
from mrm.tlog.leaf import batch_leaf_bytes, leaf_bytes, leaf_bytes_from_proto
from mrm.tlog.merkle import leaf_hash
from mrm.v1 import ledger_pb2 as pb
from tests.support.intake import ACTOR, LIMITS, STAMP, records, reference, same
from tests.support.ledger import uuid7

_ANY_TEXT = st.text(max_size=10)  # escapes, control characters, astral planes
_JSON_TEXT = st.text(st.characters(codec="utf-8", exclude_categories=["Cs"]), max_size=8)
_BODY = st.dictionaries(
    _JSON_TEXT, st.integers(-(2**53) + 1, 2**53 - 1) | _JSON_TEXT | st.booleans(), max_size=4
)


@st.composite
def new_records(draw: st.DrawFn) -> NewRecord:
    text = st.text(st.characters(codec="utf-8", exclude_categories=["Cs"]), max_size=10)
    return NewRecord(
        record_id=uuid7(),
        kind=draw(st.sampled_from(RECORD_KINDS)),
        model_name=draw(text),
        model_version=draw(text),
        subject=draw(text),
        trace_id=draw(text),
        span_id=draw(text),
        body=rfc8785.dumps(draw(_BODY)).decode(),
    )


@settings(max_examples=300, deadline=None)
@given(
    st.lists(new_records(), min_size=1, max_size=6),
    st.text(st.characters(codec="utf-8", exclude_categories=["Cs"]), max_size=12),
    st.integers(0, 253_402_300_799_999_999),
)
def test_the_servers_leaves_are_the_verifiers(
    recs: list[NewRecord], actor: str, stamp: int
) -> None:
    batch = PendingBatch.from_records(recs, actor, stamp)
    for i, rec in enumerate(recs):
        stored = batch.record(i, i)
        verifier = leaf_bytes_from_proto(record_pb(stored))
        assert verifier == stored.leaf_bytes()
        assert batch.leaf_hashes[i] == leaf_hash(verifier)
        assert str(stored.record_id) == str(rec.record_id)


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.tuples(*[_ANY_TEXT] * 8), min_size=1, max_size=5), _ANY_TEXT, st.integers(0, 2**53)
)
def test_batch_leaves_are_leaf_bytes(rows: list[tuple[str, ...]], actor: str, stamp: int) -> None:
    ids, kinds, names, versions, subjects, traces, spans, bodies = zip(*rows, strict=True)
    each = [
        leaf_bytes(
            record_id=r[0],
            kind=r[1],
            model_name=r[2],
            model_version=r[3],
            subject=r[4],
            trace_id=r[5],
            span_id=r[6],
            body_canonical=r[7],
            recorded_at_us=stamp,
            actor=actor,
        )
        for r in rows
    ]
    together = batch_leaf_bytes(
        record_ids=ids,
        kinds=kinds,
        model_names=names,
        model_versions=versions,
        subjects=subjects,
        trace_ids=traces,
        span_ids=spans,
        bodies_canonical=bodies,
        recorded_at_us=stamp,
        actor=actor,
    )
    assert list(together) == each


@settings(max_examples=200, deadline=None)
@given(st.lists(records(), min_size=1, max_size=6))
def test_the_intake_encodes_the_rows_the_reference_encodes(recs: list[pb.Record]) -> None:
    """With PostgreSQL's encoding, in process or across a process boundary."""
    req = pb.AppendRecordsRequest(records=recs)
    try:
        want = reference(req)
    except Exception:
        return  # refusals: see test_intake
    want.rows = copy_rows(want, [b.encode() for b in want.contents.columns()[-1]])
    assert same(intake.prepare_append(req, LIMITS, ACTOR, STAMP, copy_rows), want)
    data = req.SerializeToString()
    sent = intake.prepare_serialized(data, LIMITS, ACTOR, STAMP, copy_rows)
    back = pickle.loads(pickle.dumps(sent))
    assert isinstance(back, PendingBatch)
    back.contents.rebuilt_from(data)
    assert same(back, want)
    assert back.rows is not None
    assert all(
        row[4:20] == uuid.UUID(r.record_id).bytes for row, r in zip(back.rows, recs, strict=True)
    )
