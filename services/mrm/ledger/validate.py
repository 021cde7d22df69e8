"""One validator per LedgerService request: protobuf in, domain values out.

Every rejection names the field, what it holds and what was expected. The
rules on a record's columns are public (`RECORD_ID`, `TRACE_ID`, `SPAN_ID`,
`CONTROL_CHARS`, `TEXT_LIMITS`, `KIND_NAMES`): `validate_append` applies them
record by record and is the reference; mrm.ledger.intake applies the same
rules a whole column at a time on the append path, and defers to
`validate_append` for anything it does not accept as is.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from typing import Literal

from google.protobuf.timestamp_pb2 import Timestamp

from mrm.core.errors import InvalidArgument, parse_field
from mrm.kernel import ids
from mrm.ledger.records import RECORD_KINDS, NewRecord, RecordFilter
from mrm.tlog.canonical import CanonicalJSONError, canonicalize_json_object
from mrm.v1 import ledger_pb2

TRACE_ID = re.compile(r"[0-9a-f]{32}")
"""A W3C trace id (and not all zeros)."""
SPAN_ID = re.compile(r"[0-9a-f]{16}")
"""A W3C span id (and not all zeros)."""
CONTROL_CHARS = re.compile(r"[\x00-\x1f\x7f]")
"""What no short text column may hold."""
_MAX_PAGE = 10_000
_MAX_INDEX = 2**63 - 1
_MIN_SECONDS = -62_135_596_800  # 0001-01-01T00:00:00Z
_MAX_SECONDS = 253_402_300_799  # 9999-12-31T23:59:59Z
TEXT_LIMITS = {"model_name": 128, "model_version": 64, "subject": 128}
"""The longest value, in characters, of each short text column."""


@dataclass(frozen=True)
class Limits:
    max_record_bytes: int
    max_batch: int


def _show(value: str, width: int = 40) -> str:
    return repr(value if len(value) <= width else value[:width] + "…")


RECORD_ID = ids.UUID7_RE
"""A UUIDv7 in canonical lowercase form."""


def parse_record_id(value: str, field: str) -> uuid.UUID:
    """A UUIDv7 in canonical lowercase form (mrm.kernel.ids)."""
    if RECORD_ID.fullmatch(value):
        return uuid.UUID(value)
    return parse_field(field, ids.parse_record_id, value)


KIND_NAMES: dict[int, str] = {
    value: name.removeprefix("RECORD_KIND_")
    for name, value in ledger_pb2.RecordKind.items()
    if name.removeprefix("RECORD_KIND_") in RECORD_KINDS
}
"""RecordKind value → the kind's leaf spelling, for the kinds a record may have."""


def _kind(value: int, field: str, *, allow_unspecified: bool) -> str:
    if value == ledger_pb2.RECORD_KIND_UNSPECIFIED and allow_unspecified:
        return ""
    kind = KIND_NAMES.get(value)
    if kind is None:
        raise InvalidArgument(
            field, f"{value} is not a record kind (want one of {', '.join(RECORD_KINDS)})"
        )
    return kind


def _short_text(value: str, field: str, limit: int) -> str:
    if not value:
        return value
    if len(value) > limit:
        raise InvalidArgument(field, f"is {len(value)} characters long (at most {limit})")
    if CONTROL_CHARS.search(value):
        raise InvalidArgument(field, f"{_show(value)} contains control characters")
    return value


def _trace(record: ledger_pb2.Record, prefix: str) -> tuple[str, str]:
    trace_id, span_id = record.trace_id, record.span_id
    # fullmatch: `$` would also accept a trailing newline.
    if trace_id and (not TRACE_ID.fullmatch(trace_id) or trace_id == "0" * 32):
        raise InvalidArgument(
            f"{prefix}.trace_id",
            f"{_show(trace_id)} is not a W3C trace id (32 lowercase hex, not all zero)",
        )
    if span_id and (not SPAN_ID.fullmatch(span_id) or span_id == "0" * 16):
        raise InvalidArgument(
            f"{prefix}.span_id",
            f"{_show(span_id)} is not a W3C span id (16 lowercase hex, not all zero)",
        )
    if span_id and not trace_id:
        raise InvalidArgument(f"{prefix}.span_id", "is set without a trace_id")
    return trace_id, span_id


def _body(value: str, field: str, limit: int) -> str:
    if len(value) > 4 * limit:  # cheap early refusal before parsing a huge body
        raise InvalidArgument(field, f"is larger than the {limit}-byte record limit")
    try:
        canonical = canonicalize_json_object(value)
    except CanonicalJSONError as exc:
        raise InvalidArgument(field, f"is not a JSON object: {exc}") from None
    size = len(canonical.encode())
    if size > limit:
        raise InvalidArgument(
            field, f"is {size} bytes once canonicalized (the limit is {limit} bytes)"
        )
    return canonical


