"""The leaf envelope equals RFC 8785 applied to the whole record, computed independently."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import rfc8785
from hypothesis import given, settings
from hypothesis import strategies as st

from mrm.tlog.canonical import canonical_json
from mrm.tlog.leaf import format_timestamp, leaf_bytes

text = st.text(max_size=20)
bodies = st.dictionaries(
    st.text(max_size=8),
    st.one_of(st.none(), st.booleans(), st.integers(-(2**53) + 1, 2**53 - 1), text),
    max_size=6,
)


@settings(max_examples=300, deadline=None)
@given(
    fields=st.fixed_dictionaries(
        {
            "record_id": text,
            "kind": st.sampled_from(["PREDICTION", "GAP", "DEPLOYMENT"]),
            "model_name": text,
            "model_version": text,
            "subject": text,
            "trace_id": text,
            "span_id": text,
            "actor": text,
        }
    ),
    body=bodies,
    micros=st.integers(0, 4_000_000_000_000_000),
)
def test_leaf_is_the_canonical_json_of_the_record(
    fields: dict[str, str], body: dict[str, object], micros: int
) -> None:
    record: dict[str, object] = {
        **fields,
        "body": body,
        "recorded_at": (datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=micros)).strftime(
            "%Y-%m-%dT%H:%M:%S.%fZ"
        ),
        "v": 1,
    }
    expected = rfc8785.dumps(record)  # type: ignore[arg-type]
    got = leaf_bytes(body_canonical=canonical_json(body).decode(), recorded_at_us=micros, **fields)
    assert got == expected


def test_timestamp_format() -> None:
    assert format_timestamp(0) == "1970-01-01T00:00:00.000000Z"
    assert format_timestamp(1_795_886_923_000_001) == "2026-11-28T17:28:43.000001Z"
