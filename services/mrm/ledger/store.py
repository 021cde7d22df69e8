"""The ledger's storage: the only module that speaks SQL to the ledger tables."""

from __future__ import annotations

import uuid
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager

import psycopg
import sqlalchemy as sa

from mrm.core.errors import AlreadyExists, MrmError
from mrm.ledger import merkle
from mrm.ledger.batch import PendingBatch, Sequenced, content_of
from mrm.ledger.reads import RECORD_COLUMNS, LedgerReader, SigningTxn
from mrm.ledger.records import StoredRecord
from mrm.ledger.seal import Sealer
from mrm.ledger.tables import leaves, log_identity

# Keys of PostgreSQL advisory locks: one writer integrates leaves, one signer signs.
_APPEND_LOCK = 0x4D524D01
_SIGN_LOCK = 0x4D524D02
_COPY_COLUMNS = (
    "leaf_index, record_id, kind, model_name, model_version, subject, trace_id, span_id, "
    "recorded_at_us, actor, body, leaf_hash, subtree_hashes, seal"
)
# PostgreSQL's binary COPY format: a signature, flags and header extension
# length; each row its field count and length-prefixed fields; then -1.
_COPY_HEADER = b"PGCOPY\n\xff\r\n\x00" + bytes(8)
_COPY_TRAILER = b"\xff\xff"
_ROW_HEAD = (14).to_bytes(2, "big") + (8).to_bytes(4, "big")  # 14 fields; leaf_index is int8
_HASH_LEN = (32).to_bytes(4, "big")
# Column names come from our own table definition, never from input.
_EXISTING_SQL = (
    "SELECT leaf_index, record_id, kind, coalesce(model_name, ''), coalesce(model_version, ''),"
    " coalesce(subject, ''), coalesce(trace_id, ''), coalesce(span_id, ''), body,"
    " recorded_at_us, actor, leaf_hash FROM ledger_leaves WHERE record_id = ANY(%s::uuid[])"
)