def _has_output_only(record: ledger_pb2.Record) -> str | None:
    if not (record.leaf_index or record.actor or record.leaf_hash):
        return "recorded_at" if record.HasField("recorded_at") else None
    return next(n for n in ("leaf_index", "actor", "leaf_hash") if getattr(record, n))


def validate_append(req: ledger_pb2.AppendRecordsRequest, limits: Limits) -> list[NewRecord]:
    n = len(req.records)
    if n == 0:
        raise InvalidArgument("records", f"is empty (send 1 to {limits.max_batch} records)")
    if n > limits.max_batch:
        raise InvalidArgument("records", f"has {n} records (at most {limits.max_batch} per call)")
    out: list[NewRecord] = []
    first: dict[uuid.UUID, NewRecord] = {}
    for i, rec in enumerate(req.records):
        p = f"records[{i}]"
        if (name := _has_output_only(rec)) is not None:
            raise InvalidArgument(f"{p}.{name}", "is output only; leave it unset")
        trace_id, span_id = _trace(rec, p)
        new = NewRecord(
            record_id=parse_record_id(rec.record_id, f"{p}.record_id"),
            kind=_kind(rec.kind, f"{p}.kind", allow_unspecified=False),
            model_name=_short_text(rec.model_name, f"{p}.model_name", TEXT_LIMITS["model_name"]),
            model_version=_short_text(
                rec.model_version, f"{p}.model_version", TEXT_LIMITS["model_version"]
            ),
            subject=_short_text(rec.subject, f"{p}.subject", TEXT_LIMITS["subject"]),
            trace_id=trace_id,
            span_id=span_id,
            body=_body(rec.body_json, f"{p}.body_json", limits.max_record_bytes),
            record_id_text=rec.record_id,
        )
        earlier = first.setdefault(new.record_id, new)
        if earlier is not new and earlier != new:
            raise InvalidArgument(
                f"{p}.record_id",
                f"{new.record_id} appears twice in the batch with different content",
            )
        out.append(new)
    return out


def validate_get_record(req: ledger_pb2.GetRecordRequest) -> uuid.UUID:
    return parse_record_id(req.record_id, "record_id")


def _micros(ts: Timestamp) -> int:
    return ts.seconds * 1_000_000 + ts.nanos // 1000


def page_size(value: int, default: int) -> int:
    if value < 0 or value > _MAX_PAGE:
        raise InvalidArgument("page_size", f"{value} is out of range (want 0 to {_MAX_PAGE})")
    return value or default


def _time(
    req: ledger_pb2.QueryRecordsRequest, field: Literal["start_time", "end_time"]
) -> int | None:
    if not req.HasField(field):
        return None
    ts: Timestamp = getattr(req, field)
    if not _MIN_SECONDS <= ts.seconds <= _MAX_SECONDS or not 0 <= ts.nanos < 1_000_000_000:
        raise InvalidArgument(field, "is outside 0001-01-01..9999-12-31 (a valid Timestamp)")
    return _micros(ts)


def validate_query(req: ledger_pb2.QueryRecordsRequest) -> RecordFilter:
    flt = RecordFilter(
        kind=_kind(req.kind, "kind", allow_unspecified=True),
        model_name=_short_text(req.model_name, "model_name", TEXT_LIMITS["model_name"]),
        model_version=_short_text(req.model_version, "model_version", TEXT_LIMITS["model_version"]),
        subject=_short_text(req.subject, "subject", TEXT_LIMITS["subject"]),
        trace_id=_short_text(req.trace_id, "trace_id", 32),
        start_us=_time(req, "start_time"),
        end_us=_time(req, "end_time"),
        start_leaf=tree_size(req.start_leaf_index, "start_leaf_index"),
    )
    if flt.start_us is not None and flt.end_us is not None and flt.end_us < flt.start_us:
        raise InvalidArgument("end_time", "is before start_time")
    return flt


def tree_size(value: int, field: str) -> int:
    """Sizes and indexes are uint64 on the wire; storage counts in signed 64 bits."""
    if value > _MAX_INDEX:
        raise InvalidArgument(field, f"{value} is beyond any tree size (at most {_MAX_INDEX})")
    return value


def validate_inclusion(
    req: ledger_pb2.GetInclusionProofRequest,
) -> tuple[uuid.UUID | None, int | None]:
    tree_size(req.tree_size, "tree_size")
    which = req.WhichOneof("leaf")
    if which == "record_id":
        return parse_record_id(req.record_id, "record_id"), None
    if which == "leaf_index":
        return None, tree_size(req.leaf_index, "leaf_index")
    raise InvalidArgument("leaf", "is required: set record_id or leaf_index")


def validate_consistency(req: ledger_pb2.GetConsistencyProofRequest) -> tuple[int, int]:
    return tree_size(req.old_size, "old_size"), tree_size(req.new_size, "new_size")
