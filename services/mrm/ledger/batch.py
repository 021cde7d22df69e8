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
from collections.abc import Callable, Sequence
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
    contents: Contents
    recorded_at_us: int
    actor: str
    leaf_hashes: list[bytes]
    row_fields: list[bytes]
    unique: bool
    """No record_id occurs twice in the batch (the store's fast path)."""
    kinds: frozenset[str]
    """The kinds the batch holds: who may append it depends on them."""

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
        # Kinds, model names and versions repeat within a batch: encode each once.
        kind_json = {k: s(k) for k in set(kinds)}
        kind_cols = {k: _text(k) for k in set(kinds)}
        model_json = {v: s(v) for v in {*names, *versions}}
        model_cols = {v: _nullable(v) for v in {*names, *versions}}
        zero = _LEAF_PREFIX
        hashes: list[bytes] = []
        rows: list[bytes] = []
        for rid, kind, name, version, subject, trace, span, body, raw in zip(
            ids, kinds, names, versions, subjects, traces, spans, bodies, body_bytes, strict=True
        ):
            h = zero.copy()
            h.update(
                f'{head}{body},"kind":{kind_json[kind]},"model_name":{model_json[name]},'
                f'"model_version":{model_json[version]},"record_id":"{rid}",{stamp}'
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
                        model_cols[name],
                        model_cols[version],
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
        contents = Contents((kinds, names, versions, subjects, traces, spans, bodies))
        return cls(ids, contents, recorded_at_us, actor, hashes, rows, unique, frozenset(kinds))

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
        return tuple(column[i] for column in self.contents.columns())

    def record(self, i: int, leaf_index: int) -> StoredRecord:
        kind, name, version, subject, trace, span, body = self.content(i)
        return StoredRecord(
            leaf_index=leaf_index,
            record_id=uuid.UUID(self.record_ids[i]),
            kind=kind,
            model_name=name,
            model_version=version,
            subject=subject,
            trace_id=trace,
            span_id=span,
            body=body,
            recorded_at_us=self.recorded_at_us,
            actor=self.actor,
            leaf_hash=self.leaf_hashes[i],
        )

    def stored_rows(self) -> list[tuple[object, ...]]:
        """Column values of each record from record_id to leaf_hash (the store's
        generic path; "" is NULL in the optional columns)."""
        kinds, names, versions, subjects, traces, spans, bodies = self.contents.columns()
        return [
            (
                uuid.UUID(rid),
                kinds[i],
                names[i] or None,
                versions[i] or None,
                subjects[i] or None,
                traces[i] or None,
                spans[i] or None,
                self.recorded_at_us,
                self.actor,
                bodies[i],
                self.leaf_hashes[i],
            )
            for i, rid in enumerate(self.record_ids)
        ]


Columns = tuple[Sequence[str], ...]


class Contents:
    """A batch's content columns (kind, model name and version, subject, trace and
    span ids, body), or the request bytes that rebuild them.

    The store needs them only for replays and for in-process callers, so a batch
    crossing a process boundary carries neither (given `source` and `parse`):
    the server, which holds the request, hands it back with `rebuilt_from`, and
    unpickles a few hundred bytes per record less.
    """

    __slots__ = ("_columns", "_parse", "_source")

    def __init__(
        self,
        columns: Columns | None,
        source: bytes = b"",
        parse: Callable[[bytes], Columns] | None = None,
    ) -> None:
        self._columns = columns
        self._source = source
        self._parse = parse

    def columns(self) -> Columns:
        if self._columns is None:
            assert self._parse is not None
            self._columns = self._parse(self._source)
        return self._columns

    def __reduce__(self) -> tuple[object, ...]:
        if self._parse is not None:
            # The receiver holds the request already: it gives it back (`rebuilt_from`).
            return (Contents, (None, b"", self._parse))
        return (Contents, (self._columns,))

    def rebuilt_from(self, source: bytes) -> None:
        """Give an unpickled lazy Contents the request it was made from."""
        if self._columns is None:
            self._source = source

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Contents):
            return NotImplemented
        plain = [[list(c) for c in x.columns()] for x in (self, other)]
        return plain[0] == plain[1]

    __hash__ = None  # type: ignore[assignment]


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