class LedgerStore:
    """Append-only storage of leaves, subtree hashes and checkpoints."""

    def __init__(self, engine: sa.Engine) -> None:
        self.engine = engine
        self._pg = engine.dialect.name == "postgresql"
        self._cached_frontier: merkle.Frontier | None = None
        self._sealer: Sealer | None = None
        self._lookup = True  # look stored ids up before appending (see append_batches)

    def use_seal_key(self, key: bytes) -> None:
        """The key every appended row is sealed with (see mrm.ledger.seal)."""
        self._sealer = Sealer(key)

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

    def append_batches(self, pending: Sequence[PendingBatch]) -> list[Sequenced | MrmError]:
        """Append several batches in one transaction (group commit).

        Each batch is all-or-nothing: a batch that replays a record_id with other
        content gets AlreadyExists and adds nothing, while the others land. The
        ids already in the log are looked up under the writer lock, so no other
        replica can add one before this transaction commits; the unique
        constraint stays the last word, and if it ever refuses, the transaction
        runs again.
        """
        ids = [rid for b in pending for rid in b.record_ids]
        for attempt in range(3):
            try:
                return self._append_locked(pending, ids, lookup=attempt > 0 or self._lookup)
            except (sa.exc.IntegrityError, psycopg.errors.UniqueViolation):
                self._cached_frontier = None
                self._lookup = True
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    @contextmanager
    def _append_txn(
        self, ids: list[str], lookup: bool
    ) -> Iterator[tuple[sa.Connection, int, dict[str, StoredRecord]]]:
        """The writer's transaction, its tree size and the ids of `ids` already stored
        (on PostgreSQL, none are looked up unless `lookup`)."""
        if not self._pg:
            with self._writer(_APPEND_LOCK) as conn:
                yield conn, LedgerReader(conn).size(), self._existing(conn, ids)
            return
        with self.engine.begin() as conn:
            raw = conn.connection.driver_connection
            assert raw is not None
            # Lock, size and lookup in one round trip (each statement still runs
            # after the one before, so the size is read under the lock). Every
            # round trip counts: the writer waits for the interpreter lock after each.
            with raw.cursor() as lock, raw.cursor() as top, raw.cursor() as found:
                with raw.pipeline():
                    lock.execute("SELECT pg_advisory_xact_lock(%s)", (_APPEND_LOCK,))
                    top.execute("SELECT max(leaf_index) FROM ledger_leaves")
                    if lookup:
                        # One array literal: canonical UUID text needs no quoting.
                        found.execute(_EXISTING_SQL, ("{" + ",".join(ids) + "}",))
                row = top.fetchone()
                size = 0 if row is None or row[0] is None else int(row[0]) + 1
                existing = {str(r[1]): StoredRecord(*r) for r in found} if lookup else {}
            if lookup:
                self._lookup = bool(existing)
            yield conn, size, existing

    @staticmethod
    def _existing(conn: sa.Connection, ids: list[str]) -> dict[str, StoredRecord]:
        found: dict[str, StoredRecord] = {}
        uuids = [uuid.UUID(i) for i in ids]
        for start in range(0, len(uuids), 500):  # SQLite's bound-parameter limit
            chunk = uuids[start : start + 500]
            for row in conn.execute(
                sa.select(*RECORD_COLUMNS).where(leaves.c.record_id.in_(chunk))
            ):
                found[str(row.record_id)] = StoredRecord(*row)
        return found

    def _append_locked(
        self, pending: Sequence[PendingBatch], ids: list[str], *, lookup: bool
    ) -> list[Sequenced | MrmError]:
        # Only sequencing happens under the lock: every hash but the few interior
        # nodes a leaf completes, and the seal, was computed before.
        sealer = self._sealer
        if sealer is None:
            raise RuntimeError("LedgerStore.use_seal_key was not called")
        with (
            self._append_txn(ids, lookup) as (conn, size, existing),
            _LeafSink(conn, self._pg) as sink,
        ):
            frontier = self._frontier(LedgerReader(conn), size)
            group = _Group(existing)
            outcomes: list[Sequenced | MrmError] = []
            for batch in pending:
                placed = group.place(batch, frontier.size)
                outcomes.append(placed)
                if isinstance(placed, MrmError):
                    continue
                fields = batch.row_fields
                hashes = batch.leaf_hashes
                values = batch.stored_rows() if not self._pg else None
                rows: list[bytes] = []
                generic: list[tuple[object, ...]] = []
                for i, index in enumerate(placed.leaf_indexes):
                    if i in placed.originals:
                        continue  # a replay
                    h = hashes[i]
                    subtrees = frontier.push(h)
                    mark = sealer.seal(index, h)
                    if values is None:
                        rows.append(
                            b"".join(
                                (
                                    _ROW_HEAD,
                                    index.to_bytes(8, "big"),
                                    fields[i],
                                    len(subtrees).to_bytes(4, "big"),
                                    subtrees,
                                    _HASH_LEN,
                                    mark,
                                )
                            )
                        )
                    else:
                        generic.append((index, *values[i], subtrees, mark))
                sink.write(rows, generic)
        self._cached_frontier = frontier  # committed: safe to reuse for the next group
        return outcomes

    def _frontier(self, reader: LedgerReader, size: int) -> merkle.Frontier:
        """The tree's right edge; reused from the last commit when nobody appended since."""
        cached, self._cached_frontier = self._cached_frontier, None
        if cached is not None and cached.size == size:
            return cached
        return merkle.Frontier(size, reader.read_nodes)

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


