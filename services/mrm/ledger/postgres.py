"""The ledger on PostgreSQL: advisory locks, pipelined round trips, binary COPY.

Rows are encoded in COPY's binary tuple format where the batch is prepared
(`copy_rows`, maybe in an intake worker process), so that under the writer's
lock only each row's index, subtree hashes and seal are joined to them.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager

import psycopg
import sqlalchemy as sa

from mrm.ledger.batch import PendingBatch
from mrm.ledger.reads import LedgerReader, SigningTxn
from mrm.ledger.records import StoredRecord
from mrm.ledger.sql import APPEND_LOCK, NewLeaf, SqlLedgerStore

_COPY_SQL = (
    "COPY ledger_leaves (leaf_index, record_id, kind, model_name, model_version, subject,"
    " trace_id, span_id, recorded_at_us, actor, body, leaf_hash, subtree_hashes, seal)"
    " FROM STDIN (FORMAT BINARY)"
)
# PostgreSQL's binary COPY format: a signature, flags and header extension
# length; each row its field count and length-prefixed fields; then -1.
_COPY_HEADER = b"PGCOPY\n\xff\r\n\x00" + bytes(8)
_COPY_TRAILER = b"\xff\xff"
_ROW_HEAD = (14).to_bytes(2, "big") + (8).to_bytes(4, "big")  # 14 fields; leaf_index is int8
_NULL = b"\xff\xff\xff\xff"
_UUID_LEN = (16).to_bytes(4, "big")
_INT8_LEN = (8).to_bytes(4, "big")
_HASH_LEN = (32).to_bytes(4, "big")
# Column names come from our own table definition, never from input.
_EXISTING_SQL = (
    "SELECT leaf_index, record_id, kind, coalesce(model_name, ''), coalesce(model_version, ''),"
    " coalesce(subject, ''), coalesce(trace_id, ''), coalesce(span_id, ''), body,"
    " recorded_at_us, actor, leaf_hash FROM ledger_leaves WHERE record_id = ANY(%s::uuid[])"
)
_SEALS_SQL = (
    "SELECT leaf_index, leaf_hash, subtree_hashes, seal FROM ledger_leaves"
    " WHERE leaf_index >= %s AND leaf_index < %s ORDER BY leaf_index"
)
_SEAL_CHUNK = 10_000


def _text(value: str | bytes) -> bytes:
    data = value.encode() if isinstance(value, str) else value
    return len(data).to_bytes(4, "big") + data


def _nullable(value: str) -> bytes:
    """The store keeps "" as NULL in its optional text columns."""
    return _text(value) if value else _NULL


def copy_rows(batch: PendingBatch, body_bytes: Sequence[bytes]) -> list[bytes]:
    """Each record's binary COPY fields from record_id to leaf_hash (the store
    adds leaf_index before them and the subtree hashes and seal after them)."""
    kinds, names, versions, subjects, traces, spans, _ = batch.contents.columns()
    shared = _INT8_LEN + batch.recorded_at_us.to_bytes(8, "big", signed=True) + _text(batch.actor)
    # Kinds, model names and versions repeat within a batch: encode each once.
    kind_cols = {k: _text(k) for k in set(kinds)}
    model_cols = {v: _nullable(v) for v in {*names, *versions}}
    return [
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
        for rid, kind, name, version, subject, trace, span, raw, digest in zip(
            batch.record_ids,
            kinds,
            names,
            versions,
            subjects,
            traces,
            spans,
            body_bytes,
            batch.leaf_hashes,
            strict=True,
        )
    ]


class PostgresReader(LedgerReader):
    def leaf_seals(self, start: int, end: int) -> Iterator[tuple[int, bytes, bytes, bytes]]:
        # Every appended leaf passes here once before it is signed: psycopg
        # directly, as SQLAlchemy's row processing costs more than the query.
        raw = self.conn.connection.driver_connection
        assert raw is not None
        with raw.cursor(binary=True) as cur:
            for lo in range(start, end, _SEAL_CHUNK):
                cur.execute(_SEALS_SQL, (lo, min(end, lo + _SEAL_CHUNK)))
                yield from cur


class PostgresSigningTxn(PostgresReader, SigningTxn):
    pass


class PostgresLedgerStore(SqlLedgerStore):
    reader = PostgresReader
    signing_txn = PostgresSigningTxn

    def __init__(self, engine: sa.Engine) -> None:
        super().__init__(engine)
        self.encode_rows = copy_rows

    @contextmanager
    def _writer(self, lock_key: int) -> Iterator[sa.Connection]:
        with self.engine.begin() as conn:
            conn.execute(sa.select(sa.func.pg_advisory_xact_lock(lock_key)))
            yield conn

    @contextmanager
    def _append_txn(
        self, ids: list[str], lookup: bool
    ) -> Iterator[tuple[sa.Connection, int, dict[str, StoredRecord]]]:
        """No ids are looked up unless `lookup`: after a group that replayed none,
        the next skips the lookup, and the unique constraint catches a replay."""
        with self.engine.begin() as conn:
            raw = conn.connection.driver_connection
            assert raw is not None
            # Lock, size and lookup in one round trip (each statement still runs
            # after the one before, so the size is read under the lock). Every
            # round trip counts: the writer waits for the interpreter lock after each.
            with raw.cursor() as lock, raw.cursor() as top, raw.cursor() as found:
                with raw.pipeline():
                    lock.execute("SELECT pg_advisory_xact_lock(%s)", (APPEND_LOCK,))
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

    @contextmanager
    def _sink(self, conn: sa.Connection) -> Iterator[_CopySink]:
        with ExitStack() as stack:
            sink = _CopySink(conn, stack)
            yield sink
            sink.finish()  # ends the COPY: PostgreSQL reports any violation here


class _CopySink:
    """One binary COPY that each batch's rows join as soon as they are sequenced,
    so the server inserts one batch while the next is being sequenced. An error
    before `finish` abandons the COPY (the ExitStack unwinds with it)."""

    def __init__(self, conn: sa.Connection, stack: ExitStack) -> None:
        self._conn = conn
        self._stack = stack
        self._copy: psycopg.Copy | None = None

    def write(self, batch: PendingBatch, new: list[NewLeaf]) -> None:
        if not new:
            return
        fields = batch.rows
        if fields is None:  # prepared without this store's encoding
            fields = copy_rows(batch, [body.encode() for body in batch.contents.columns()[-1]])
        rows = [
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
            for i, index, subtrees, mark in new
        ]
        if self._copy is None:
            raw = self._conn.connection.driver_connection
            assert raw is not None
            cur = self._stack.enter_context(raw.cursor())
            self._copy = self._stack.enter_context(cur.copy(_COPY_SQL))
            self._copy.write(_COPY_HEADER)
        self._copy.write(b"".join(rows))

    def finish(self) -> None:
        if self._copy is not None:
            self._copy.write(_COPY_TRAILER)
