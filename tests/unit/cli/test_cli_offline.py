"""verify-proof and verify-note: offline checks with no server and no trust store."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner, Result

from mrm.cli.main import mrmctl
from mrm.tlog.note import generate_signer, sign_note
from mrm.tlog.proofs import ConsistencyProof, InclusionProof
from tests.support.fake_log import FakeLog, inclusion_path


def run(*args: str, env: dict[str, str] | None = None) -> Result:
    return CliRunner().invoke(mrmctl, list(args), env=env)


def write_inclusion(tmp_path: Path, log: FakeLog, index: int, name: str = "p.json") -> Path:
    size = len(log.leaves)
    proof = InclusionProof(
        origin=log.origin,
        leaf_index=index,
        tree_size=size,
        leaf_hash=log.leaves[index],
        inclusion_path=tuple(inclusion_path(index, log.leaves)),
        root_hash=log.root(size),
        checkpoint=log.note(size),
    )
    path = tmp_path / name
    path.write_text(json.dumps(proof.to_json()))
    return path


def write_consistency(tmp_path: Path, log: FakeLog, old: int, new: int) -> Path:
    proof = ConsistencyProof(
        origin=log.origin,
        old_size=old,
        new_size=new,
        old_root=log.root(old),
        new_root=log.root(new),
        consistency_path=tuple(log.prove(old, new)),
        old_checkpoint=log.note(old),
        new_checkpoint=log.note(new),
    )
    path = tmp_path / f"c{old}-{new}.json"
    path.write_text(json.dumps(proof.to_json()))
    return path


def flip_hex_digit(path: Path, key: str) -> None:
    doc = json.loads(path.read_text())
    value = doc[key]
    doc[key] = ("0" if value[0] != "0" else "1") + value[1:]
    path.write_text(json.dumps(doc))


def test_valid_proofs_with_and_without_a_key(tmp_path: Path) -> None:
    log = FakeLog().grow(13)
    inc = write_inclusion(tmp_path, log, 6)
    con = write_consistency(tmp_path, log, 5, 13)
    result = run("ledger", "verify-proof", str(inc), str(con), "--vkey", log.vkey, "-o", "json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert [r["valid"] for r in report] == [True, True]
    assert [r["file"] for r in report] == [str(inc), str(con)]
    unsigned = run("ledger", "verify-proof", str(inc))
    assert unsigned.exit_code == 0
    assert "NOT checked" in unsigned.stdout


def test_key_from_the_environment(tmp_path: Path) -> None:
    log = FakeLog().grow(4)
    inc = write_inclusion(tmp_path, log, 1)
    other = generate_signer(log.origin).vkey()
    assert run("ledger", "verify-proof", str(inc), env={"MRM_LEDGER_VKEY": log.vkey}).exit_code == 0
    assert run("ledger", "verify-proof", str(inc), env={"MRM_LEDGER_VKEY": other}).exit_code == 1


def test_one_changed_hex_digit_is_caught(tmp_path: Path) -> None:
    log = FakeLog().grow(9)
    for key in ("leaf_hash", "root_hash"):
        path = write_inclusion(tmp_path, log, 3, f"{key}.json")
        flip_hex_digit(path, key)
        result = run("ledger", "verify-proof", str(path), "--vkey", log.vkey, "-o", "json")
        assert result.exit_code == 1
        assert json.loads(result.stdout)[0]["valid"] is False


def test_unreadable_files_are_listed_as_invalid(tmp_path: Path) -> None:
    log = FakeLog().grow(3)
    good = write_inclusion(tmp_path, log, 0)
    junk = tmp_path / "junk.json"
    junk.write_text("not json")
    missing = tmp_path / "missing.json"
    result = run("ledger", "verify-proof", str(good), str(junk), str(missing), "-o", "json")
    assert result.exit_code == 1
    report = json.loads(result.stdout)
    assert [r["valid"] for r in report] == [True, False, False]
    assert "cannot read" in report[2]["reason"]
    text = run("ledger", "verify-proof", str(good), str(junk))
    assert text.exit_code == 1
    assert "INVALID" in text.stdout


def test_verify_note_follows_c2sp_rules(tmp_path: Path) -> None:
    log = FakeLog().grow(2)
    stranger = generate_signer("witness.example")
    note = tmp_path / "cp.note"
    # A co-signature by an unknown key is ignored.
    note.write_text(sign_note(log.note(2).split("\n\n")[0] + "\n", [log.signer, stranger]))
    ok = run("ledger", "verify-note", str(note), "--vkey", log.vkey, "-o", "json")
    assert ok.exit_code == 0, ok.output
    assert json.loads(ok.stdout)["verified_by"] == [log.origin]
    # Only unknown keys signed it: rejected.
    only_stranger = run("ledger", "verify-note", str(note), "--vkey", generate_signer("x").vkey())
    assert only_stranger.exit_code == 1
    assert "no signature by a known key" in only_stranger.stdout
    # A known key's bad signature rejects the note.
    note.write_text(note.read_text().replace("\n2\n", "\n3\n", 1))
    bad = run("ledger", "verify-note", str(note), "--vkey", log.vkey)
    assert bad.exit_code == 1
    assert "invalid signature" in bad.stdout


def test_verify_note_rejects_control_characters(tmp_path: Path) -> None:
    log = FakeLog().grow(1)
    note = tmp_path / "cp.note"
    note.write_text(log.note(1).replace("\n1\n", "\n1\x07\n"))
    result = run("ledger", "verify-note", str(note), "--vkey", log.vkey)
    assert result.exit_code == 1
    assert "control character" in result.stdout
