"""The proxy's local spool: audit records the ledger has not acknowledged yet.

A SQLite file (`MRM_HOME/proxy-spool.db`) in WAL mode with synchronous=FULL:
once `put_many` returns, its records survive a SIGKILL or a power cut (the
commit waits for fsync), and a transaction is all-or-nothing, so a crash
mid-write leaves the spool as it was. The shipper replays it, oldest first,
whenever the ledger answers, and removes a record only once the ledger has
acknowledged it; the ledger's idempotency per record_id makes a replay after a
crash land exactly once.

Limits (quotable in the README):

- **Cap.** `MRM_PROXY_SPOOL_MAX_RECORDS` (default 1,000,000) counts records,
  not bytes. A prediction record is 0.5-2 KB for tabular models (the ledger
  refuses any over `MRM_LEDGER_MAX_RECORD_BYTES`, 1 MiB), so the default cap
  means roughly 0.5-2 GB of disk, plus the WAL (a few MB). Rows freed by
  `remove` are reused; the file does not shrink.
- **Past the cap** nothing blocks and no decision fails: the sample is dropped
  and counted, in the same transaction that refused it (so no crash can lose
  the count), per (reason, model). Once the ledger is back and the spool has
  drained, one GAP record per (reason, model) says how many samples are
  missing, why, and between which times; the `dropped` counter of
  GetProxyStatus and the metrics equals the sum of those GAP counts.
- **fsync cost.** Every `put_many` is one transaction and one fsync, whatever
  the batch size, so records spooled one at a time go two orders of magnitude
  slower than in batches of 256 (benchmarks/results/README.md). The shipper
  spools the backlog in batches (all that waits in the queue), so an outage
  costs one fsync per batch, never one per decision; strict mode shares one
  commit among the concurrent strict decisions (group commit).
- **What a SIGKILL loses**: nothing in the spool; what was only in memory
  (the queue, the batch in flight, drops not yet counted on disk) is lost
  with the process, see `mrm.proxy.shipper`.
- One process per spool file (the record count is cached in memory); replicas
  on one host need their own `MRM_HOME`. Thread-safe: one connection behind
  a lock.

Semantics:

- Records are keyed by record_id, so spooling a record that is already there
  is a no-op and does not count against the cap twice.
- `put_many` stores records in order until the cap is reached and refuses
  the rest; with `overflow_reason` the refused ones are counted as dropped in
  the same transaction.
- Drops are counted per (reason, model_name) in an *open* gap row.
  `take_gaps` seals every open row by giving it the record_id of the GAP
  record that will report it; a sealed row never changes again (later drops
  open a new row). A GAP re-sent after a crash (`Gap.record()`) is therefore
  byte-identical, and the ledger's idempotency makes the resend a no-op. `clear_gaps`
  deletes sealed rows once the ledger has their GAP records.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import NamedTuple

from mrm.client.ledger import new_record
from mrm.kernel.ids import new_record_id
from mrm.v1.ledger_pb2 import Record

_SCHEMA = """
CREATE TABLE IF NOT EXISTS records (
    record_id TEXT PRIMARY KEY,
    data BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS gaps (
    id INTEGER PRIMARY KEY,
    reason TEXT NOT NULL,
    model_name TEXT NOT NULL,
    dropped INTEGER NOT NULL,
    first_at_us INTEGER NOT NULL,
    last_at_us INTEGER NOT NULL,
    gap_record_id TEXT UNIQUE
);
CREATE UNIQUE INDEX IF NOT EXISTS gaps_open ON gaps (reason, model_name)
    WHERE gap_record_id IS NULL;
"""

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_ADD_DROPPED = """
INSERT INTO gaps (reason, model_name, dropped, first_at_us, last_at_us) VALUES (?, ?, ?, ?, ?)
ON CONFLICT (reason, model_name) WHERE gap_record_id IS NULL
DO UPDATE SET dropped = dropped + excluded.dropped, last_at_us = excluded.last_at_us
"""


class Gap(NamedTuple):
    """Samples dropped for one reason and model, sealed under one GAP record id."""

    dropped: int
    reason: str
    first_at_us: int
    last_at_us: int
    model_name: str
    record_id: str

    def record(self) -> Record:
        """The GAP record reporting this row; byte-identical every time it is built."""
        body = {"dropped": self.dropped, "reason": self.reason, "model_name": self.model_name}
        body |= {"from": _rfc3339(self.first_at_us), "until": _rfc3339(self.last_at_us)}
        # The ledger's own limits on model_name; one it would refuse stays in the body only.
        plain = len(self.model_name) <= 128 and self.model_name.isprintable()
        name = self.model_name if plain else ""
        return new_record("GAP", body, record_id=self.record_id, model_name=name)


def _rfc3339(us: int) -> str:
    return (_EPOCH + timedelta(microseconds=us)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _now_us() -> int:
    return time.time_ns() // 1000


class Spool:
    """Records waiting for the ledger, and the counts of those that never will reach it."""

    def __init__(self, path: Path, max_records: int) -> None:
        if max_records < 1:
            raise ValueError(f"max_records is {max_records} (want at least 1)")
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.max_records = max_records
        self._lock = threading.Lock()
        # Autocommit mode: every write below runs in an explicit BEGIN IMMEDIATE.
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.executescript(_SCHEMA)
        self._count: int = self._db.execute("SELECT count(*) FROM records").fetchone()[0]

    def close(self) -> None:
        with self._lock:
            self._db.close()

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        """One write transaction; the caller holds the lock."""
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield self._db
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    def count(self) -> int:
        """Records in the spool."""
        return self._count

    def put_many(self, records: Sequence[Record], *, overflow_reason: str | None = None) -> int:
        """Store records in order until the cap; returns n such that records[:n] are
        in the spool and records[n:] were refused (counted as dropped with
        `overflow_reason` when given). Atomic."""
        with self._lock:
            count, stored = self._count, 0
            with self._tx() as db:
                for rec in records:
                    if count >= self.max_records and not self._has(rec.record_id):
                        break
                    row = (rec.record_id, rec.SerializeToString())
                    count += db.execute("INSERT OR IGNORE INTO records VALUES (?, ?)", row).rowcount
                    stored += 1
                if overflow_reason is not None:
                    self._count_drops(records[stored:], overflow_reason)
            self._count = count
        return stored

    def _has(self, record_id: str) -> bool:
        sql = "SELECT 1 FROM records WHERE record_id = ?"
        return self._db.execute(sql, (record_id,)).fetchone() is not None

    def peek(self, limit: int) -> list[Record]:
        """Up to `limit` records, oldest first (rowids only grow while a row exists)."""
        with self._lock:
            rows = self._db.execute(
                "SELECT data FROM records ORDER BY rowid LIMIT ?", (limit,)
            ).fetchall()
        return [Record.FromString(data) for (data,) in rows]

    def remove(self, record_ids: Iterable[str]) -> int:
        """Forget records the ledger has acknowledged; returns how many were here."""
        ids = [(rid,) for rid in record_ids]
        with self._lock:
            with self._tx() as db:
                gone = db.executemany("DELETE FROM records WHERE record_id = ?", ids).rowcount
            self._count -= gone
        return gone

    def drop(self, records: Sequence[Record], reason: str) -> None:
        """Give up on records (the ledger refused them): remove any that are spooled
        and count them all as dropped, in one transaction."""
        with self._lock:
            with self._tx() as db:
                ids = [(r.record_id,) for r in records]
                gone = db.executemany("DELETE FROM records WHERE record_id = ?", ids).rowcount
                self._count_drops(records, reason)
            self._count -= gone

    def _count_drops(self, records: Sequence[Record], reason: str) -> None:
        now = _now_us()
        for model, n in Counter(r.model_name for r in records).items():
            self._db.execute(_ADD_DROPPED, (reason, model, n, now, now))

    def add_dropped(self, n: int, reason: str, model_name: str = "") -> None:
        """Count `n` samples dropped for `reason` (durably)."""
        if n <= 0:
            return
        now = _now_us()
        with self._lock, self._tx() as db:
            db.execute(_ADD_DROPPED, (reason, model_name, n, now, now))

    def has_gaps(self) -> bool:
        with self._lock:
            row = self._db.execute("SELECT EXISTS (SELECT 1 FROM gaps)").fetchone()
        return bool(row[0])

    def take_gaps(self) -> list[Gap]:
        """Seal the open gap rows and return every sealed row not yet cleared, oldest first."""
        with self._lock, self._tx() as db:
            open_rows = db.execute("SELECT id FROM gaps WHERE gap_record_id IS NULL").fetchall()
            for (row_id,) in open_rows:
                sql = "UPDATE gaps SET gap_record_id = ? WHERE id = ?"
                db.execute(sql, (new_record_id(), row_id))
            rows = db.execute(
                "SELECT dropped, reason, first_at_us, last_at_us, model_name, gap_record_id"
                " FROM gaps ORDER BY id"
            ).fetchall()
        return [Gap(*row) for row in rows]

    def clear_gaps(self, record_ids: Iterable[str]) -> None:
        """Forget sealed gap rows whose GAP records the ledger has acknowledged."""
        ids = [(rid,) for rid in record_ids]
        with self._lock, self._tx() as db:
            db.executemany("DELETE FROM gaps WHERE gap_record_id = ?", ids)
