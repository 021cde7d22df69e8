"""The ledger's storage: the only module that speaks SQL to the ledger tables."""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import psycopg
import psycopg.rows
import sqlalchemy as sa

from mrm.core.errors import AlreadyExists, IntegrityError, MrmError
from mrm.ledger import merkle
from mrm.ledger.records import (
    Appended,
    NewRecord,
    PendingBatch,
    RecordFilter,
    SignedCheckpoint,
    StoredRecord,
)
from mrm.ledger.seal import seal
from mrm.ledger.tables import checkpoints, leaves, log_identity

# Keys of PostgreSQL advisory locks: one writer integrates leaves, one signer signs.
_APPEND_LOCK = 0x4D524D01
_SIGN_LOCK = 0x4D524D02
_HASH = 32
_COPY_COLUMNS = (
    "leaf_index, record_id, kind, model_name, model_version, subject, trace_id, span_id, "
    "recorded_at_us, actor, body, leaf_hash, subtree_hashes, seal"
)
_RECORD_COLUMNS = [c for c in leaves.c if c.name not in ("subtree_hashes", "seal")]
_COPY_TYPES = [
    "int8", "uuid", "varchar", "varchar", "varchar", "varchar", "varchar", "varchar",
    "int8", "varchar", "text", "bytea", "bytea", "bytea",
]  # fmt: skip
# Column names come from our own table definition, never from input.
_EXISTING_SQL = (
    f"SELECT {', '.join(c.name for c in _RECORD_COLUMNS)} FROM ledger_leaves "  # noqa: S608
    "WHERE record_id = ANY(%s)"
)


def _stored(row: Any) -> StoredRecord:
    return StoredRecord(
        leaf_index=row.leaf_index,
        record_id=row.record_id,
        kind=row.kind,
        model_name=row.model_name or "",
        model_version=row.model_version or "",
        subject=row.subject or "",
        trace_id=row.trace_id or "",
        span_id=row.span_id or "",
        body=row.body,
        recorded_at_us=row.recorded_at_us,
        actor=row.actor,
        leaf_hash=bytes(row.leaf_hash),
    )


