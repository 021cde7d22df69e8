"""The leaf bytes of an audit record: one RFC 8785 canonical JSON object.

The envelope is spelled out here, once, for the server that hashes records on
append and for the auditor that re-derives every leaf. Its keys, in canonical
(sorted) order, are: actor, body, kind, model_name, model_version, record_id,
recorded_at, span_id, subject, trace_id, v. Every key is always present and an
absent string is "". `body` is the record's JSON object in canonical form.

Because the canonical form of a nested object does not depend on where it sits,
the envelope is assembled around the already-canonical body without re-walking
it: that keeps the ledger's append path (`batch_leaf_bytes`) and `mrmctl ledger
verify` (`leaf_bytes_from_proto`) fast. The other values are strings, escaped by
the same C routine json.dumps uses, which escapes exactly what RFC 8785 escapes.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from json.encoder import encode_basestring as _encode_string
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from mrm.v1 import ledger_pb2

LEAF_FORMAT_VERSION = 1
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


# The C string encoder behind json.dumps(ensure_ascii=False): it escapes
# exactly what RFC 8785 escapes.
_s = _encode_string


def format_timestamp(micros: int) -> str:
    """RFC 3339 UTC with exactly six fractional digits, e.g. 2026-11-28T17:18:48.000001Z."""
    seconds, fraction = divmod(micros, 1_000_000)
    return f"{_second(seconds)}.{fraction:06d}Z"


@lru_cache(maxsize=4096)
def _second(seconds: int) -> str:
    # Records arrive in bursts within the same second: an audit of millions of
    # leaves formats each second once instead of once per leaf.
    return (_EPOCH + timedelta(seconds=seconds)).strftime("%Y-%m-%dT%H:%M:%S")


_TAIL = f',"v":{LEAF_FORMAT_VERSION}}}'


def _head(actor: str) -> str:
    return f'{{"actor":{_s(actor)},"body":'


def _stamp(recorded_at_us: int) -> str:
    return f'"recorded_at":"{format_timestamp(recorded_at_us)}",'


def _envelope(
    head: str,
    body: str,
    kind: str,
    model_name: str,
    model_version: str,
    record_id: str,
    stamp: str,
    span_id: str,
    subject: str,
    trace_id: str,
) -> bytes:
    # The one spelling of the envelope: every argument but `body`, `head` and
    # `stamp` is an already-escaped JSON string, in the keys' canonical order.
    return (
        f'{head}{body},"kind":{kind},"model_name":{model_name},'
        f'"model_version":{model_version},"record_id":{record_id},{stamp}'
        f'"span_id":{span_id},"subject":{subject},"trace_id":{trace_id}{_TAIL}'
    ).encode()


def leaf_bytes(
    *,
    record_id: str,
    kind: str,
    model_name: str,
    model_version: str,
    subject: str,
    trace_id: str,
    span_id: str,
    body_canonical: str,
    recorded_at_us: int,
    actor: str,
) -> bytes:
    """The canonical JSON leaf of one record; `body_canonical` must already be RFC 8785."""
    return _envelope(
        _head(actor),
        body_canonical,
        _s(kind),
        _s(model_name),
        _s(model_version),
        _s(record_id),
        _stamp(recorded_at_us),
        _s(span_id),
        _s(subject),
        _s(trace_id),
    )


def batch_leaf_bytes(
    *,
    record_ids: Sequence[str],
    kinds: Sequence[str],
    model_names: Sequence[str],
    model_versions: Sequence[str],
    subjects: Sequence[str],
    trace_ids: Sequence[str],
    span_ids: Sequence[str],
    bodies_canonical: Sequence[str],
    recorded_at_us: int,
    actor: str,
) -> Iterator[bytes]:
    """`leaf_bytes` of each record of a batch stamped with one time and one actor
    (an append), in order. Kinds and model names repeat within a batch, so each
    distinct value is escaped once."""
    head, stamp = _head(actor), _stamp(recorded_at_us)
    kind_json = {k: _s(k) for k in set(kinds)}
    model_json = {v: _s(v) for v in {*model_names, *model_versions}}
    for rid, kind, name, version, subject, trace, span, body in zip(
        record_ids,
        kinds,
        model_names,
        model_versions,
        subjects,
        trace_ids,
        span_ids,
        bodies_canonical,
        strict=True,
    ):
        yield _envelope(
            head,
            body,
            kind_json[kind],
            model_json[name],
            model_json[version],
            _s(rid),
            stamp,
            _s(span),
            _s(subject),
            _s(trace),
        )


@lru_cache(maxsize=64)
def kind_name(kind_value: int) -> str:
    """The leaf spelling of a RecordKind: its enum name without the RECORD_KIND_ prefix."""
    from mrm.v1 import ledger_pb2

    return ledger_pb2.RecordKind.Name(kind_value).removeprefix("RECORD_KIND_")  # type: ignore[arg-type]


def leaf_bytes_from_proto(record: ledger_pb2.Record) -> bytes:
    """Re-derive a stored record's leaf bytes from the fields the ledger returned.

    The ledger returns `body_json` in canonical form; it is used verbatim, so a
    body that was altered in any way, even only reformatted, no longer hashes to
    its leaf.
    """
    ts = record.recorded_at
    return leaf_bytes(
        record_id=record.record_id,
        kind=kind_name(record.kind),
        model_name=record.model_name,
        model_version=record.model_version,
        subject=record.subject,
        trace_id=record.trace_id,
        span_id=record.span_id,
        body_canonical=record.body_json,
        recorded_at_us=ts.seconds * 1_000_000 + ts.nanos // 1000,
        actor=record.actor,
    )
