"""`mrmctl evidence`: a bundle built from a real deploy on PostgreSQL, then checked
offline (the stack is stopped first) and tampered with byte by byte."""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import re
import shutil
import struct
import subprocess
import sys
import uuid
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest
from click.testing import CliRunner, Result

from mrm.cli.main import mrmctl
from mrm.client.ledger import LedgerClient, new_record
from mrm.client.registry import RegistryClient, role_name
from mrm.evidence.bundle import DERIVED, MANIFEST, dump_json
from mrm.evidence.derive import file_entry
from mrm.tlog.checkpoint import Checkpoint, parse_checkpoint
from mrm.tlog.note import generate_signer, parse_signer_key, sign_note, unverified_text
from tests.conftest import PG_ADMIN_URL, _pg_base, start_ledger
from tests.support.credit import applicants, tree_model

CARD = """
[card]
purpose = "Score consumer credit applications for default risk"
owner = "Credit Risk Analytics"
intended_use = "Pre-screening; a person decides every rejection"
limitations = ["Not validated for business loans", "Income in EUR only"]
risk_tier = "high"
notes = "Reviewed by the model risk committee"
"""

FAIRNESS = (
    '[fairness]\nsensitive = ["employment"]\nfavourable_label = "0"\n'
    "bootstrap = 100\nmin_group_size = 20\n"
)


@dataclass
class Evidence:
    bundle: Path
    since_bundle: Path
    future_bundle: Path
    vkey: str
    signer_key: str
    registry_artifacts: dict[str, str]
    predictions_since: int
    unknown_model: Result


def _cli(stack: Any, *args: str) -> Result:
    return CliRunner().invoke(
        mrmctl,
        ["--ledger-addr", stack.addr, "--registry-addr", stack.registry_addr, *args],
    )


def _predictions(ledger: LedgerClient, n: int) -> list[str]:
    records = [
        new_record(
            "PREDICTION",
            {"input": {"income": i}, "output": {"label": i % 2}},
            model_name="credit-risk",
            model_version="1.0.0",
            subject=f"s{i}",
        )
        for i in range(n)
    ]
    ledger.append(records)
    return [r.record_id for r in records]


def _monitoring(ledger: LedgerClient) -> None:
    """A drift window, an alert on it and its acknowledgement, as the monitor writes them."""
    drift = new_record(
        "DRIFT",
        {
            "window": {"first_recorded_at_us": 1, "last_recorded_at_us": 2, "rows": 40},
            "report": {"features": [{"name": "income", "psi": 0.31}], "breaches": [{"m": 1}]},
        },
        model_name="credit-risk",
        model_version="1.0.0",
    )
    alert = new_record(
        "ALERT",
        {
            "state": "firing",
            "metric": "psi",
            "summary": "income drifted (PSI 0.31 > 0.2)",
            "drift_record_id": drift.record_id,
        },
        model_name="credit-risk",
        model_version="1.0.0",
    )
    ack = new_record(
        "ALERT",
        {"state": "acknowledged", "alert_record_id": alert.record_id, "note": "retraining"},
        model_name="credit-risk",
        model_version="1.0.0",
    )
    ledger.append([drift, alert])
    ledger.checkpoint(refresh=True)
    ledger.append([ack])