class LedgerStore:
    """Append-only storage of leaves, subtree hashes and checkpoints."""

    def __init__(self, engine: sa.Engine) -> None:
        self.engine = engine
        self._pg = engine.dialect.name == "postgresql"
        self._cached_frontier: merkle.Frontier | None = None
        self._seal_key: bytes | None = None

    def use_seal_key(self, key: bytes) -> None:
        """The key every appended row is sealed with (see mrm.ledger.seal)."""
        self._seal_key = key

    @contextmanager
    def _writer(self, lock_key: int) -> Iterator[sa.Connection]:
        """A write transaction that holds the ledger's writer lock until commit."""
        if self._pg:
            with self.engine.begin() as conn:
                conn.execute(sa.select(sa.func.pg_advisory_xact_lock(lock_key)))
                yield conn
        else:
            immediate = self.engine.connect().execution_options(sqlite_begin="IMMEDIATE")
            with immediate as conn, conn.begin():
                yield conn

    # -- identity ---------------------------------------------------------------

    def identity(self) -> tuple[str, str] | None:
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(log_identity)).first()
        return (row.origin, row.verifier_key) if row else None

    def create_identity(self, origin: str, verifier_key: str, now_us: int) -> tuple[str, str]:
        """Record the log's origin and key once; a concurrent first start keeps the winner's."""
        with self._writer(_SIGN_LOCK) as conn:
            row = conn.execute(sa.select(log_identity)).first()
            if row is None:
                conn.execute(
                    log_identity.insert().values(
                        id=1, origin=origin, verifier_key=verifier_key, created_at_us=now_us
                    )
                )
                return origin, verifier_key
            return row.origin, row.verifier_key

    # -- leaves -----------------------------------------------------------------

    def append(self, batch: Sequence[NewRecord], actor: str, now_us: int) -> list[Appended]:
        """Append one batch atomically (see `append_batches`); raise if it conflicts."""
        (outcome,) = self.append_batches([PendingBatch.prepare(batch, actor, now_us)])
        if isinstance(outcome, MrmError):
            raise outcome
        return outcome

    def append_batches(self, pending: Sequence[PendingBatch]) -> list[list[Appended] | MrmError]:
        """Append several batches in one transaction (group commit).

        Each batch is all-or-nothing: a batch that replays a record_id with other
        content gets AlreadyExists and adds nothing, while the others land. Ids
        already in the log are looked up before the writer lock (records are
        never removed, so what the lookup finds stays true). A concurrent append
        of the same id can slip in between; the unique constraint then refuses
        the transaction and it runs again, finding that record.
        """
        ids = [r.record_id for b in pending for r in b.records]
        for attempt in range(3):
            existing = self._existing(ids)
            try:
                return self._append_locked(pending, existing)
            except (sa.exc.IntegrityError, psycopg.errors.UniqueViolation):
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    def _existing(self, ids: list[uuid.UUID]) -> dict[uuid.UUID, StoredRecord]:
        with self.engine.connect() as conn:
            if self._pg:
                # Hot path: psycopg directly with one array parameter. SQLAlchemy's
                # per-element bind processing costs more than the query itself.
                raw = conn.connection.driver_connection
                assert raw is not None
                with raw.cursor(row_factory=psycopg.rows.namedtuple_row) as cur:
                    cur.execute(_EXISTING_SQL, (ids,))
                    return {row.record_id: _stored(row) for row in cur}
            found: dict[uuid.UUID, StoredRecord] = {}
            for start in range(0, len(ids), 500):  # SQLite's bound-parameter limit
                chunk = ids[start : start + 500]
                for row in conn.execute(
                    sa.select(*_RECORD_COLUMNS).where(leaves.c.record_id.in_(chunk))
                ):
                    found[row.record_id] = _stored(row)
            return found

    def _append_locked(
        self, pending: Sequence[PendingBatch], existing: dict[uuid.UUID, StoredRecord]
    ) -> list[list[Appended] | MrmError]:
        # Only sequencing happens under the lock: every hash but the few interior
        # nodes a leaf completes, and the seal, was computed before.
        key = self._seal_key
        if key is None:
            raise RuntimeError("LedgerStore.use_seal_key was not called")
        with self._writer(_APPEND_LOCK) as conn:
            top = conn.execute(sa.select(sa.func.max(leaves.c.leaf_index))).scalar_one()
            frontier = self._frontier(conn, 0 if top is None else int(top) + 1)
            outcomes: list[list[Appended] | MrmError] = []
            rows: list[tuple[Any, ...]] = []
            known = dict(existing)  # grows with what this transaction appends
            for batch in pending:
                conflict = _conflict(batch, known)
                if conflict is not None:
                    outcomes.append(conflict)
                    continue
                out: list[Appended] = []
                for rec, middle in zip(batch.records, batch.row_middles, strict=True):
                    seen = known.get(rec.record_id)
                    if seen is not None:
                        out.append(Appended(seen, duplicate=True))
                        continue
                    index = rec.leaf_index = frontier.size
                    subtrees = frontier.push(rec.leaf_hash)
                    known[rec.record_id] = rec
                    out.append(Appended(rec, duplicate=False))
                    rows.append((index, *middle, subtrees, seal(key, index, rec.leaf_hash)))
                outcomes.append(out)
            if rows:
                self._insert_leaves(conn, rows)
        self._cached_frontier = frontier  # committed: safe to reuse for the next group
        return outcomes

    def _frontier(self, conn: sa.Connection, size: int) -> merkle.Frontier:
        """The tree's right edge; reused from the last commit when nobody appended since."""
        cached, self._cached_frontier = self._cached_frontier, None
        if cached is not None and cached.size == size:
            return cached
        return merkle.Frontier(size, lambda nodes: self._read_nodes(conn, nodes))

    def _insert_leaves(self, conn: sa.Connection, rows: list[tuple[Any, ...]]) -> None:
        if self._pg:
            # COPY is PostgreSQL's bulk path; it runs inside this same transaction.
            raw = conn.connection.driver_connection
            assert raw is not None
            with (
                raw.cursor() as cur,
                cur.copy(f"COPY ledger_leaves ({_COPY_COLUMNS}) FROM STDIN (FORMAT BINARY)") as cp,
            ):
                # Binary COPY: no text escaping of bodies, no hex for the hashes.
                cp.set_types(_COPY_TYPES)
                for row in rows:
                    cp.write_row(row)
            return
        names = [c.strip() for c in _COPY_COLUMNS.split(",")]
        conn.execute(leaves.insert(), [dict(zip(names, row, strict=True)) for row in rows])

    @staticmethod
    def _size(conn: sa.Connection) -> int:
        top = conn.execute(sa.select(sa.func.max(leaves.c.leaf_index))).scalar_one()
        return 0 if top is None else int(top) + 1

    def size(self) -> int:
        with self.engine.connect() as conn:
            return self._size(conn)

    def _read_nodes(
        self, conn: sa.Connection, nodes: Iterable[merkle.NodeId]
    ) -> dict[merkle.NodeId, bytes]:
        wanted = list(nodes)
        if not wanted:
            return {}
        rows = {merkle.row_of(n) for n in wanted}
        found = {
            r.leaf_index: (bytes(r.leaf_hash), bytes(r.subtree_hashes))
            for r in conn.execute(
                sa.select(leaves.c.leaf_index, leaves.c.leaf_hash, leaves.c.subtree_hashes).where(
                    leaves.c.leaf_index.in_(rows)
                )
            )
        }
        out: dict[merkle.NodeId, bytes] = {}
        for node in wanted:
            level, _ = node
            row = merkle.row_of(node)
            if row not in found:
                raise IntegrityError(f"leaf {row} is missing from storage; the tree cannot be read")
            leaf_h, subtrees = found[row]
            h = leaf_h if level == 0 else subtrees[(level - 1) * _HASH : level * _HASH]
            if len(h) != _HASH:
                raise IntegrityError(f"leaf {row} lacks its level-{level} subtree hash")
            out[node] = h
        return out

    def read_nodes(self, nodes: Iterable[merkle.NodeId]) -> dict[merkle.NodeId, bytes]:
        """Stored perfect-subtree hashes, in one query."""
        with self.engine.connect() as conn:
            return self._read_nodes(conn, nodes)

    def get(self, record_id: uuid.UUID) -> StoredRecord | None:
        return self._one(leaves.c.record_id == record_id)

    def get_by_index(self, leaf_index: int) -> StoredRecord | None:
        return self._one(leaves.c.leaf_index == leaf_index)

    def _one(self, where: sa.ColumnElement[bool]) -> StoredRecord | None:
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(*_RECORD_COLUMNS).where(where)).first()
        return _stored(row) if row else None

    def query(
        self, flt: RecordFilter, *, after: int | None, limit: int, newest_first: bool
    ) -> list[StoredRecord]:
        """Records matching the filter, paged by leaf index (exclusive cursor `after`)."""
        q = sa.select(*_RECORD_COLUMNS)
        for column, value in (
            (leaves.c.kind, flt.kind),
            (leaves.c.model_name, flt.model_name),
            (leaves.c.model_version, flt.model_version),
            (leaves.c.subject, flt.subject),
            (leaves.c.trace_id, flt.trace_id),
        ):
            if value:
                q = q.where(column == value)
        if flt.start_us is not None:
            q = q.where(leaves.c.recorded_at_us >= flt.start_us)
        if flt.end_us is not None:
            q = q.where(leaves.c.recorded_at_us < flt.end_us)
        if after is not None:
            q = q.where(
                leaves.c.leaf_index < after if newest_first else leaves.c.leaf_index > after
            )
        order = leaves.c.leaf_index.desc() if newest_first else leaves.c.leaf_index.asc()
        with self.engine.connect() as conn:
            return [_stored(r) for r in conn.execute(q.order_by(order).limit(limit))]

    # -- checkpoints ------------------------------------------------------------

    @contextmanager
    def signing(self) -> Iterator[SigningTxn]:
        """The one transaction in which a checkpoint may be signed and stored."""
        with self._writer(_SIGN_LOCK) as conn:
            yield SigningTxn(self, conn)

    def latest_checkpoint(self) -> SignedCheckpoint | None:
        with self.engine.connect() as conn:
            return _latest(conn)

    def checkpoint_at(self, tree_size: int) -> SignedCheckpoint | None:
        with self.engine.connect() as conn:
            row = conn.execute(
                sa.select(checkpoints).where(checkpoints.c.tree_size == tree_size)
            ).first()
        return _checkpoint(row) if row else None

    def list_checkpoints(self, *, after: int | None, limit: int) -> list[SignedCheckpoint]:
        q = sa.select(checkpoints).order_by(checkpoints.c.tree_size).limit(limit)
        if after is not None:
            q = q.where(checkpoints.c.tree_size > after)
        with self.engine.connect() as conn:
            return [_checkpoint(r) for r in conn.execute(q)]


