"""Which notifications have been delivered, kept across restarts.

The ledger says which alerts exist; this file only says which (alert, state,
webhook) deliveries succeeded, so that a restarted monitor re-submitting recent
ALERT records sends nothing twice. Losing it means at worst a repeated message
(receivers also get an Idempotency-Key), never a lost alert.
"""

from __future__ import annotations

import sqlite3
import threading
from datetime import UTC, datetime
from pathlib import Path

_SCHEMA = """
CREATE TABLE IF NOT EXISTS delivered (
    alert_id TEXT NOT NULL,
    state TEXT NOT NULL,
    target TEXT NOT NULL,
    delivered_at TEXT NOT NULL,
    PRIMARY KEY (alert_id, state, target)
) WITHOUT ROWID
"""


class Outbox:
    """Delivered (alert_id, state, target key) triples in a SQLite file (WAL)."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        # One connection shared under a lock: the notifier's worker is its only
        # writer, and statements here are single-row and short.
        self._conn = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._lock = threading.Lock()
        with self._lock:
            self._conn.execute("PRAGMA journal_mode=WAL")
            self._conn.execute("PRAGMA synchronous=NORMAL")
            self._conn.execute(_SCHEMA)

    def delivered(self, alert_id: str, state: str, target: str) -> bool:
        with self._lock:
            row = self._conn.execute(
                "SELECT 1 FROM delivered WHERE alert_id = ? AND state = ? AND target = ?",
                (alert_id, state, target),
            ).fetchone()
        return row is not None

    def mark_delivered(self, alert_id: str, state: str, target: str) -> None:
        now = datetime.now(UTC).isoformat()
        with self._lock:
            self._conn.execute(
                "INSERT OR IGNORE INTO delivered VALUES (?, ?, ?, ?)",
                (alert_id, state, target, now),
            )

    def prune(self, before: datetime) -> int:
        """Forget deliveries older than `before` (older than any re-submitted alert)."""
        with self._lock:
            cur = self._conn.execute(
                "DELETE FROM delivered WHERE delivered_at < ?", (before.isoformat(),)
            )
        return cur.rowcount

    def close(self) -> None:
        with self._lock:
            self._conn.close()
