"""Tampering on PostgreSQL: a superuser goes around the ledger; `mrmctl ledger verify`
names exactly the leaf that was touched.

The append-only triggers and the role's privileges stop the services; they do
not stop a superuser, who can switch triggers off for a session. What stops a
superuser is that the signed checkpoints no longer match what the database says.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import sqlalchemy as sa

from mrm.client.ledger import LedgerClient
from mrm.tlog.canonical import canonical_json
from tests.conftest import RunningLedger
from tests.support.ledger_cli import append_many, first_bad_leaf, ok_json, refresh


@pytest.fixture
def superuser(pg_ledger_server: RunningLedger) -> Iterator[sa.Connection]:
    append_many(pg_ledger_server.addr, 60)
    refresh(pg_ledger_server.addr)
    append_many(pg_ledger_server.addr, 60, start=60)
    refresh(pg_ledger_server.addr)
    assert ok_json(pg_ledger_server.addr, "ledger", "verify")["valid"] is True
    engine = sa.create_engine(pg_ledger_server.settings.resolved_database_url())
    with engine.connect() as conn:
        # What a superuser can do and the service's role cannot: skip the triggers.
        conn.exec_driver_sql("SET session_replication_role = replica")
        yield conn
    engine.dispose()


def _record_id(addr: str, index: int) -> str:
    with LedgerClient(addr) as client:
        return next(r.record_id for r in client.query(page_size=1000) if r.leaf_index == index)


def test_update_is_named(pg_ledger_server: RunningLedger, superuser: sa.Connection) -> None:
    record_id = _record_id(pg_ledger_server.addr, 77)
    forged = canonical_json({"input": {"income": 1}, "output": {"label": 1}}).decode()
    superuser.execute(
        sa.text("UPDATE ledger_leaves SET body = :b WHERE leaf_index = 77"), {"b": forged}
    )
    superuser.commit()
    bad = first_bad_leaf(pg_ledger_server.addr)
    assert (bad["leaf_index"], bad["record_id"]) == (77, record_id)


def test_delete_is_named(pg_ledger_server: RunningLedger, superuser: sa.Connection) -> None:
    superuser.exec_driver_sql("DELETE FROM ledger_leaves WHERE leaf_index = 31")
    superuser.commit()
    bad = first_bad_leaf(pg_ledger_server.addr)
    assert bad["leaf_index"] == 31


def test_replaced_row_is_named(pg_ledger_server: RunningLedger, superuser: sa.Connection) -> None:
    # Delete a decision and insert a different one in its place, with a
    # self-consistent leaf hash: the signed roots still give it away.
    from mrm.tlog.leaf import leaf_bytes
    from mrm.tlog.merkle import leaf_hash

    row = superuser.execute(sa.text("SELECT * FROM ledger_leaves WHERE leaf_index = 12")).one()
    forged_body = canonical_json({"input": {"income": 999}, "output": {"label": 0}}).decode()
    forged_hash = leaf_hash(
        leaf_bytes(
            record_id=str(row.record_id),
            kind=row.kind,
            model_name=row.model_name or "",
            model_version=row.model_version or "",
            subject=row.subject or "",
            trace_id=row.trace_id or "",
            span_id=row.span_id or "",
            body_canonical=forged_body,
            recorded_at_us=row.recorded_at_us,
            actor=row.actor,
        )
    )
    superuser.exec_driver_sql("DELETE FROM ledger_leaves WHERE leaf_index = 12")
    values = dict(row._mapping) | {"body": forged_body, "leaf_hash": forged_hash}
    cols = ", ".join(values)
    superuser.execute(
        sa.text(
            f"INSERT INTO ledger_leaves ({cols}) VALUES ({', '.join(':' + c for c in values)})"
        ),
        values,
    )
    superuser.commit()
    bad = first_bad_leaf(pg_ledger_server.addr)
    # Its neighbour's audit path reads the forged stored hash too, and no stored
    # data tells the two apart: the audit names the forged leaf and its sibling.
    assert (bad["leaf_index"], bad["record_id"]) == (12, str(row.record_id))
    assert "or leaf 13" in str(bad["reason"])


def test_inserted_row_is_named(pg_ledger_server: RunningLedger, superuser: sa.Connection) -> None:
    # Slip a forged decision in after the latest checkpoint, as the ledger would
    # have written it, hash and all, but without the ledger's key for the seal.
    from mrm.client.ids import new_record_id
    from mrm.tlog.leaf import leaf_bytes
    from mrm.tlog.merkle import leaf_hash

    last = superuser.execute(
        sa.text("SELECT * FROM ledger_leaves ORDER BY leaf_index DESC")
    ).first()
    assert last is not None
    index = last.leaf_index + 1
    forged_id = new_record_id()
    body = canonical_json({"input": {"income": 5}, "output": {"label": 1}}).decode()
    h = leaf_hash(
        leaf_bytes(
            record_id=forged_id,
            kind="PREDICTION",
            model_name="credit-risk",
            model_version="1.2.4",
            subject="subject-1",
            trace_id="",
            span_id="",
            body_canonical=body,
            recorded_at_us=last.recorded_at_us + 1,
            actor=last.actor,
        )
    )
    superuser.execute(
        sa.text(
            "INSERT INTO ledger_leaves (leaf_index, record_id, kind, model_name, model_version,"
            " subject, recorded_at_us, actor, body, leaf_hash, subtree_hashes, seal) VALUES"
            " (:i, :r, 'PREDICTION', 'credit-risk', '1.2.4', 'subject-1', :t, :a, :b, :h, :s,"
            " :seal)"
        ),
        {
            "i": index,
            "r": forged_id,
            "t": last.recorded_at_us + 1,
            "a": last.actor,
            "b": body,
            "h": h,
            "s": b"",  # index is even here: it completes no subtree
            "seal": b"\x00" * 32,
        },
    )
    superuser.commit()
    assert index % 2 == 0
    bad = first_bad_leaf(pg_ledger_server.addr)
    assert (bad["leaf_index"], bad["record_id"]) == (index, forged_id)
    assert "no valid seal" in str(bad["reason"])
