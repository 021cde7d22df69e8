"""ACCESS records: one per issuance or revocation, the same whoever appends it."""

from __future__ import annotations

import json

import pytest

from mrm.client.ids import derived_record_id
from mrm.core.auth import tokens
from mrm.core.auth.access import (
    RECONCILER,
    Reconciler,
    access_body,
    access_record,
    expected_records,
)
from mrm.core.errors import AlreadyExists
from mrm.v1 import ledger_pb2

NOW_US = 1_900_000_000_000_000


def _entry(by: str = "admin@example.com", *, revoked: bool = False) -> tokens.TokenEntry:
    entries: list[tokens.TokenEntry] = []
    tokens.issue(
        entries,
        "ops@example.com",
        ("auditor",),
        models=("credit-*",),
        issued_by=by,
        expires_at_us=NOW_US + 3_600_000_000,
        now_us=NOW_US,
    )
    if revoked:
        tokens.revoke(
            entries, "ops@example.com", revoked_by="sec@example.com", now_us=NOW_US + 60_000_000
        )
    return entries[0]


def test_the_body_of_an_issuance_names_the_token_never_the_secret() -> None:
    entry = _entry()
    assert access_body(entry, "issued") == {
        "action": "issued",
        "token_id": entry.id,
        "principal": "ops@example.com",
        "roles": ["auditor"],
        "models": ["credit-*"],
        "expires_at": "2030-03-17T18:46:40Z",
        "at": "2030-03-17T17:46:40Z",
        "by": "admin@example.com",
    }
    assert entry.sha256 not in json.dumps(access_body(entry, "issued"))


def test_the_body_of_a_revocation_says_when_and_by_whom() -> None:
    body = access_body(_entry(revoked=True), "revoked")
    assert (body["action"], body["at"], body["by"]) == (
        "revoked",
        "2030-03-17T17:47:40Z",
        "sec@example.com",
    )


def test_an_access_record_is_the_same_whoever_makes_it() -> None:
    entry = _entry()
    one, two = access_record(entry, "issued"), access_record(entry, "issued")
    assert one == two
    assert one.kind == ledger_pb2.RECORD_KIND_ACCESS
    assert one.record_id == derived_record_id(NOW_US // 1000, f"{entry.id}:issued")
    assert json.loads(one.body_json) == access_body(entry, "issued")


def test_issuance_and_revocation_are_two_records() -> None:
    entry = _entry(revoked=True)
    assert access_record(entry, "issued").record_id != access_record(entry, "revoked").record_id


def test_expected_records_list_each_event_oldest_first() -> None:
    live, gone = _entry(), _entry(revoked=True)
    bodies = [json.loads(r.body_json) for r in expected_records([live, gone])]
    assert [(b["token_id"], b["action"]) for b in bodies] == [
        (live.id, "issued"),
        (gone.id, "issued"),
        (gone.id, "revoked"),
    ]


def test_the_reconciler_leaves_a_fresh_event_to_its_author() -> None:
    appended: list[ledger_pb2.Record] = []
    assert Reconciler(appended.append).run([_entry()], now_us=NOW_US + 1_000_000) == 0
    assert appended == []


def test_the_reconciler_records_an_old_event_once() -> None:
    appended: list[ledger_pb2.Record] = []
    reconciler = Reconciler(appended.append)
    later = NOW_US + Reconciler.GRACE_US + 1
    entry = _entry()
    assert reconciler.run([entry], now_us=later) == 1
    assert reconciler.run([entry], now_us=later) == 0
    assert [r.record_id for r in appended] == [access_record(entry, "issued").record_id]


def test_the_reconciler_records_mrms_own_events_at_once() -> None:
    appended: list[ledger_pb2.Record] = []
    assert Reconciler(appended.append).run([_entry("system:bootstrap")], now_us=NOW_US) == 1
    assert RECONCILER.startswith("system:")


def test_an_entry_edited_by_hand_is_recorded_as_changed() -> None:
    appended: list[ledger_pb2.Record] = []

    def append(record: ledger_pb2.Record) -> None:
        if json.loads(record.body_json)["action"] == "issued":
            raise AlreadyExists("that id holds other content")
        appended.append(record)

    entry = _entry()
    Reconciler(append).run([entry], now_us=NOW_US + Reconciler.GRACE_US + 1)
    (changed,) = appended
    assert json.loads(changed.body_json)["action"] == "changed"
    assert changed.record_id != access_record(entry, "issued").record_id


def test_a_failing_append_is_tried_again_next_run() -> None:
    calls: list[str] = []

    def down(record: ledger_pb2.Record) -> None:
        calls.append(record.record_id)
        raise ConnectionError("ledger down")

    reconciler = Reconciler(down)
    later = NOW_US + Reconciler.GRACE_US + 1
    entry = _entry()
    for _ in range(2):
        with pytest.raises(ConnectionError):
            reconciler.run([entry], now_us=later)
    assert calls == [access_record(entry, "issued").record_id] * 2
