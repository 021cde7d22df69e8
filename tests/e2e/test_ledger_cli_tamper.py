"""`mrmctl ledger verify` names the leaf someone changed behind the ledger's back.

The attacker here has the SQLite file: they drop the append-only triggers and
edit rows directly, as a superuser could on PostgreSQL.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator

import pytest

from mrm.client.ledger import LedgerClient
from mrm.tlog.canonical import canonical_json
from mrm.tlog.leaf import leaf_bytes_from_proto
from mrm.tlog.merkle import leaf_hash
from tests.conftest import RunningLedger
from tests.support.ledger_cli import append_many, cli, first_bad_leaf, ok_json, refresh


@pytest.fixture
def ledger_db(ledger_server: RunningLedger) -> Iterator[sqlite3.Connection]:
    append_many(ledger_server.addr, 40)
    refresh(ledger_server.addr)
    append_many(ledger_server.addr, 40, start=40)
    refresh(ledger_server.addr)
    assert ok_json(ledger_server.addr, "ledger", "verify")["valid"] is True
    url = ledger_server.settings.resolved_database_url()
    conn = sqlite3.connect(url.removeprefix("sqlite:///"))
    for event in ("update", "delete"):
        conn.execute(f"DROP TRIGGER ledger_leaves_no_{event}")
    yield conn
    conn.close()


def _rewritten(addr: str, index: int) -> tuple[str, str, bytes]:
    """The record at `index` with a changed decision, and the hash an attacker would store."""
    with LedgerClient(addr) as client:
        rec = next(r for r in client.query(page_size=100) if r.leaf_index == index)
    rec.body_json = canonical_json({"input": {"income": 1}, "output": {"label": 1}}).decode()
    return rec.record_id, rec.body_json, leaf_hash(leaf_bytes_from_proto(rec))


def test_changed_body(ledger_server: RunningLedger, ledger_db: sqlite3.Connection) -> None:
    record_id, body, _ = _rewritten(ledger_server.addr, 57)
    ledger_db.execute("UPDATE ledger_leaves SET body = ? WHERE leaf_index = 57", (body,))
    ledger_db.commit()
    bad = first_bad_leaf(ledger_server.addr)
    assert (bad["leaf_index"], bad["record_id"]) == (57, record_id)


def test_changed_body_and_stored_hash(
    ledger_server: RunningLedger, ledger_db: sqlite3.Connection
) -> None:
    record_id, body, new_hash = _rewritten(ledger_server.addr, 23)
    ledger_db.execute(
        "UPDATE ledger_leaves SET body = ?, leaf_hash = ? WHERE leaf_index = 23", (body, new_hash)
    )
    ledger_db.commit()
    bad = first_bad_leaf(ledger_server.addr)
    reason = str(bad["reason"])
    if bad["leaf_index"] == 23:
        # Paths whose lowest level does not come from the rewritten column.
        assert bad["record_id"] == record_id
    else:
        # Today the ledger builds the lowest level of a path from the stored
        # leaf hash, the column that was rewritten: the audit narrows the edit
        # down to the pair (22, 23) and names both (see mrm.client.localize).
        assert bad["leaf_index"] == 22
        assert "or leaf 23" in reason
        assert record_id in reason
    text = cli(ledger_server.addr, "ledger", "verify")
    assert f"first bad leaf: {bad['leaf_index']}" in text.stdout


def test_deleted_row(ledger_server: RunningLedger, ledger_db: sqlite3.Connection) -> None:
    ledger_db.execute("DELETE FROM ledger_leaves WHERE leaf_index = 31")
    ledger_db.commit()
    bad = first_bad_leaf(ledger_server.addr)
    assert (bad["leaf_index"], bad["record_id"]) == (31, None)
