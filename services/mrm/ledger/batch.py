"""One AppendRecords call on its way to the log: stamped, hashed, encoded, then sequenced.

The append path is CPU-bound in one process, so a batch is kept in columns
(one list per field) and everything that does not depend on a record's
position is computed before the writer lock: the leaf hash, and the record's
binary COPY fields. Under the lock only the index, the subtree hashes it
completes and its seal remain. Whole `StoredRecord`s are built only for
replays and for in-process callers that ask for them.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from json.encoder import encode_basestring as _json_string  # what mrm.tlog.leaf uses

from mrm.ledger.records import Appended, NewRecord, StoredRecord
from mrm.tlog.leaf import LEAF_FORMAT_VERSION, format_timestamp

_LEAF_PREFIX = hashlib.sha256(b"\x00")  # RFC 6962 leaf hashes start with 0x00
_NULL = b"\xff\xff\xff\xff"  # a NULL field in binary COPY
_UUID_LEN = (16).to_bytes(4, "big")
_INT8_LEN = (8).to_bytes(4, "big")
_HASH_LEN = (32).to_bytes(4, "big")


def _text(value: str | bytes) -> bytes:
    data = value.encode() if isinstance(value, str) else value
    return len(data).to_bytes(4, "big") + data


def _nullable(value: str) -> bytes:
    """The store keeps "" as NULL in its optional text columns."""
    return _text(value) if value else _NULL


@dataclass(slots=True)
class PendingBatch:
    """A validated batch in columns, each record stamped and hashed.

    `record_ids` are canonical UUID text; `bodies` canonical JSON. `row_fields`
    holds each record's PostgreSQL binary COPY fields from record_id to
    leaf_hash (the store adds leaf_index before them and the subtree hashes and
    seal after them).
    """

    record_ids: Sequence[str]
    kinds: Sequence[str]
    model_names: Sequence[str]
    model_versions: Sequence[str]
    subjects: Sequence[str]
    trace_ids: Sequence[str]
    span_ids: Sequence[str]
    bodies: Sequence[str]
    recorded_at_us: int
    actor: str
    leaf_hashes: list[bytes]
    row_fields: list[bytes]
    unique: bool
    """No record_id occurs twice in the batch (the store's fast path)."""

    @classmethod
    def build(
        cls,
        columns: tuple[Sequence[str], ...],
        body_bytes: Sequence[bytes],
        actor: str,
        recorded_at_us: int,
        *,
        unique: bool,
    ) -> PendingBatch:
        """Hash and encode validated columns (ids, kinds, names, versions, subjects,
        trace ids, span ids, bodies): `leaf_bytes` and the store's row layout, inlined."""
        ids, kinds, names, versions, subjects, traces, spans, bodies = columns
        s = _json_string
        head = f'{{"actor":{s(actor)},"body":'
        stamp = f'"recorded_at":"{format_timestamp(recorded_at_us)}",'
        tail = f',"v":{LEAF_FORMAT_VERSION}}}'
        shared = _INT8_LEN + recorded_at_us.to_bytes(8, "big", signed=True) + _text(actor)
        kind_json = {k: s(k) for k in set(kinds)}
        kind_cols = {k: _text(k) for k in set(kinds)}
        zero = _LEAF_PREFIX
        hashes: list[bytes] = []
        rows: list[bytes] = []
        for rid, kind, name, version, subject, trace, span, body, raw in zip(
            ids, kinds, names, versions, subjects, traces, spans, bodies, body_bytes, strict=True
        ):
            h = zero.copy()
            h.update(
                f'{head}{body},"kind":{kind_json[kind]},"model_name":{s(name)},'
                f'"model_version":{s(version)},"record_id":"{rid}",{stamp}'
                f'"span_id":{s(span)},"subject":{s(subject)},"trace_id":{s(trace)}{tail}'.encode()
            )
            digest = h.digest()
            hashes.append(digest)
            rows.append(
                b"".join(
                    (
                        _UUID_LEN,
                        bytes.fromhex(rid.replace("-", "")),
                        kind_cols[kind],
                        _nullable(name),
                        _nullable(version),
                        _nullable(subject),
                        _nullable(trace),
                        _nullable(span),
                        shared,
                        _text(raw),
                        _HASH_LEN,
                        digest,
                    )
                )
            )
        return cls(
            ids, kinds, names, versions, subjects, traces, spans, bodies,
            recorded_at_us, actor, hashes, rows, unique,
        )  # fmt: skip

    @classmethod
    def from_records(
        cls, records: Sequence[NewRecord], actor: str, recorded_at_us: int
    ) -> PendingBatch:
        """A batch of in-process records (already validated by their maker)."""
        ids = [r.record_id_text or str(r.record_id) for r in records]
        columns = (
            ids,
            [r.kind for r in records],
            [r.model_name for r in records],
            [r.model_version for r in records],
            [r.subject for r in records],
            [r.trace_id for r in records],
            [r.span_id for r in records],
            [r.body for r in records],
        )
        raw = [r.body.encode() for r in records]
        return cls.build(columns, raw, actor, recorded_at_us, unique=len(set(ids)) == len(ids))

    def __len__(self) -> int:
        return len(self.record_ids)

    def content(self, i: int) -> tuple[str, ...]:
        """What a replay must repeat (time and actor aside)."""
        return (
            self.kinds[i],
            self.model_names[i],
            self.model_versions[i],
            self.subjects[i],
            self.trace_ids[i],
            self.span_ids[i],
            self.bodies[i],
        )

    def record(self, i: int, leaf_index: int) -> StoredRecord:
        return StoredRecord(
            leaf_index=leaf_index,
            record_id=uuid.UUID(self.record_ids[i]),
            kind=self.kinds[i],
            model_name=self.model_names[i],
            model_version=self.model_versions[i],
            subject=self.subjects[i],
            trace_id=self.trace_ids[i],
            span_id=self.span_ids[i],
            body=self.bodies[i],
            recorded_at_us=self.recorded_at_us,
            actor=self.actor,
            leaf_hash=self.leaf_hashes[i],
        )

    def stored_rows(self, first_index: int) -> list[tuple[object, ...]]:
        """Column values of each record as if all were appended from `first_index` on
        (the store's generic path; subtree hashes and seal left for the caller)."""
        return [
            (
                first_index + i,
                uuid.UUID(rid),
                self.kinds[i],
                self.model_names[i] or None,
                self.model_versions[i] or None,
                self.subjects[i] or None,
                self.trace_ids[i] or None,
                self.span_ids[i] or None,
                self.recorded_at_us,
                self.actor,
                self.bodies[i],
                self.leaf_hashes[i],
            )
            for i, rid in enumerate(self.record_ids)
        ]


def content_of(rec: StoredRecord) -> tuple[str, ...]:
    return (
        rec.kind,
        rec.model_name,
        rec.model_version,
        rec.subject,
        rec.trace_id,
        rec.span_id,
        rec.body,
    )


@dataclass(slots=True)
class Sequenced:
    """Where a batch's records landed: one leaf index per record, in request order."""

    batch: PendingBatch
    leaf_indexes: list[int]
    originals: dict[int, StoredRecord]
    """Replays, by position: the record first appended under that id."""

    @property
    def added(self) -> int:
        return len(self.leaf_indexes) - len(self.originals)

    def appended(self) -> list[Appended]:
        """Whole records, for in-process callers."""
        out = []
        for i, index in enumerate(self.leaf_indexes):
            original = self.originals.get(i)
            if original is not None:
                out.append(Appended(original, duplicate=True))
            else:
                out.append(Appended(self.batch.record(i, index), duplicate=False))
        return out