class _LeafSink:
    """Where a group's new rows go. On PostgreSQL, one binary COPY that each batch's
    rows join as soon as they are sequenced, so the server inserts one batch while
    the next is being sequenced; the rows are already in COPY's binary tuple
    format. On SQLite, one INSERT at the end."""

    def __init__(self, conn: sa.Connection, pg: bool) -> None:
        self._conn = conn
        self._pg = pg
        self._stack = ExitStack()
        self._copy: psycopg.Copy | None = None
        self._generic: list[tuple[object, ...]] = []

    def __enter__(self) -> _LeafSink:
        return self

    def write(self, rows: list[bytes], generic: list[tuple[object, ...]]) -> None:
        self._generic += generic
        if not rows:
            return
        if self._copy is None:
            raw = self._conn.connection.driver_connection
            assert raw is not None
            cur = self._stack.enter_context(raw.cursor())
            sql = f"COPY ledger_leaves ({_COPY_COLUMNS}) FROM STDIN (FORMAT BINARY)"
            self._copy = self._stack.enter_context(cur.copy(sql))
            self._copy.write(_COPY_HEADER)
        self._copy.write(b"".join(rows))

    def __exit__(self, kind: object, exc: BaseException | None, tb: object) -> None:
        if exc is not None:
            self._stack.__exit__(type(exc), exc, exc.__traceback__)  # abandons the COPY
            return
        if self._copy is not None:
            self._copy.write(_COPY_TRAILER)
        self._stack.close()  # ends the COPY: PostgreSQL reports any violation here
        if self._generic:
            names = [c.strip() for c in _COPY_COLUMNS.split(",")]
            self._conn.execute(
                leaves.insert(), [dict(zip(names, row, strict=True)) for row in self._generic]
            )


class _Group:
    """The ids one transaction knows: those already stored and those it appends."""

    def __init__(self, existing: dict[str, StoredRecord]) -> None:
        self.known: dict[str, StoredRecord | int] = dict(existing)
        self.placed: list[Sequenced] = []

    def place(self, batch: PendingBatch, size: int) -> Sequenced | AlreadyExists:
        """Give each record of `batch` its leaf index (new ones from `size` on), or
        refuse the whole batch if a replay carries other content."""
        ids = batch.record_ids
        known = self.known
        if batch.unique and known.keys().isdisjoint(ids):  # the common case: all new
            indexes = list(range(size, size + len(ids)))
            known.update(zip(ids, indexes, strict=True))
            placed = Sequenced(batch, indexes, {})
            self.placed.append(placed)
            return placed
        indexes = []
        originals: dict[int, StoredRecord] = {}
        fresh: dict[str, int] = {}
        for i, rid in enumerate(ids):
            first = fresh.get(rid)
            if first is not None:  # the same id earlier in this batch
                if batch.content(first) != batch.content(i):
                    return _conflicting(rid, indexes[first])
                originals[i] = batch.record(first, indexes[first])
                indexes.append(indexes[first])
                continue
            seen = known.get(rid)
            if seen is None:
                fresh[rid] = i
                indexes.append(size)
                size += 1
                continue
            original = seen if isinstance(seen, StoredRecord) else self._appended(seen)
            if content_of(original) != batch.content(i):
                return _conflicting(rid, original.leaf_index)
            originals[i] = original
            indexes.append(original.leaf_index)
        for rid, i in fresh.items():
            known[rid] = indexes[i]
        placed = Sequenced(batch, indexes, originals)
        self.placed.append(placed)
        return placed

    def _appended(self, leaf_index: int) -> StoredRecord:
        """A record appended earlier in this transaction (rare: concurrent replays)."""
        for placed in self.placed:
            for i, index in enumerate(placed.leaf_indexes):
                if index == leaf_index and i not in placed.originals:
                    return placed.batch.record(i, index)
        raise AssertionError(f"leaf {leaf_index} was not placed in this transaction")


def _conflicting(record_id: str, leaf_index: int) -> AlreadyExists:
    return AlreadyExists(
        f"record {record_id} is already in the ledger (leaf {leaf_index}) "
        "with different content; use a new record_id"
    )
