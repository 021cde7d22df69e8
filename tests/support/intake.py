"""Append requests for the intake tests: limits, a stamp, a record strategy and
the reference batch (starts nothing)."""

from __future__ import annotations

import json

import rfc8785
from hypothesis import strategies as st

from mrm.ledger import validate
from mrm.ledger.batch import PendingBatch
from mrm.v1 import ledger_pb2 as pb
from tests.support.ledger import uuid7

LIMITS = validate.Limits(max_record_bytes=4096, max_batch=64)


STAMP = 1_764_350_000_123_456


ACTOR = 'anonymous@ipv4:127.0.0.1:5555 "quoted" \\ é'


TEXT = st.text(st.characters(codec="utf-8", exclude_categories=["Cs"]), max_size=12)


HEX32 = st.text("0123456789abcdef", min_size=32, max_size=32)


HEX16 = st.text("0123456789abcdef", min_size=16, max_size=16)


SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(-(2**53) + 1, 2**53 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | TEXT
)


JSON = st.recursive(
    SCALARS,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(TEXT, inner, max_size=3),
    max_leaves=8,
)


@st.composite
def records(draw: st.DrawFn) -> pb.Record:
    trace = draw(st.sampled_from(["", "trace"]))
    body = draw(st.dictionaries(TEXT, JSON, max_size=4))
    return pb.Record(
        record_id=str(uuid7()),
        kind=draw(st.sampled_from(list(validate.KIND_NAMES))),  # type: ignore[arg-type]
        model_name=draw(TEXT),
        model_version=draw(TEXT),
        subject=draw(TEXT),
        trace_id=draw(HEX32) if trace else "",
        span_id=draw(st.one_of(st.just(""), HEX16)) if trace else "",
        # Mostly canonical, as MRM's clients send; sometimes loosely spelled.
        body_json=(
            rfc8785.dumps(body).decode()
            if draw(st.booleans())
            else json.dumps(body, indent=draw(st.sampled_from([None, 1])))
        ),
    )


def reference(req: pb.AppendRecordsRequest) -> PendingBatch:
    return PendingBatch.from_records(validate.validate_append(req, LIMITS), ACTOR, STAMP)


def same(a: PendingBatch | None, b: PendingBatch) -> bool:
    """Equal field by field (a column may be a list or a tuple)."""
    if a is None:
        return False
    fields = PendingBatch.__dataclass_fields__
    plain = [
        [list(v) if isinstance(v, tuple | list) else v for v in (getattr(x, f) for f in fields)]
        for x in (a, b)
    ]
    return plain[0] == plain[1]
