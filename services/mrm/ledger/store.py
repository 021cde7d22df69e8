"""The ledger's storage contract, in the manner of Trillian's `LogStorage`.

`Ledger`, its signer and its writer see storage only through `LedgerStore`.
Two implementations speak SQL to the ledger's tables (see tables.py):
`PostgresLedgerStore` (postgres.py: advisory locks, pipelined round trips,
binary COPY) and `SqliteLedgerStore` (sqlite.py: one IMMEDIATE transaction,
plain INSERTs). What they share, the sequencing of a group of batches, is
`SqlLedgerStore` (sql.py).
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractContextManager
from typing import Protocol

import sqlalchemy as sa

from mrm.core.errors import MrmError
from mrm.ledger.batch import PendingBatch, RowEncoder, Sequenced
from mrm.ledger.reads import LedgerReader, SigningTxn


class LedgerStore(Protocol):
    """Append-only storage of leaves, subtree hashes and checkpoints."""

    engine: sa.Engine

    @property
    def encode_rows(self) -> RowEncoder | None:
        """How batches bound for this store should be encoded where they are
        prepared (see mrm.ledger.batch); None if the store encodes them itself."""

    def identity(self) -> tuple[str, str] | None:
        """The log's (origin, verifier key), if it has been created."""

    def create_identity(self, origin: str, verifier_key: str, now_us: int) -> tuple[str, str]:
        """Record the log's origin and key once; a concurrent first start keeps the winner's."""

    def use_seal_key(self, key: bytes) -> None:
        """The key every appended row is sealed with (see mrm.ledger.seal)."""

    def append_batches(self, pending: Sequence[PendingBatch]) -> list[Sequenced | MrmError]:
        """Append several batches in one transaction (group commit); each batch is
        all-or-nothing, and one that replays a record_id with other content gets
        AlreadyExists while the others land."""

    def reading(self) -> AbstractContextManager[LedgerReader]:
        """A reader on one pooled connection, for every query of one request."""

    def size(self) -> int:
        """The number of leaves stored."""

    def signing(self) -> AbstractContextManager[SigningTxn]:
        """The one transaction in which a checkpoint may be signed and stored."""


def open_store(engine: sa.Engine) -> LedgerStore:
    """The store for the engine's database."""
    from mrm.ledger.postgres import PostgresLedgerStore
    from mrm.ledger.sqlite import SqliteLedgerStore

    if engine.dialect.name == "postgresql":
        return PostgresLedgerStore(engine)
    if engine.dialect.name == "sqlite":
        return SqliteLedgerStore(engine)
    raise ValueError(f"the ledger stores to PostgreSQL or SQLite, not {engine.dialect.name}")
