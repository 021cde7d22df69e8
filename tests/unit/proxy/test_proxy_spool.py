"""The proxy's spool: cap, idempotent re-spooling, removal, and drop counts that survive."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest

from mrm.client.ids import is_uuid7
from mrm.client.ledger import new_record
from mrm.proxy.spool import Spool
from mrm.v1.ledger_pb2 import RECORD_KIND_GAP, Record


def records(n: int, model: str = "credit-risk") -> list[Record]:
    return [new_record("PREDICTION", {"i": i}, model_name=model) for i in range(n)]


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "spool" / "spool.db"


def test_put_peek_oldest_first_and_remove(path: Path) -> None:
    spool = Spool(path, 100)
    recs = records(10)
    assert spool.put_many(recs) == 10
    assert spool.count() == 10
    assert spool.peek(3) == recs[:3]
    assert spool.remove([recs[0].record_id, recs[2].record_id, "not-there"]) == 2
    assert spool.count() == 8
    assert [r.record_id for r in spool.peek(100)] == [r.record_id for r in recs[1:2] + recs[3:]]


def test_the_cap_refuses_the_rest_and_counts_them(path: Path) -> None:
    spool = Spool(path, 5)
    recs = records(3, "a") + records(4, "b")
    assert spool.put_many(recs, overflow_reason="full") == 5
    assert spool.peek(10) == recs[:5]
    assert spool.put_many(records(1)) == 0  # nothing fits, nothing counted without a reason
    gaps = {(g.model_name, g.reason): g.dropped for g in spool.take_gaps()}
    assert gaps == {("b", "full"): 2}
    # Freed room is usable again.
    spool.remove([recs[0].record_id])
    assert spool.put_many(recs[5:]) == 1


def test_respooling_is_a_no_op_even_at_the_cap(path: Path) -> None:
    spool = Spool(path, 3)
    recs = records(3)
    assert spool.put_many(recs) == 3
    assert spool.put_many([recs[1], recs[1], recs[2]], overflow_reason="full") == 3
    assert spool.count() == 3
    assert not spool.has_gaps()


def test_everything_survives_a_reopen(path: Path) -> None:
    spool = Spool(path, 10)
    recs = records(4)
    spool.put_many(recs)
    spool.add_dropped(7, "queue full", "credit-risk")
    spool.add_dropped(2, "queue full", "credit-risk")
    spool.add_dropped(1, "refused", "")
    spool.close()
    again = Spool(path, 10)
    assert again.count() == 4
    assert again.peek(10) == recs
    gaps = sorted((g.reason, g.model_name, g.dropped) for g in again.take_gaps())
    assert gaps == [("queue full", "credit-risk", 9), ("refused", "", 1)]


def test_sealed_gaps_keep_their_record_id_and_counts(path: Path) -> None:
    spool = Spool(path, 10)
    spool.add_dropped(3, "full", "m")
    (first,) = spool.take_gaps()
    assert is_uuid7(first.record_id)
    assert first.first_at_us <= first.last_at_us
    # New drops after sealing open a new row; the sealed one is unchanged.
    spool.add_dropped(2, "full", "m")
    spool.close()
    reopened = Spool(path, 10)
    sealed, newer = reopened.take_gaps()
    assert sealed == first
    assert (newer.dropped, newer.reason) == (2, "full")
    assert newer.record_id != first.record_id
    reopened.clear_gaps([first.record_id])
    assert reopened.take_gaps() == [newer]
    reopened.clear_gaps([newer.record_id])
    assert not reopened.has_gaps()


def test_drop_removes_and_counts_in_one_go(path: Path) -> None:
    spool = Spool(path, 10)
    recs = records(3)
    spool.put_many(recs[:2])
    spool.drop(recs, "the ledger refused the record: bad")
    assert spool.count() == 0
    (gap,) = spool.take_gaps()
    assert (gap.dropped, gap.model_name) == (3, "credit-risk")


def test_concurrent_writers_respect_the_cap(path: Path) -> None:
    spool = Spool(path, 500)
    stored: list[int] = []

    def write() -> None:
        for _ in range(10):
            stored.append(spool.put_many(records(10), overflow_reason="full"))

    threads = [threading.Thread(target=write) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(stored) == spool.count() == 500
    assert sum(g.dropped for g in spool.take_gaps()) == 800 - 500


def test_rejects_a_useless_cap(path: Path) -> None:
    with pytest.raises(ValueError, match="max_records"):
        Spool(path, 0)


def test_a_sealed_gap_becomes_the_same_gap_record_every_time(path: Path) -> None:
    spool = Spool(path, 10)
    spool.add_dropped(4, "spool full", "credit-risk")
    (gap,) = spool.take_gaps()
    record = gap.record()
    assert record == spool.take_gaps()[0].record()  # what a resend after a crash sends
    assert (record.record_id, record.kind, record.model_name) == (
        gap.record_id,
        RECORD_KIND_GAP,
        "credit-risk",
    )
    body = json.loads(record.body_json)
    assert body["dropped"] == 4
    assert body["reason"] == "spool full"
    assert body["from"] <= body["until"]
    assert body["until"].endswith("Z")
