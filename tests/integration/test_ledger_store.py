"""The ledger's storage on SQLite and on PostgreSQL: one suite, both backends."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import cast

import pytest
import sqlalchemy as sa

from mrm.core.errors import IntegrityError, InvalidArgument, NotFound
from mrm.ledger.records import NewRecord, RecordFilter, StoredRecord
from mrm.ledger.sql import SqlLedgerStore
from mrm.tlog.checkpoint import parse_checkpoint
from mrm.tlog.merkle import leaf_hash, root_from_leaf_hashes, verify_consistency, verify_inclusion
from mrm.tlog.note import open_note, parse_vkey
from tests.support.ledger import new_record, open_ledger, uuid7


def test_append_assigns_dense_indexes_and_hashes(engine: sa.Engine, tmp_path: Path) -> None:
    ledger = open_ledger(engine, tmp_path)
    first = ledger.append([new_record(i) for i in range(5)], "alice")
    second = ledger.append([new_record(i) for i in range(5, 8)], "bob")
    results = first + second
    assert [r.record.leaf_index for r in results] == list(range(8))
    assert not any(r.duplicate for r in results)
    for r in results:
        assert r.record.leaf_hash == leaf_hash(r.record.leaf_bytes())
    assert [r.record.actor for r in results] == ["alice"] * 5 + ["bob"] * 3
    stamps = [r.record.recorded_at_us for r in results]
    assert stamps == sorted(stamps)


def test_replay_returns_the_original_leaf(engine: sa.Engine, tmp_path: Path) -> None:
    ledger = open_ledger(engine, tmp_path)
    batch = [new_record(i) for i in range(3)]
    original = ledger.append(batch, "alice")
    replay = ledger.append([batch[1], new_record(9), batch[1]], "mallory")
    assert replay[0].duplicate
    assert replay[2].duplicate
    assert replay[0].record == original[1].record  # actor and time of the first append
    assert replay[1].record.leaf_index == 3
    assert not replay[1].duplicate
    assert ledger.store.size() == 4


def test_replay_with_other_content_is_refused(engine: sa.Engine, tmp_path: Path) -> None:
    from dataclasses import replace

    from mrm.core.errors import AlreadyExists

    ledger = open_ledger(engine, tmp_path)
    rec = new_record(1)
    ledger.append([rec], "alice")
    with pytest.raises(AlreadyExists, match=str(rec.record_id)):
        ledger.append([new_record(2), replace(rec, body='{"forged":true}')], "alice")
    assert ledger.store.size() == 1  # nothing of the refused batch landed


def test_concurrent_duplicates_add_one_leaf_each(engine: sa.Engine, tmp_path: Path) -> None:
    ledger = open_ledger(engine, tmp_path)
    batch = [new_record(i) for i in range(50)]
    errors: list[BaseException] = []
    results: list[list[int]] = []

    def worker(k: int) -> None:
        try:
            mine = batch[k % 3 :] + batch[: k % 3]  # same ids, different order
            out = ledger.append(mine, f"w{k}")
            results.append(sorted(r.record.leaf_index for r in out))
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert ledger.store.size() == 50
    assert all(r == list(range(50)) for r in results)


def test_proofs_and_checkpoints(engine: sa.Engine, tmp_path: Path) -> None:
    ledger = open_ledger(engine, tmp_path)
    empty = ledger.latest_checkpoint(refresh=False)
    assert empty.tree_size == 0
    appended = ledger.append([new_record(i) for i in range(37)], "alice")
    cp = ledger.latest_checkpoint(refresh=True)
    note = open_note(cp.note, [parse_vkey(ledger.verifier_key)])
    body = parse_checkpoint(note.text)
    assert (body.origin, body.size, body.root_hash) == (ledger.origin, 37, cp.root_hash)
    hashes = [a.record.leaf_hash for a in appended]
    assert cp.root_hash == root_from_leaf_hashes(hashes)
    for i in (0, 17, 36):
        proof = ledger.inclusion_proof(
            record_id=appended[i].record.record_id, leaf_index=None, tree_size=0
        )
        assert proof.checkpoint == cp
        verify_inclusion(hashes[i], i, 37, proof.path, cp.root_hash)
    cons = ledger.consistency_proof(10, 37)
    verify_consistency(10, 37, cons.path, root_from_leaf_hashes(hashes[:10]), cp.root_hash)
    # A proof at a size with no checkpoint still verifies against the computed root.
    at20 = ledger.inclusion_proof(record_id=None, leaf_index=5, tree_size=20)
    assert at20.checkpoint is None
    verify_inclusion(hashes[5], 5, 20, at20.path, root_from_leaf_hashes(hashes[:20]))


def test_proof_requests_beyond_the_tree(engine: sa.Engine, tmp_path: Path) -> None:
    ledger = open_ledger(engine, tmp_path)
    appended = ledger.append([new_record(i) for i in range(4)], "alice")
    with pytest.raises(InvalidArgument, match="tree_size: 9 is beyond the tree size 4"):
        ledger.inclusion_proof(record_id=None, leaf_index=1, tree_size=9)
    with pytest.raises(InvalidArgument, match="leaf_index: 4 is beyond"):
        ledger.inclusion_proof(record_id=None, leaf_index=4, tree_size=0)
    with pytest.raises(InvalidArgument, match="tree_size: 2 does not cover leaf 3"):
        ledger.inclusion_proof(record_id=appended[3].record.record_id, leaf_index=None, tree_size=2)
    with pytest.raises(InvalidArgument, match="old_size: 5 is greater"):
        ledger.consistency_proof(5, 4)
    with pytest.raises(InvalidArgument, match="new_size: 5 is beyond"):
        ledger.consistency_proof(1, 5)
    with pytest.raises(NotFound):
        ledger.inclusion_proof(record_id=uuid7(), leaf_index=None, tree_size=0)


def test_query_filters_and_pages(engine: sa.Engine, tmp_path: Path) -> None:
    ledger = open_ledger(engine, tmp_path)
    ledger.append([new_record(i) for i in range(30)], "alice")
    ledger.append([new_record(0, kind="DEPLOYMENT", model_name="other", subject="")], "alice")
    assert (
        len(
            ledger.query(
                RecordFilter(kind="DEPLOYMENT"), page_token="", page_size=100, newest_first=False
            ).records
        )
        == 1
    )
    subj = RecordFilter(subject="subject-3")
    seen: list[int] = []
    token = ""
    while True:
        page = ledger.query(subj, page_token=token, page_size=2, newest_first=True)
        seen += [r.leaf_index for r in page.records]
        token = page.next_token
        if not token:
            break
    assert seen == [24, 17, 10, 3]
    with pytest.raises(InvalidArgument, match="page_token"):
        ledger.query(
            RecordFilter(),
            page_token=page.next_token or "djE6eHh4OjE",
            page_size=2,
            newest_first=True,
        )
    stamps = [
        r.recorded_at_us
        for r in ledger.query(
            RecordFilter(), page_token="", page_size=100, newest_first=False
        ).records
    ]
    window = RecordFilter(start_us=stamps[0], end_us=stamps[0] + 1)
    assert ledger.query(window, page_token="", page_size=100, newest_first=False).records


def test_rows_cannot_be_changed_or_removed(engine: sa.Engine, tmp_path: Path) -> None:
    ledger = open_ledger(engine, tmp_path)
    ledger.append([new_record(1)], "alice")
    ledger.latest_checkpoint(refresh=True)
    for statement in (
        "UPDATE ledger_leaves SET body = '{}'",
        "DELETE FROM ledger_leaves",
        "UPDATE ledger_checkpoints SET note = ''",
        "DELETE FROM ledger_checkpoints",
        "DELETE FROM ledger_log",
    ):
        with pytest.raises(sa.exc.DatabaseError, match="append-only"), engine.begin() as conn:
            conn.exec_driver_sql(statement)
    if engine.dialect.name == "postgresql":
        with pytest.raises(sa.exc.DatabaseError, match="append-only"), engine.begin() as conn:
            conn.exec_driver_sql("TRUNCATE ledger_leaves")
    assert ledger.store.size() == 1


def test_durable_across_restart(engine: sa.Engine, tmp_path: Path) -> None:
    ledger = open_ledger(engine, tmp_path)
    ledger.append([new_record(i) for i in range(10)], "alice")
    cp = ledger.latest_checkpoint(refresh=True)
    engine.dispose()
    reopened = open_ledger(engine, tmp_path)
    assert (reopened.origin, reopened.verifier_key) == (ledger.origin, ledger.verifier_key)
    assert reopened.latest_checkpoint(refresh=False) == cp
    more = reopened.append([new_record(99)], "bob")
    assert more[0].record.leaf_index == 10


def test_a_different_key_for_the_log_is_refused(engine: sa.Engine, tmp_path: Path) -> None:
    from mrm.core.errors import FailedPrecondition

    open_ledger(engine, tmp_path / "a")
    with pytest.raises(FailedPrecondition, match="is not the key of log"):
        open_ledger(engine, tmp_path / "b")


def test_signer_refuses_a_tampered_tree(engine: sa.Engine, tmp_path: Path) -> None:
    ledger = open_ledger(engine, tmp_path)
    ledger.append([new_record(i) for i in range(8)], "alice")
    ledger.latest_checkpoint(refresh=True)
    # Rewrite the stored hash of the subtree over leaves 0..7 (kept with leaf 7).
    # The signer reads it to extend the tree, so it must notice; tampering with
    # lower nodes only is for the full audit (`mrmctl ledger verify`) to find.
    _tamper(
        engine, "UPDATE ledger_leaves SET subtree_hashes = :h WHERE leaf_index = 7", h=b"\x00" * 96
    )
    ledger.append([new_record(50)], "alice")
    with pytest.raises(IntegrityError, match="no longer matches the checkpoint signed at size 8"):
        ledger.latest_checkpoint(refresh=True)


def _tamper(engine: sa.Engine, sql: str, **params: object) -> None:
    """What a database superuser can do: bypass the append-only triggers."""
    with engine.begin() as conn:
        if engine.dialect.name == "postgresql":
            conn.exec_driver_sql("SET LOCAL session_replication_role = replica")
            conn.execute(sa.text(sql), params)
        else:
            names = [
                r[0]
                for r in conn.exec_driver_sql("SELECT name FROM sqlite_master WHERE type='trigger'")
            ]
            ddl = [
                r[0]
                for r in conn.exec_driver_sql("SELECT sql FROM sqlite_master WHERE type='trigger'")
            ]
            for name in names:
                conn.exec_driver_sql(f"DROP TRIGGER {name}")
            conn.execute(sa.text(sql), params)
            for statement in ddl:
                conn.exec_driver_sql(statement)


def test_signer_refuses_forged_subtree_hashes_in_the_unsigned_tail(
    engine: sa.Engine, tmp_path: Path
) -> None:
    # Leaf 11 completes the subtrees over 10..11 and 8..11; both are stored with
    # it. Rewriting them (seal intact) must not get a root the leaves lack signed.
    ledger = open_ledger(engine, tmp_path)
    ledger.append([new_record(i) for i in range(8)], "alice")
    ledger.latest_checkpoint(refresh=True)
    ledger.append([new_record(i) for i in range(8, 12)], "alice")
    _tamper(
        engine, "UPDATE ledger_leaves SET subtree_hashes = :h WHERE leaf_index = 11", h=b"\1" * 64
    )
    with pytest.raises(IntegrityError, match=r"leaf 11 .* stores subtree hashes") as err:
        ledger.latest_checkpoint(refresh=True)
    assert err.value.leaf_index == 11
    assert ledger.store.size() == 12


def test_a_tampered_ledger_restarts_read_only(engine: sa.Engine, tmp_path: Path) -> None:
    from mrm.core.errors import Unavailable

    ledger = open_ledger(engine, tmp_path)
    ledger.append([new_record(i) for i in range(4)], "alice")
    ledger.latest_checkpoint(refresh=True)
    ledger.append([new_record(4)], "alice")
    _tamper(engine, "UPDATE ledger_leaves SET seal = :s WHERE leaf_index = 4", s=b"\0" * 32)
    ledger.close()
    reopened = open_ledger(engine, tmp_path)  # starts, degraded, instead of failing
    assert reopened.integrity_failure is not None
    assert "leaf 4" in reopened.integrity_failure
    assert reopened.get(
        reopened.inclusion_proof(record_id=None, leaf_index=1, tree_size=0).record.record_id
    )
    with pytest.raises(Unavailable, match="refuses appends"):
        reopened.append([new_record(5)], "alice")
    reopened.close()


def _as_new(rec: StoredRecord) -> NewRecord:
    return NewRecord(
        record_id=rec.record_id,
        kind=rec.kind,
        model_name=rec.model_name,
        model_version=rec.model_version,
        subject=rec.subject,
        trace_id=rec.trace_id,
        span_id=rec.span_id,
        body=rec.body,
    )


def test_replays_after_appends_without_lookups(engine: sa.Engine, tmp_path: Path) -> None:
    """PostgreSQL appends skip the stored-id lookup until a replay is refused by the
    unique index; the group then reruns with it. The outcome is the same either way."""
    from dataclasses import replace

    from mrm.core.errors import AlreadyExists

    ledger = open_ledger(engine, tmp_path)
    first = ledger.append([new_record(i) for i in range(4)], "alice")
    fresh = ledger.append([new_record(4)], "alice")
    assert [r.record.leaf_index for r in fresh] == [4]
    pg = engine.dialect.name == "postgresql"
    store = cast(SqlLedgerStore, ledger.store)
    assert store.looks_up_ids is not pg  # the next group skips the lookup on PostgreSQL
    again = ledger.append([new_record(5), _as_new(first[2].record), new_record(6)], "bob")
    assert [(r.record.leaf_index, r.duplicate) for r in again] == [
        (5, False),
        (2, True),
        (6, False),
    ]
    assert again[1].record == first[2].record
    assert store.looks_up_ids  # a replay was seen: look up again
    forged = replace(_as_new(first[0].record), body='{"forged":true}')
    with pytest.raises(AlreadyExists, match="leaf 0"):
        ledger.append([new_record(7), forged], "mallory")
    assert ledger.store.size() == 7  # the refused batch added nothing
    assert [r.record.leaf_index for r in ledger.append([new_record(8)], "alice")] == [7]


def test_query_resumes_from_a_leaf_index(engine: sa.Engine, tmp_path: Path) -> None:
    """A follower (the monitor) reads on from the leaf after the last it saw."""
    ledger = open_ledger(engine, tmp_path)
    ledger.append([new_record(i) for i in range(10)], "alice")
    page = ledger.query(RecordFilter(start_leaf=7), page_token="", page_size=2, newest_first=False)
    assert [r.leaf_index for r in page.records] == [7, 8]
    rest = ledger.query(
        RecordFilter(start_leaf=7), page_token=page.next_token, page_size=2, newest_first=False
    )
    assert [r.leaf_index for r in rest.records] == [9]
    assert not rest.next_token
    with pytest.raises(InvalidArgument, match="page_token"):  # a token of another start
        ledger.query(
            RecordFilter(start_leaf=3), page_token=page.next_token, page_size=2, newest_first=False
        )
    empty = ledger.query(
        RecordFilter(start_leaf=10), page_token="", page_size=5, newest_first=False
    )
    assert empty.records == []
    assert not empty.next_token
