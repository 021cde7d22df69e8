"""The ledger's storage: the only module that speaks SQL to the ledger tables."""

from __future__ import annotations

import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import psycopg
import sqlalchemy as sa

from mrm.core.errors import AlreadyExists, MrmError
from mrm.ledger import merkle
from mrm.ledger.reads import RECORD_COLUMNS, LedgerReader, SigningTxn
from mrm.ledger.records import (
    Appended,
    PendingBatch,
    StoredRecord,
)
from mrm.ledger.seal import seal
from mrm.ledger.tables import leaves, log_identity

# Keys of PostgreSQL advisory locks: one writer integrates leaves, one signer signs.
_APPEND_LOCK = 0x4D524D01
_SIGN_LOCK = 0x4D524D02
_COPY_COLUMNS = (
    "leaf_index, record_id, kind, model_name, model_version, subject, trace_id, span_id, "
    "recorded_at_us, actor, body, leaf_hash, subtree_hashes, seal"
)
_COPY_TYPES = [
    "int8", "uuid", "varchar", "varchar", "varchar", "varchar", "varchar", "varchar",
    "int8", "varchar", "text", "bytea", "bytea", "bytea",
]  # fmt: skip
# Column names come from our own table definition, never from input.
_EXISTING_SQL = (
    "SELECT leaf_index, record_id, kind, coalesce(model_name, ''), coalesce(model_version, ''),"
    " coalesce(subject, ''), coalesce(trace_id, ''), coalesce(span_id, ''), body,"
    " recorded_at_us, actor, leaf_hash FROM ledger_leaves WHERE record_id = ANY(%s)"
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
                with raw.cursor() as cur:
                    cur.execute(_EXISTING_SQL, (ids,))
                    return {row[1]: StoredRecord(*row) for row in cur}
            found: dict[uuid.UUID, StoredRecord] = {}
            for start in range(0, len(ids), 500):  # SQLite's bound-parameter limit
                chunk = ids[start : start + 500]
                for row in conn.execute(
                    sa.select(*RECORD_COLUMNS).where(leaves.c.record_id.in_(chunk))
                ):
                    found[row.record_id] = StoredRecord(*row)
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
            reader = LedgerReader(conn)
            frontier = self._frontier(reader, reader.size())
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

    def _frontier(self, reader: LedgerReader, size: int) -> merkle.Frontier:
        """The tree's right edge; reused from the last commit when nobody appended since."""
        cached, self._cached_frontier = self._cached_frontier, None
        if cached is not None and cached.size == size:
            return cached
        return merkle.Frontier(size, reader.read_nodes)

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

    @contextmanager
    def reading(self) -> Iterator[LedgerReader]:
        """A reader on one pooled connection, for every query of one request."""
        with self.engine.connect() as conn:
            yield LedgerReader(conn)

    def size(self) -> int:
        with self.reading() as r:
            return r.size()

    @contextmanager
    def signing(self) -> Iterator[SigningTxn]:
        """The one transaction in which a checkpoint may be signed and stored."""
        with self._writer(_SIGN_LOCK) as conn:
            yield SigningTxn(conn)


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