class SigningTxn:
    """Reads and writes for the signer, under the signing lock."""

    def __init__(self, store: LedgerStore, conn: sa.Connection) -> None:
        self._store = store
        self._conn = conn

    def latest(self) -> SignedCheckpoint | None:
        return _latest(self._conn)

    def size(self) -> int:
        return self._store._size(self._conn)

    def read_nodes(self, nodes: Iterable[merkle.NodeId]) -> dict[merkle.NodeId, bytes]:
        return self._store._read_nodes(self._conn, nodes)

    def sealed_leaves(self, start: int, end: int) -> list[tuple[StoredRecord, bytes]]:
        """Leaves [start, end) with their seals, in index order."""
        rows = self._conn.execute(
            sa.select(*_RECORD_COLUMNS, leaves.c.seal)
            .where(leaves.c.leaf_index >= start, leaves.c.leaf_index < end)
            .order_by(leaves.c.leaf_index)
        )
        return [(_stored(r), bytes(r.seal)) for r in rows]

    def add(self, cp: SignedCheckpoint) -> None:
        self._conn.execute(
            checkpoints.insert().values(
                tree_size=cp.tree_size,
                root_hash=cp.root_hash,
                note=cp.note,
                signed_at_us=cp.signed_at_us,
            )
        )


def _latest(conn: sa.Connection) -> SignedCheckpoint | None:
    row = conn.execute(
        sa.select(checkpoints).order_by(checkpoints.c.tree_size.desc()).limit(1)
    ).first()
    return _checkpoint(row) if row else None


def _checkpoint(row: Any) -> SignedCheckpoint:
    return SignedCheckpoint(
        tree_size=row.tree_size,
        root_hash=bytes(row.root_hash),
        note=row.note,
        signed_at_us=row.signed_at_us,
    )


def _conflict(batch: PendingBatch, known: dict[uuid.UUID, StoredRecord]) -> AlreadyExists | None:
    """A replayed record_id whose content differs from what the log holds."""
    for rec in batch.records:
        seen = known.get(rec.record_id)
        if seen is not None and seen is not rec and not rec.same_content(seen):
            return AlreadyExists(
                f"record {rec.record_id} is already in the ledger (leaf {seen.leaf_index}) "
                "with different content; use a new record_id"
            )
    return None
