"""What both SQL stores share: identity, readers, and sequencing a group of batches.

A subclass says how to take the writer's lock (`_writer`), how to open an
append transaction with its tree size and the replayed ids (`_append_txn`),
and where sequenced rows go (`_sink`).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from typing import ClassVar, Protocol

import psycopg
import sqlalchemy as sa

from mrm.core.errors import AlreadyExists, MrmError
from mrm.ledger import merkle
from mrm.ledger.batch import PendingBatch, RowEncoder, Sequenced, content_of
from mrm.ledger.reads import LedgerReader, SigningTxn
from mrm.ledger.records import StoredRecord
from mrm.ledger.seal import Sealer
from mrm.ledger.tables import log_identity

# Lock keys (PostgreSQL advisory locks): one writer integrates leaves, one signer signs.
APPEND_LOCK = 0x4D524D01
SIGN_LOCK = 0x4D524D02

NewLeaf = tuple[int, int, bytes, bytes]
"""(position in its batch, leaf_index, subtree_hashes, seal) of one sequenced record."""


class LeafSink(Protocol):
    """Where one transaction's new rows go, batch by batch as they are sequenced."""

    def write(self, batch: PendingBatch, new: list[NewLeaf]) -> None: ...


class SqlLedgerStore:
    """A `LedgerStore` over SQLAlchemy; see postgres.py and sqlite.py."""

    reader: ClassVar[type[LedgerReader]] = LedgerReader
    signing_txn: ClassVar[type[SigningTxn]] = SigningTxn

    def __init__(self, engine: sa.Engine) -> None:
        self.engine = engine
        self.encode_rows: RowEncoder | None = None
        self._cached_frontier: merkle.Frontier | None = None
        self._sealer: Sealer | None = None
        self._lookup = True  # look stored ids up before appending (see PostgreSQL's store)

    def use_seal_key(self, key: bytes) -> None:
        self._sealer = Sealer(key)

    @property
    def looks_up_ids(self) -> bool:
        """Whether the next append looks its ids up before writing. PostgreSQL's store
        stops after a group that replayed none (its unique index still catches a
        replay) and starts again after one that did."""
        return self._lookup

    def _writer(self, lock_key: int) -> AbstractContextManager[sa.Connection]:
        """A write transaction that holds the lock `lock_key` until commit."""
        raise NotImplementedError

    def _append_txn(
        self, ids: list[str], lookup: bool
    ) -> AbstractContextManager[tuple[sa.Connection, int, dict[str, StoredRecord]]]:
        """The writer's transaction, its tree size and the ids of `ids` already stored."""
        raise NotImplementedError

    def _sink(self, conn: sa.Connection) -> AbstractContextManager[LeafSink]:
        raise NotImplementedError

    # -- identity ---------------------------------------------------------------

    def identity(self) -> tuple[str, str] | None:
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(log_identity)).first()
        return (row.origin, row.verifier_key) if row else None

    def create_identity(self, origin: str, verifier_key: str, now_us: int) -> tuple[str, str]:
        with self._writer(SIGN_LOCK) as conn:
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
        """The ids already in the log are looked up under the writer lock, so no
        other replica can add one before this transaction commits; the unique
        constraint stays the last word, and if it ever refuses, the transaction
        runs again."""
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

    def _append_locked(
        self, pending: Sequence[PendingBatch], ids: list[str], *, lookup: bool
    ) -> list[Sequenced | MrmError]:
        # Only sequencing happens under the lock: every hash but the few interior
        # nodes a leaf completes, and the seal, was computed before.
        sealer = self._sealer
        if sealer is None:
            raise RuntimeError("use_seal_key was not called")
        seal = sealer.seal
        with (
            self._append_txn(ids, lookup) as (conn, size, existing),
            self._sink(conn) as sink,
        ):
            frontier = self._frontier(self.reader(conn), size)
            push = frontier.push
            group = _Group(existing)
            outcomes: list[Sequenced | MrmError] = []
            for batch in pending:
                placed = group.place(batch, frontier.size)
                outcomes.append(placed)
                if isinstance(placed, MrmError):
                    continue
                hashes = batch.leaf_hashes
                originals = placed.originals
                new: list[NewLeaf] = []
                for i, index in enumerate(placed.leaf_indexes):
                    if i not in originals:  # else a replay
                        h = hashes[i]
                        new.append((i, index, push(h), seal(index, h)))
                sink.write(batch, new)
        self._cached_frontier = frontier  # committed: safe to reuse for the next group
        return outcomes

    def _frontier(self, reader: LedgerReader, size: int) -> merkle.Frontier:
        """The tree's right edge; reused from the last commit when nobody appended since."""
        cached, self._cached_frontier = self._cached_frontier, None
        if cached is not None and cached.size == size:
            return cached
        return merkle.Frontier(size, reader.read_nodes)

    # -- reads and signing -------------------------------------------------------

    @contextmanager
    def reading(self) -> Iterator[LedgerReader]:
        with self.engine.connect() as conn:
            yield self.reader(conn)

    def size(self) -> int:
        with self.reading() as r:
            return r.size()

    @contextmanager
    def signing(self) -> Iterator[SigningTxn]:
        with self._writer(SIGN_LOCK) as conn:
            yield self.signing_txn(conn)


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