@pytest.fixture(scope="module")
def evidence(tmp_path_factory: pytest.TempPathFactory, postgres_server: str) -> Evidence:
    tmp = tmp_path_factory.mktemp("evidence")
    name = f"mrm_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    url = f"{_pg_base().replace('postgresql://', 'postgresql+psycopg://', 1)}/{name}"
    stack = start_ledger(tmp / "mrm-home", url)
    try:
        with pytest.MonkeyPatch.context() as mp:
            mp.setenv("MRM_CONFIG_DIR", str(tmp / "mrmctl-config"))
            mp.setenv("GITHUB_SHA", "3f2a9c1" + "0" * 33)
            mp.setenv("GITHUB_ACTOR", "devin")
            mp.setenv("MRM_EXPLAIN_ADDR", stack.explain_addr)
            project = tmp / "project"
            project.mkdir()
            train, test = applicants(600, 1), applicants(200, 2)
            model, cols, target = tree_model(train)
            (project / "model.pkl").write_bytes(pickle.dumps(model))
            test[[*cols, "employment", target]].to_csv(project / "eval.csv", index=False)
            train.to_csv(project / "train.csv", index=False)
            (project / "mrm.toml").write_text(
                '[model]\nname = "credit-risk"\n[data]\neval = "eval.csv"\n'
                'target = "default"\ntraining = "train.csv"\n'
                "[gates]\nfidelity_tolerance = 1e-4\n" + FAIRNESS + CARD
            )
            mp.chdir(project)
            deployed = _cli(stack, "deploy", "model.pkl", "--version", "1.0.0")
            assert deployed.exit_code == 0, deployed.output
            with LedgerClient(stack.addr) as ledger, RegistryClient(stack.registry_addr) as reg:
                ledger.checkpoint(refresh=True)
                _predictions(ledger, 5)
                ledger.checkpoint(refresh=True)
                _monitoring(ledger)
                later = _predictions(ledger, 4)
                since = ledger.get_record(later[0]).recorded_at.ToDatetime()
                vkey = ledger.checkpoint(refresh=True).verifier_key
                artifacts = {
                    role_name(a.role): a.sha256
                    for a in reg.get_version("credit-risk", "1.0.0").artifacts
                }
            out = tmp / "bundle.zip"
            built = _cli(stack, "evidence", "credit-risk", "-o", str(out))
            assert built.exit_code == 0, built.output
            since_out = tmp / "since.zip"
            stamp = since.strftime("%Y-%m-%dT%H:%M:%S.%f")
            built = _cli(stack, "evidence", "credit-risk", "--since", stamp, "-o", str(since_out))
            assert built.exit_code == 0, built.output
            future_out = tmp / "future.zip"
            built = _cli(
                stack,
                "evidence",
                "credit-risk",
                "--version",
                "1.0.0",
                "--since",
                "2100-01-01",
                "-o",
                str(future_out),
            )
            assert built.exit_code == 0, built.output
            unknown = _cli(stack, "evidence", "no-such-model", "-o", str(tmp / "x.zip"))
        signer_key = stack.settings.resolved_key_file().read_text().strip()
    finally:
        stack.stack.stop()
        with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    # Every test below runs with the services stopped.
    return Evidence(out, since_out, future_out, vkey, signer_key, artifacts, 4, unknown)


def _verify(bundle: Path, vkey: str, tmp: Path) -> subprocess.CompletedProcess[str]:
    """`mrmctl evidence verify` in a fresh process with no MRM environment at all."""
    env = {"PATH": os.defpath, "HOME": str(tmp), "LANG": "C.UTF-8"}
    mrmctl_bin = Path(sys.executable).parent / "mrmctl"
    return subprocess.run(
        [str(mrmctl_bin), "evidence", "verify", str(bundle), "--vkey", vkey, "--output", "json"],
        env=env,
        cwd=tmp,
        capture_output=True,
        text=True,
        timeout=120,
    )


def _members(bundle: Path) -> dict[str, bytes]:
    with zipfile.ZipFile(bundle) as zf:
        return {n: zf.read(n) for n in zf.namelist()}


def _write(path: Path, files: dict[str, bytes], *, fix_manifest: bool = True) -> Path:
    """Write a bundle, listing the new hashes in the manifest as a forger would."""
    if fix_manifest:
        manifest = json.loads(files[MANIFEST])
        manifest["files"] = {n: file_entry(files[n]) for n in sorted(files) if n != MANIFEST}
        files = {**files, MANIFEST: dump_json(manifest)}
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in files.items():
            zf.writestr(name, data)
    return path


def _flip(data: bytes, at: int) -> bytes:
    new = b"1" if data[at : at + 1] != b"1" else b"2"
    return data[:at] + new + data[at + 1 :]


