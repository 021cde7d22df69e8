"""AppendRecordsRequest → PendingBatch, checking whole columns at once.

`validate_append` checks one record at a time and names the first
field that is wrong. That is the reference, but per-record Python work is what
bounds the append rate. Here each rule runs once over a whole column, in C
where possible (one regular expression over all the joined ids, `max(map(len,
…))`, set inclusion). The fast path accepts only batches the reference accepts
unchanged (every body already canonical, every record_id distinct); anything
else, including every invalid batch, goes through the reference, which then
raises the precise error or returns what to append.
"""

from __future__ import annotations

import re
from operator import attrgetter, methodcaller

from google.protobuf.message import DecodeError

from mrm.core.errors import InvalidArgument
from mrm.ledger.batch import Columns, Contents, PendingBatch, RowEncoder
from mrm.ledger.validate import (
    CONTROL_CHARS,
    KIND_NAMES,
    RECORD_ID,
    SPAN_ID,
    TEXT_LIMITS,
    TRACE_ID,
    Limits,
    validate_append,
)
from mrm.tlog.canonical import already_canonical_object
from mrm.v1 import ledger_pb2


def _lines(rule: re.Pattern[str], *, optional: bool) -> re.Pattern[str]:
    """`rule` on every line of a column joined by newlines (values may be "" if optional)."""
    one = f"(?:{rule.pattern})?" if optional else f"(?:{rule.pattern})"
    return re.compile(rf"{one}(?:\n{one})*")


_IDS = _lines(RECORD_ID, optional=False)
_TRACES = _lines(TRACE_ID, optional=True)
_SPANS = _lines(SPAN_ID, optional=True)
_ZERO_TRACE, _ZERO_SPAN = "0" * 32, "0" * 16
_FIELDS = attrgetter(
    "record_id",
    "kind",
    "model_name",
    "model_version",
    "subject",
    "trace_id",
    "span_id",
    "body_json",
)
_OUTPUT_ONLY = (
    attrgetter("leaf_index"),
    attrgetter("actor"),
    attrgetter("leaf_hash"),
    methodcaller("HasField", "recorded_at"),
)
_TEXT_LIMITS = (TEXT_LIMITS["model_name"], TEXT_LIMITS["model_version"], TEXT_LIMITS["subject"])


def prepare_append(
    req: ledger_pb2.AppendRecordsRequest,
    limits: Limits,
    actor: str,
    recorded_at_us: int,
    encode: RowEncoder | None = None,
) -> PendingBatch:
    """The batch to append, stamped with `actor` and `recorded_at_us`, hashed and
    encoded with the store's `encode`; InvalidArgument (naming the field) if the
    request is not valid."""
    batch = prepare_fast(req, limits, actor, recorded_at_us, encode)
    if batch is None:
        records = validate_append(req, limits)
        batch = PendingBatch.from_records(records, actor, recorded_at_us, encode)
    return batch


def prepare_fast(
    req: ledger_pb2.AppendRecordsRequest,
    limits: Limits,
    actor: str,
    recorded_at_us: int,
    encode: RowEncoder | None = None,
) -> PendingBatch | None:
    """The fast path: the batch, if every rule holds in its plainest form; None to
    defer to the reference validator (`validate_append`), which names the field."""
    recs = req.records
    n = len(recs)
    if not 0 < n <= limits.max_batch:
        return None
    if any(any(map(get, recs)) for get in _OUTPUT_ONLY):
        return None
    ids, kind_values, names, versions, subjects, traces, spans, bodies = zip(
        *map(_FIELDS, recs), strict=True
    )
    # Each joined column must split back into exactly n parts: no value holds a "\n".
    if not _one_per_line(_IDS, ids, n) or len(set(ids)) != n:
        return None
    if not KIND_NAMES.keys() >= set(kind_values):
        return None
    texts = (names, versions, subjects)
    if any(max(map(len, col)) > limit for col, limit in zip(texts, _TEXT_LIMITS, strict=True)):
        return None
    if CONTROL_CHARS.search("".join(names) + "".join(versions) + "".join(subjects)):
        return None
    if not _one_per_line(_TRACES, traces, n) or _ZERO_TRACE in traces:
        return None
    if not _one_per_line(_SPANS, spans, n) or _ZERO_SPAN in spans:
        return None
    if "" in traces and any(s and not t for t, s in zip(traces, spans, strict=True)):
        return None  # a span id without a trace id
    raw = [b.encode() for b in bodies]
    limit = limits.max_record_bytes
    if max(map(len, raw)) > limit or not all(map(already_canonical_object, raw)):
        return None
    kinds = [KIND_NAMES[k] for k in kind_values]
    columns = (ids, kinds, names, versions, subjects, traces, spans, bodies)
    return PendingBatch.build(columns, raw, actor, recorded_at_us, unique=True, encode=encode)


def _one_per_line(pattern: re.Pattern[str], values: tuple[str, ...], n: int) -> bool:
    joined = "\n".join(values)
    return joined.count("\n") == n - 1 and pattern.fullmatch(joined) is not None


Refusal = tuple[str, str]
"""(field, description) of an InvalidArgument, as it crosses a process boundary."""


def prepare_serialized(
    data: bytes,
    limits: Limits,
    actor: str,
    recorded_at_us: int,
    encode: RowEncoder | None = None,
) -> PendingBatch | Refusal:
    """`prepare_append` on the request's wire bytes; a refusal is returned, not raised,
    so it pickles (the worker processes of mrm.ledger.pool run this)."""
    try:
        req = ledger_pb2.AppendRecordsRequest.FromString(data)
    except DecodeError as exc:
        return ("request", f"is not a valid protobuf message ({exc})")
    batch = prepare_fast(req, limits, actor, recorded_at_us, encode)
    if batch is not None:
        # Sent back without its content columns: the request rebuilds them.
        batch.contents = Contents(batch.contents.columns(), data, columns_of)
        return batch
    try:  # the fast path declined: the reference validator decides (and names the field)
        records = validate_append(req, limits)
    except InvalidArgument as exc:
        return (exc.field, exc.description)
    return PendingBatch.from_records(records, actor, recorded_at_us, encode)


def columns_of(data: bytes) -> Columns:
    """The content columns of a request the fast path accepted, as it made them."""
    recs = ledger_pb2.AppendRecordsRequest.FromString(data).records
    _, kind_values, *rest = zip(*map(_FIELDS, recs), strict=True)
    return ([KIND_NAMES[k] for k in kind_values], *rest)
