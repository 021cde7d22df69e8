"""One AppendRecords call on its way to the log: stamped, hashed, encoded, then sequenced.

The append path is CPU-bound in one process, so a batch is kept in columns
(one list per field) and everything that does not depend on a record's
position is computed before the writer lock, where the batch is prepared
(maybe in a worker process): the leaf hash, and the rows in the store's own
encoding (`RowEncoder`). Under the lock only the index, the subtree hashes it
completes and its seal remain. Whole `StoredRecord`s are built only for
replays and for in-process callers that ask for them.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from mrm.ledger.records import Appended, NewRecord, StoredRecord
from mrm.tlog.leaf import batch_leaf_bytes

_LEAF_PREFIX = hashlib.sha256(b"\x00")  # RFC 6962 leaf hashes start with 0x00

RowEncoder = Callable[["PendingBatch", Sequence[bytes]], list[bytes]]
"""A store's encoding of a batch's rows, given the bodies as UTF-8; a module-level
function, so that it reaches the intake's worker processes by name."""


@dataclass(slots=True)
class PendingBatch:
    """A validated batch in columns, each record stamped and hashed.

    `record_ids` are canonical UUID text; `bodies` canonical JSON. `rows` holds
    each record's row in the encoding of the store it is bound for, if the
    store has one (see `RowEncoder`).
    """

    record_ids: Sequence[str]
    contents: Contents
    recorded_at_us: int
    actor: str
    leaf_hashes: list[bytes]
    rows: list[bytes] | None
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
        encode: RowEncoder | None = None,
    ) -> PendingBatch:
        """Hash validated columns (ids, kinds, names, versions, subjects, trace ids,
        span ids, bodies) and, given the store's `encode`, encode their rows."""
        ids, kinds, names, versions, subjects, traces, spans, bodies = columns
        leaves = batch_leaf_bytes(
            record_ids=ids,
            kinds=kinds,
            model_names=names,
            model_versions=versions,
            subjects=subjects,
            trace_ids=traces,
            span_ids=spans,
            bodies_canonical=bodies,
            recorded_at_us=recorded_at_us,
            actor=actor,
        )
        zero = _LEAF_PREFIX
        hashes: list[bytes] = []
        for leaf in leaves:
            h = zero.copy()
            h.update(leaf)
            hashes.append(h.digest())
        contents = Contents((kinds, names, versions, subjects, traces, spans, bodies))
        batch = cls(ids, contents, recorded_at_us, actor, hashes, None, unique, frozenset(kinds))
        if encode is not None:
            batch.rows = encode(batch, body_bytes)
        return batch

    @classmethod
    def from_records(
        cls,
        records: Sequence[NewRecord],
        actor: str,
        recorded_at_us: int,
        encode: RowEncoder | None = None,
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
        unique = len(set(ids)) == len(ids)
        return cls.build(columns, raw, actor, recorded_at_us, unique=unique, encode=encode)

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
