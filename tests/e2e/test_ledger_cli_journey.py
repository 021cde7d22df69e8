"""An operator's and an auditor's journey through `mrmctl ledger` against a real ledger."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

from mrm.client.ledger import LedgerClient, new_record
from tests.conftest import RunningLedger
from tests.support.ledger_cli import append_many, cli, ok_json, one_error, refresh

PROOF_KEYS = {
    "origin", "leaf_index", "tree_size", "leaf_hash", "inclusion_path", "root_hash", "checkpoint"
}  # fmt: skip


def test_first_contact_learns_the_key_once(ledger_server: RunningLedger) -> None:
    first = cli(ledger_server.addr, "ledger", "checkpoint", "-o", "json")
    assert first.exit_code == 0, first.output
    cp = json.loads(first.stdout)
    assert cp["tree_size"] == 0
    assert f"trusting new log {cp['origin']} with key {cp['verifier_key']}" in first.stderr
    again = cli(ledger_server.addr, "ledger", "checkpoint")
    assert again.exit_code == 0
    assert again.stderr == ""
    assert cp["origin"] in again.stdout


def test_append_prove_and_verify_offline(ledger_server: RunningLedger, tmp_path: Path) -> None:
    addr = ledger_server.addr
    appended = [
        ok_json(addr, "ledger", "append", "--kind", "prediction", "--model", "credit-risk",
                "--model-version", "1.2.4", "--subject", f"s{i}", "--body", json.dumps({"i": i}))
        for i in range(5)
    ]  # fmt: skip
    assert [a["leaf_index"] for a in appended] == [0, 1, 2, 3, 4]
    assert not any(a["duplicate"] for a in appended)

    proof = ok_json(addr, "ledger", "proof", appended[2]["record_id"])
    assert set(proof) == PROOF_KEYS
    assert (proof["leaf_index"], proof["tree_size"]) == (2, 5)
    assert proof["leaf_hash"] == appended[2]["leaf_hash"]
    assert proof["checkpoint"].splitlines()[1] == "5"
    path = tmp_path / "proof.json"
    path.write_text(json.dumps(proof))

    vkey = ok_json(addr, "ledger", "checkpoint")["verifier_key"]
    good = cli("unused:1", "ledger", "verify-proof", str(path), "--vkey", vkey, "-o", "json")
    assert good.exit_code == 0, good.output
    assert json.loads(good.stdout)[0]["valid"] is True

    proof["inclusion_path"][0] = "f" + proof["inclusion_path"][0][1:]
    if proof["inclusion_path"][0] == json.loads(path.read_text())["inclusion_path"][0]:
        proof["inclusion_path"][0] = "0" + proof["inclusion_path"][0][1:]
    path.write_text(json.dumps(proof))
    bad = cli("unused:1", "ledger", "verify-proof", str(path), "--vkey", vkey, "-o", "json")
    assert bad.exit_code == 1
    assert json.loads(bad.stdout)[0]["valid"] is False

    note = tmp_path / "checkpoint.note"
    note.write_text(proof["checkpoint"])
    assert cli("unused:1", "ledger", "verify-note", str(note), "--vkey", vkey).exit_code == 0


def test_proof_at_an_older_checkpoint_and_consistency(ledger_server: RunningLedger) -> None:
    addr = ledger_server.addr
    append_many(addr, 7)
    assert refresh(addr) == 7
    append_many(addr, 6, start=7)
    assert refresh(addr) == 13
    rec = ok_json(addr, "ledger", "records", "--limit", "4")[3]
    proof = ok_json(addr, "ledger", "proof", rec["record_id"], "--tree-size", "7")
    assert (proof["leaf_index"], proof["tree_size"]) == (3, 7)
    no_cp = cli(addr, "ledger", "proof", rec["record_id"], "--tree-size", "9")
    assert no_cp.exit_code == 2
    assert "no signed checkpoint of exactly 9" in one_error(no_cp)

    cons = ok_json(addr, "ledger", "consistency", "7")
    assert (cons["old_size"], cons["new_size"]) == (7, 13)
    assert cons["old_checkpoint"]
    assert cons["new_checkpoint"]
    unsigned = ok_json(addr, "ledger", "consistency", "5", "13")
    assert unsigned["old_checkpoint"] is None
    assert cli(addr, "ledger", "consistency", "13", "7").exit_code == 2


def test_records_filters(ledger_server: RunningLedger) -> None:
    addr = ledger_server.addr
    before = datetime.now(UTC) - timedelta(seconds=1)
    append_many(addr, 6, model_name="credit-risk", model_version="1.2.4")
    append_many(addr, 3, start=6, model_name="fraud", model_version="2.0.0", kind="DEPLOYMENT")
    trace = "4bf92f3577b34da6a3ce929d0e0e4736"
    with LedgerClient(addr) as client:
        client.append([new_record("GAP", {"dropped": 3}, trace_id=trace, subject="subj-x")])

    everything = ok_json(addr, "ledger", "records")
    assert [r["leaf_index"] for r in everything] == list(range(10))
    first = everything[0]
    assert set(first) >= {
        "record_id", "leaf_index", "kind", "model_name", "model_version", "recorded_at",
        "actor", "trace_id", "span_id", "body",
    }  # fmt: skip
    assert first["kind"] == "PREDICTION"
    assert first["body"] == {"input": {"income": 0, "ratio": 0.25}, "output": {"label": 0}}
    assert first["recorded_at"].endswith("Z")

    assert len(ok_json(addr, "ledger", "records", "--model", "fraud")) == 3
    assert len(ok_json(addr, "ledger", "records", "--version", "1.2.4")) == 6
    assert len(ok_json(addr, "ledger", "records", "--kind", "deployment")) == 3
    assert [r["kind"] for r in ok_json(addr, "ledger", "records", "--trace-id", trace)] == ["GAP"]
    assert len(ok_json(addr, "ledger", "records", "--subject", "subj-x")) == 1
    newest = ok_json(addr, "ledger", "records", "--newest-first", "--limit", "2")
    assert [r["leaf_index"] for r in newest] == [9, 8]
    since = ok_json(addr, "ledger", "records", "--since", before.isoformat())
    assert len(since) == 10
    tomorrow = (datetime.now(UTC) + timedelta(days=1)).date().isoformat()
    assert ok_json(addr, "ledger", "records", "--since", tomorrow) == []
    assert len(ok_json(addr, "ledger", "records", "--until", tomorrow)) == 10
    text = cli(addr, "ledger", "records", "--model", "fraud")
    assert text.exit_code == 0
    assert "DEPLOYMENT" in text.stdout


def test_append_is_idempotent_and_validated(ledger_server: RunningLedger) -> None:
    addr = ledger_server.addr
    args = ["ledger", "append", "--kind", "gap", "--body", '{"n": 1}']
    first = ok_json(addr, *args)
    again = ok_json(addr, *args, "--record-id", first["record_id"])
    assert again["duplicate"] is True
    assert again["leaf_index"] == first["leaf_index"]
    clash = cli(addr, *args[:-1], '{"n": 2}', "--record-id", first["record_id"])
    assert clash.exit_code == 2
    one_error(clash)
    bad_trace = cli(addr, *args, "--trace-id", "xyz")
    assert bad_trace.exit_code == 2
    assert "trace_id" in one_error(bad_trace)


def test_unknown_record_is_an_input_error(ledger_server: RunningLedger) -> None:
    result = cli(ledger_server.addr, "ledger", "proof", "01a22336-66ec-7abc-8b62-d5c8c8ccc85a")
    assert result.exit_code == 2
    assert "not in the ledger" in one_error(result)


def test_verify_an_honest_ledger(ledger_server: RunningLedger) -> None:
    addr = ledger_server.addr
    empty = ok_json(addr, "ledger", "verify")
    assert empty["valid"] is True
    for _ in range(3):
        append_many(addr, 700, start=refresh(addr))
    append_many(addr, 50, start=refresh(addr))  # a tail no checkpoint covers yet
    report = ok_json(addr, "ledger", "verify")
    assert report["valid"] is True
    assert report["checked_leaves"] == 2150
    # The ledger may sign the tail on its own timer while the test runs.
    assert report["tree_size"] in (2100, 2150)
    assert report["first_bad_leaf"] is None
    assert report["problems"] == []
    assert report["checkpoints_checked"] >= 4
    text = cli(addr, "ledger", "verify")
    assert text.exit_code == 0
    assert "intact" in text.stdout
