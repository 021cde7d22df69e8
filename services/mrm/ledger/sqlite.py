"""The ledger on SQLite (development and tests): one IMMEDIATE transaction per
write, which SQLite serializes, and a plain INSERT of each group's rows."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import sqlalchemy as sa

from mrm.ledger.batch import PendingBatch
from mrm.ledger.reads import RECORD_COLUMNS
from mrm.ledger.records import StoredRecord
from mrm.ledger.sql import NewLeaf, SqlLedgerStore
from mrm.ledger.tables import leaves

_MAX_PARAMS = 500  # under SQLite's bound-parameter limit


class SqliteLedgerStore(SqlLedgerStore):
    @contextmanager
    def _writer(self, lock_key: int) -> Iterator[sa.Connection]:
        # One database file, one writer at a time: the lock key is implied.
        immediate = self.engine.connect().execution_options(sqlite_begin="IMMEDIATE")
        with immediate as conn, conn.begin():
            yield conn

    @contextmanager
    def _append_txn(
        self, ids: list[str], lookup: bool
    ) -> Iterator[tuple[sa.Connection, int, dict[str, StoredRecord]]]:
        with self._writer(0) as conn:
            yield conn, self.reader(conn).size(), _existing(conn, ids)

    @contextmanager
    def _sink(self, conn: sa.Connection) -> Iterator[_InsertSink]:
        sink = _InsertSink()
        yield sink
        if sink.rows:
            conn.execute(leaves.insert(), sink.rows)


def _existing(conn: sa.Connection, ids: list[str]) -> dict[str, StoredRecord]:
    found: dict[str, StoredRecord] = {}
    uuids = [uuid.UUID(i) for i in ids]
    for start in range(0, len(uuids), _MAX_PARAMS):
        chunk = uuids[start : start + _MAX_PARAMS]
        for row in conn.execute(sa.select(*RECORD_COLUMNS).where(leaves.c.record_id.in_(chunk))):
            found[str(row.record_id)] = StoredRecord(*row)
    return found


class _InsertSink:
    def __init__(self) -> None:
        self.rows: list[dict[str, object]] = []

    def write(self, batch: PendingBatch, new: list[NewLeaf]) -> None:
        kinds, names, versions, subjects, traces, spans, bodies = batch.contents.columns()
        # "" is NULL in the optional text columns.
        self.rows += [
            {
                "leaf_index": index,
                "record_id": uuid.UUID(batch.record_ids[i]),
                "kind": kinds[i],
                "model_name": names[i] or None,
                "model_version": versions[i] or None,
                "subject": subjects[i] or None,
                "trace_id": traces[i] or None,
                "span_id": spans[i] or None,
                "recorded_at_us": batch.recorded_at_us,
                "actor": batch.actor,
                "body": bodies[i],
                "leaf_hash": batch.leaf_hashes[i],
                "subtree_hashes": subtrees,
                "seal": mark,
            }
            for i, index, subtrees, mark in new
        ]