def _problems(result: subprocess.CompletedProcess[str]) -> list[dict[str, str]]:
    assert result.returncode == 1, result.stdout + result.stderr
    verdict = json.loads(result.stdout)
    assert verdict["valid"] is False
    return list(verdict["problems"])


def test_bundle_verifies_offline_in_a_clean_process(evidence: Evidence, tmp_path: Path) -> None:
    result = _verify(evidence.bundle, evidence.vkey, tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    verdict = json.loads(result.stdout)
    assert verdict["valid"] is True
    assert verdict["problems"] == []
    assert verdict["checkpoints"] >= 2  # older checkpoints, each with a consistency proof
    files = _members(evidence.bundle)
    manifest = json.loads(files[MANIFEST])
    for name, entry in manifest["files"].items():
        assert hashlib.sha256(files[name]).hexdigest() == entry["sha256"]
    kinds = [json.loads(files[n])["kind"] for n in sorted(files) if n.startswith("records/")]
    for kind in ("MODEL_INGESTED", "DATA_LINEAGE", "PERFORMANCE_SNAPSHOT", "DEPLOYMENT"):
        assert kind in kinds
    assert kinds.count("PREDICTION") == 9
    assert kinds.count("ALERT") == 2
    assert verdict["records"] == len(kinds)


def test_model_card_holds_the_card_the_facts_and_the_identity(evidence: Evidence) -> None:
    files = _members(evidence.bundle)
    card = json.loads(files["model_card.json"])
    assert card["card"]["purpose"] == "Score consumer credit applications for default risk"
    assert card["card"]["risk_tier"] == "high"
    assert card["card"]["limitations"] == [
        "Not validated for business loans",
        "Income in EUR only",
    ]
    (version,) = card["versions"]
    assert version["artifacts"] == evidence.registry_artifacts
    assert version["identity"]["principal"] == version["registered_by"]
    assert version["deployed_by_claims"]["ci_actor"] == "devin"
    assert card["card"]["source"]["record_id"] == version["record_id"]
    assert card["performance"][0]["metrics"]["rows"] == 200
    summary = json.loads(files["summary.json"])
    (snapshot,) = [
        json.loads(files[n])
        for n in sorted(files)
        if n.startswith("records/") and json.loads(files[n])["kind"] == "FAIRNESS_SNAPSHOT"
    ]
    (fair,) = summary["fairness"]
    (employment,) = fair["attributes"]
    recorded = snapshot["body"]["attributes"]["employment"]
    assert employment["demographic_parity_ratio"] == recorded["demographic_parity_ratio"]
    assert set(employment["groups"]) == {"salaried", "self-employed", "unemployed"}
    assert fair["record_id"] == snapshot["record_id"]
    (alert,) = summary["alerts"]
    assert alert["summary"] == "income drifted (PSI 0.31 > 0.2)"
    assert alert["acknowledgement"]["note"] == "retraining"
    assert summary["drift"]["windows_with_breaches"] == 1
    html = files["report.html"].decode()
    assert "Score consumer credit applications" in html
    assert alert["record_id"] in html
    assert "src=" not in html
    assert "href=" not in html
    assert "<script" not in html
    assert files["report.pdf"].startswith(b"%PDF-")
    text = b"".join(
        zlib.decompress(m.group(1))
        for m in re.finditer(rb"stream\r?\n(.*?)\r?\nendstream", files["report.pdf"], re.S)
    )
    for section in (b"Model card", b"Fairness at deploy", b"Alerts and acknowledgements"):
        assert section in text


def test_since_limits_decisions_only(evidence: Evidence, tmp_path: Path) -> None:
    assert _verify(evidence.since_bundle, evidence.vkey, tmp_path).returncode == 0
    files = _members(evidence.since_bundle)
    kinds = [json.loads(files[n])["kind"] for n in files if n.startswith("records/")]
    assert kinds.count("PREDICTION") == evidence.predictions_since
    assert "MODEL_INGESTED" in kinds
    assert kinds.count("ALERT") == 2


def test_no_decisions_after_since_still_gives_the_deploy_records(
    evidence: Evidence, tmp_path: Path
) -> None:
    result = _verify(evidence.future_bundle, evidence.vkey, tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    files = _members(evidence.future_bundle)
    kinds = {json.loads(files[n])["kind"] for n in files if n.startswith("records/")}
    assert {"MODEL_INGESTED", "DATA_LINEAGE", "PERFORMANCE_SNAPSHOT", "DEPLOYMENT"} <= kinds
    assert "PREDICTION" not in kinds
    assert json.loads(files["summary.json"])["decisions"]["prediction"] == 0


def _record_of(files: dict[str, bytes], kind: str) -> str:
    return next(
        n
        for n in sorted(files)
        if n.startswith("records/") and json.loads(files[n])["kind"] == kind
    )


def _older_note(files: dict[str, bytes]) -> str:
    return sorted(n for n in files if n.endswith(".note"))[0]


def _tamper_record(files: dict[str, bytes]) -> str:
    name = _record_of(files, "PERFORMANCE_SNAPSHOT")
    data = files[name]
    files[name] = _flip(data, data.index(b'"accuracy":') + 12)
    return name


def _tamper_proof(files: dict[str, bytes]) -> str:
    name = _record_of(files, "MODEL_INGESTED").replace("records/", "proofs/")
    data = files[name]
    files[name] = _flip(data, data.index(b'"inclusion_path"') + 25)
    return name


def _tamper_signature(files: dict[str, bytes]) -> str:
    name = _older_note(files)
    data = files[name]
    files[name] = _flip(data, len(data) - 10)
    return name


def _tamper_note_body(files: dict[str, bytes]) -> str:
    name = _older_note(files)
    data = files[name]
    files[name] = _flip(data, data.index(b"\n", data.index(b"\n") + 1) + 3)  # the root line
    return name


def _tamper_consistency(files: dict[str, bytes]) -> str:
    name = next(n for n in sorted(files) if n.endswith(".consistency.json"))
    data = files[name]
    files[name] = _flip(data, data.index(b'"consistency_path"') + 27)
    return name


def _tamper_file(name: str, marker: bytes | None = None) -> Any:
    def tamper(files: dict[str, bytes]) -> str:
        data = files[name]
        files[name] = _flip(
            data, data.index(marker) + len(marker) + 2 if marker else len(data) // 2
        )
        return name

    return tamper


TAMPERINGS = {
    "record": _tamper_record,
    "proof": _tamper_proof,
    "checkpoint-signature": _tamper_signature,
    "checkpoint-body": _tamper_note_body,
    "consistency-proof": _tamper_consistency,
    "model-card": _tamper_file("model_card.json", b'"risk_tier"'),
    "summary": _tamper_file("summary.json", b'"windows"'),
    "html": _tamper_file("report.html", b"<h1>"),
    "pdf": _tamper_file("report.pdf"),
}


@pytest.mark.parametrize("what", sorted(TAMPERINGS))
def test_one_changed_byte_is_caught_and_named(
    evidence: Evidence, tmp_path: Path, what: str
) -> None:
    files = _members(evidence.bundle)
    before = dict(files)
    name = TAMPERINGS[what](files)
    assert files[name] != before[name]
    assert sum(a != b for a, b in zip(files[name], before[name], strict=False)) == 1
    problems = _problems(_verify(_write(tmp_path / "t.zip", files), evidence.vkey, tmp_path))
    assert name in {p["file"] for p in problems}, problems


def test_a_changed_manifest_byte_is_named(evidence: Evidence, tmp_path: Path) -> None:
    files = _members(evidence.bundle)
    data = files[MANIFEST]
    files[MANIFEST] = _flip(data, data.index(b'"tree_size"') + 14)
    bundle = _write(tmp_path / "t.zip", files, fix_manifest=False)
    problems = _problems(_verify(bundle, evidence.vkey, tmp_path))
    assert MANIFEST in {p["file"] for p in problems}, problems


def test_a_bundle_of_another_layout_says_so(evidence: Evidence, tmp_path: Path) -> None:
    """A bundle made by another mrmctl layout: its records still verify, and each derived
    document is named as not re-derivable here (rather than as altered)."""
    files = _members(evidence.bundle)
    manifest = json.loads(files[MANIFEST])
    manifest["renderer"]["layout"] = "0"
    files[MANIFEST] = dump_json(manifest)
    problems = _problems(_verify(_write(tmp_path / "old.zip", files), evidence.vkey, tmp_path))
    assert sorted(p["file"] for p in problems) == sorted(DERIVED), problems
    assert all("layout 0" in p["reason"] for p in problems)


def test_a_flipped_byte_in_the_zip_itself_is_named(evidence: Evidence, tmp_path: Path) -> None:
    raw = bytearray(evidence.bundle.read_bytes())
    with zipfile.ZipFile(evidence.bundle) as zf:
        info = zf.getinfo(_record_of(_members(evidence.bundle), "DEPLOYMENT"))
    name_len, extra_len = struct.unpack(
        "<HH", raw[info.header_offset + 26 : info.header_offset + 30]
    )
    at = info.header_offset + 30 + name_len + extra_len + info.compress_size // 2
    raw[at] ^= 0x01
    bundle = tmp_path / "raw.zip"
    bundle.write_bytes(bytes(raw))
    problems = _problems(_verify(bundle, evidence.vkey, tmp_path))
    assert info.filename in {p["file"] for p in problems}, problems


def test_a_forked_log_is_caught(evidence: Evidence, tmp_path: Path) -> None:
    """The log key signed an older tree that the newest one does not extend (a split
    view or a rollback): the forged checkpoint verifies, the consistency proof cannot."""
    files = _members(evidence.bundle)
    name = _older_note(files)
    old = parse_checkpoint(unverified_text(files[name].decode()))
    forked = Checkpoint(old.origin, old.size, hashlib.sha256(b"another history").digest())
    signer = parse_signer_key(evidence.signer_key)
    files[name] = sign_note(forked.text(), [signer]).encode()
    cname = name.replace(".note", ".consistency.json")
    proof = json.loads(files[cname])
    proof["old_checkpoint"], proof["old_root"] = files[name].decode(), forked.root_hash.hex()
    files[cname] = dump_json(proof)
    problems = _problems(_verify(_write(tmp_path / "fork.zip", files), evidence.vkey, tmp_path))
    assert [p["file"] for p in problems] == [cname], problems
    assert "forked or rolled-back" in problems[0]["reason"]


def test_a_left_out_alert_is_caught(evidence: Evidence, tmp_path: Path) -> None:
    files = _members(evidence.bundle)
    firing = next(
        n
        for n in sorted(files)
        if n.startswith("records/") and json.loads(files[n])["body"].get("state") == "firing"
    )
    del files[firing], files[firing.replace("records/", "proofs/")]
    problems = _problems(_verify(_write(tmp_path / "gap.zip", files), evidence.vkey, tmp_path))
    assert any("leaves out" in p["reason"] for p in problems), problems


def test_a_wrong_key_is_caught(evidence: Evidence, tmp_path: Path) -> None:
    name = evidence.vkey.split("+", 1)[0]
    for vkey in (generate_signer("someone-else").vkey(), generate_signer(name).vkey()):
        problems = _problems(_verify(evidence.bundle, vkey, tmp_path))
        assert problems
        assert all(p["file"].startswith("checkpoints/") for p in problems)


def _one_line_exit_2(result: subprocess.CompletedProcess[str] | Result) -> str:
    if isinstance(result, Result):
        code, stderr = result.exit_code, result.stderr
    else:
        code, stderr = result.returncode, result.stderr
    assert code == 2, stderr
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    assert lines[0].startswith("mrmctl: error: "), stderr
    return lines[0]


def test_unknown_model_is_one_line(evidence: Evidence) -> None:
    assert "no-such-model" in _one_line_exit_2(evidence.unknown_model)


def test_bad_input_is_exit_2(evidence: Evidence, tmp_path: Path) -> None:
    not_zip = tmp_path / "not.zip"
    not_zip.write_text("hello")
    assert "not a zip file" in _one_line_exit_2(_verify(not_zip, evidence.vkey, tmp_path))
    assert "no such file" in _one_line_exit_2(_verify(tmp_path / "nope", evidence.vkey, tmp_path))
    no_manifest = _write(tmp_path / "nm.zip", {"report.html": b"x"}, fix_manifest=False)
    assert "no manifest.json" in _one_line_exit_2(_verify(no_manifest, evidence.vkey, tmp_path))
    bad_key = _verify(evidence.bundle, "not-a-key", tmp_path)
    assert "--vkey" in _one_line_exit_2(bad_key)


def test_a_huge_declared_member_is_refused(evidence: Evidence, tmp_path: Path) -> None:
    bomb = tmp_path / "bomb.zip"
    with zipfile.ZipFile(bomb, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr(MANIFEST, b"{}")
        zf.writestr("records/000000000000.json", b"0" * 1000)
    raw = bytearray(bomb.read_bytes())
    # Declare 4 GB uncompressed in the central directory entry of the second member.
    central = raw.rfind(b"PK\x01\x02")
    raw[central + 24 : central + 28] = struct.pack("<I", 0xFFFFFFF0)
    bomb.write_bytes(bytes(raw))
    line = _one_line_exit_2(_verify(bomb, evidence.vkey, tmp_path))
    assert "refused" in line
    assert "records/000000000000.json" in line


DOC = Path(__file__).parents[2] / "docs" / "evidence.md"


def _doc_script(tmp: Path) -> Path:
    text = DOC.read_text()
    start = text.index("```python\n", text.index("<!-- check_bundle.py")) + len("```python\n")
    script = tmp / "check_bundle.py"
    script.write_text(text[start : text.index("```", start)])
    return script


def _by_hand(script: Path, bundle: Path, vkey: str) -> subprocess.CompletedProcess[str]:
    env = {"PATH": os.defpath, "HOME": str(script.parent), "LANG": "C.UTF-8"}
    return subprocess.run(
        [sys.executable, "-I", str(script), str(bundle), vkey],
        env=env,
        cwd=script.parent,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_the_documented_procedure_checks_the_bundle(evidence: Evidence, tmp_path: Path) -> None:
    """docs/evidence.md's by-hand check (hashlib and cryptography only) passes on the
    bundle and fails on an altered record and on a forked log."""
    script = _doc_script(tmp_path)
    good = _by_hand(script, evidence.bundle, evidence.vkey)
    assert good.returncode == 0, good.stderr
    assert good.stdout.startswith("OK: ")
    files = _members(evidence.bundle)
    _tamper_record(files)
    bad = _by_hand(script, _write(tmp_path / "t.zip", files), evidence.vkey)
    assert bad.returncode == 1
    assert "not in the signed tree" in bad.stderr
    wrong = _by_hand(script, evidence.bundle, generate_signer("x").vkey())
    assert wrong.returncode == 1


@pytest.mark.skipif(shutil.which("openssl") is None, reason="no openssl")
def test_the_documented_openssl_check(evidence: Evidence, tmp_path: Path) -> None:
    files = _members(evidence.bundle)
    note_name = json.loads(files[MANIFEST])["newest_checkpoint"]
    for tampered in (False, True):
        data = files[note_name]
        note = tmp_path / "checkpoint.note"
        note.write_bytes(_flip(data, data.index(b"\n") + 1) if tampered else data)
        text = DOC.read_text()
        start = text.index("    NOTE=checkpoints/")
        lines = text[start : text.index("\n\n", start)].splitlines()
        shell = "\n".join(line[4:] for line in lines[1:])
        run = subprocess.run(
            ["bash", "-c", f"NOTE={note}\n{shell}"],
            env={"PATH": os.defpath, "VKEY": evidence.vkey},
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert (run.returncode != 0) is tampered, run.stdout + run.stderr
