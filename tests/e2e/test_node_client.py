"""The Node.js client (clients/node) against live services, and its verifier's own tests.

Node.js is a requirement of `make install` (buf comes from npm), so a missing
`node` fails these tests rather than skipping them.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from mrm.client.ids import new_record_id
from mrm.client.ledger import LedgerClient, new_record
from mrm.client.registry import RegistryClient
from mrm.tlog.note import generate_signer
from tests.conftest import RunningLedger
from tests.support.auth import issue
from tests.support.ledger_cli import ok_json
from tests.support.waiting import wait_until

ROOT = Path(__file__).resolve().parents[2]
NODE_CLIENT = ROOT / "clients" / "node"
AUDIT = NODE_CLIENT / "examples" / "audit.js"


def node(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    exe = shutil.which("node")
    assert exe, "node (Node.js 20+) is not on PATH; `make install` needs it too"
    return subprocess.run(
        [exe, *args],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
        env={**os.environ, **(env or {})},
        check=False,
    )


def audit(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return node(str(AUDIT), *args, env=env)


@pytest.fixture
def populated(ledger_server: RunningLedger) -> tuple[RunningLedger, str, str]:
    """A stack with two models and one PREDICTION; returns it, the record id and the key."""
    with RegistryClient(ledger_server.registry_addr) as registry:
        registry.create_model("credit-risk", "Credit applications")
        registry.create_model("fraud-score")
    # Strings JSON must escape, and non-ASCII text: the JS side re-derives the
    # leaf bytes from these fields and must agree with the Python ledger.
    record = new_record(
        "PREDICTION",
        {"input": {"income": 52000.5, "name": 'Zoë "Q" \\ \u00e9\u4e2d'}, "output": {"label": 0}},
        model_name="credit-risk",
        model_version="1.2.4",
        subject="applicant-1003 \u00e9",
    )
    # Neighbours on both sides, so the proof has a real audit path.
    others = [new_record("PREDICTION", {"i": i}, model_name="credit-risk") for i in range(5)]
    with LedgerClient(ledger_server.addr) as ledger:
        ledger.append([*others[:3], record, *others[3:]])
        vkey = ledger.checkpoint().verifier_key
    return ledger_server, record.record_id, vkey


def test_verifier_unit_tests_pass() -> None:
    result = node("--test", str(NODE_CLIENT / "test"))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "# fail 0" in result.stdout
    passed = int(result.stdout.split("# pass ")[1].split()[0])
    assert passed >= 10


def test_audit_fetches_checkpoint_lists_models_and_verifies_a_proof(
    populated: tuple[RunningLedger, str, str],
) -> None:
    stack, record_id, vkey = populated
    env = {"MRM_LEDGER_ADDR": stack.addr, "MRM_REGISTRY_ADDR": stack.registry_addr}
    result = audit(record_id, MRM_LEDGER_VKEY=vkey, **env)
    assert result.returncode == 0, result.stdout + result.stderr
    with LedgerClient(stack.addr) as ledger:
        cp = ledger.checkpoint()
        leaf = ledger.get_record(record_id).leaf_index
    lines = result.stdout.splitlines()
    assert (
        f"checkpoint: origin={cp.origin} size={cp.tree_size} root={cp.root_hash.hex()} "
        "(signature verified)"
    ) in lines
    assert "models: 2" in lines
    assert "model: credit-risk production=-" in lines
    assert "model: fraud-score production=-" in lines
    assert (
        f"proof verified: record {record_id} (PREDICTION) is leaf {leaf} "
        f"of the signed tree of size {cp.tree_size}"
    ) in lines
    assert "warning" not in result.stdout


def test_audit_without_a_pinned_key_says_it_trusts_the_server(
    populated: tuple[RunningLedger, str, str],
) -> None:
    stack, record_id, vkey = populated
    result = audit(record_id, MRM_LEDGER_ADDR=stack.addr, MRM_REGISTRY_ADDR=stack.registry_addr)
    assert result.returncode == 0, result.stderr
    assert f"trusting the key the server sent ({vkey})" in result.stdout


def test_audit_rejects_a_checkpoint_signed_by_another_key(
    populated: tuple[RunningLedger, str, str],
) -> None:
    stack, record_id, _ = populated
    stranger = generate_signer(stack.settings.ledger_origin or "mrm").vkey()
    env = {"MRM_LEDGER_ADDR": stack.addr, "MRM_REGISTRY_ADDR": stack.registry_addr}
    result = audit(record_id, "--vkey", stranger, **env)
    assert result.returncode == 1
    assert result.stderr.startswith("audit: verification failed: no signature by a known key")
    assert "proof verified" not in result.stdout


def test_audit_of_an_unknown_or_malformed_record_id(
    populated: tuple[RunningLedger, str, str],
) -> None:
    stack, _, vkey = populated
    env = {"MRM_LEDGER_ADDR": stack.addr, "MRM_REGISTRY_ADDR": stack.registry_addr}
    unknown = audit(new_record_id(), "--vkey", vkey, **env)
    assert unknown.returncode == 1
    assert unknown.stderr.startswith("audit: GetInclusionProof: NOT_FOUND")
    malformed = audit("not-a-uuid", "--vkey", vkey, **env)
    assert malformed.returncode == 2
    assert malformed.stderr.startswith("audit: GetInclusionProof: INVALID_ARGUMENT")
    assert "record_id" in malformed.stderr


def test_proof_files_from_mrmctl_verify_and_tampered_ones_do_not(
    populated: tuple[RunningLedger, str, str], tmp_path: Path
) -> None:
    stack, record_id, vkey = populated
    proof = ok_json(stack.addr, "ledger", "proof", record_id)
    path = tmp_path / "proof.json"

    def check(doc: object, *extra: str) -> subprocess.CompletedProcess[str]:
        path.write_text(json.dumps(doc))
        return audit("--proof", str(path), "--vkey", vkey, *extra)

    good = check(proof)
    assert good.returncode == 0, good.stderr
    assert good.stdout.strip() == (
        f"proof verified: leaf {proof['leaf_index']} is in the signed tree of size "
        f"{proof['tree_size']} of {proof['origin']}"
    )

    wrong_leaf = {**proof, "leaf_hash": "00" * 32}
    bad = check(wrong_leaf)
    assert bad.returncode == 1
    assert bad.stderr.startswith("audit: verification failed: root mismatch")
    assert "proof verified" not in bad.stdout

    lines = proof["checkpoint"].split("\n")
    lines[1] = str(int(lines[1]) + 1)
    forged = check({**proof, "checkpoint": "\n".join(lines)})
    assert forged.returncode == 1
    assert "invalid signature" in forged.stderr

    unsigned = check({**proof, "checkpoint": None})
    assert unsigned.returncode == 1
    assert "carries no signed checkpoint" in unsigned.stderr

    short = check({**proof, "inclusion_path": proof["inclusion_path"][:-1]})
    assert short.returncode == 1
    assert "inclusion path has" in short.stderr


def test_bad_input_and_unreachable_services_exit_with_mrmctl_codes(tmp_path: Path) -> None:
    not_json = tmp_path / "proof.json"
    not_json.write_text("{nope")
    usage = audit("--proof", str(not_json), "--vkey", generate_signer("log").vkey())
    assert usage.returncode == 2
    assert usage.stderr.strip() == f"audit: {not_json} is not JSON"

    missing_key = audit("--proof", str(not_json), MRM_LEDGER_VKEY="")
    assert missing_key.returncode == 2
    assert "--proof needs the log key" in missing_key.stderr

    unknown = audit("--frobnicate")
    assert unknown.returncode == 2
    assert "frobnicate" in unknown.stderr

    bad_key = audit("--vkey", "not-a-key")
    assert bad_key.returncode == 2
    assert bad_key.stderr.startswith("audit: bad verifier key: ")

    down = audit(MRM_LEDGER_ADDR="127.0.0.1:1", MRM_REGISTRY_ADDR="127.0.0.1:1")
    assert down.returncode == 3
    assert down.stderr.startswith("audit: GetCheckpoint: UNAVAILABLE")
    for result in (usage, missing_key, unknown, bad_key, down):
        assert "    at " not in result.stderr  # no JavaScript stack trace


def test_audit_presents_its_token_and_says_which_credential_failed(
    populated: tuple[RunningLedger, str, str], tmp_path: Path
) -> None:
    stack, record_id, vkey = populated
    env = {"MRM_LEDGER_ADDR": stack.addr, "MRM_REGISTRY_ADDR": stack.registry_addr}
    auditor = issue(stack.settings.resolved_tokens_file(), "audit@example.com", "auditor")
    token_file = tmp_path / "auditor.token"
    token_file.write_text(auditor + "\n")
    as_auditor = {**env, "MRM_TOKEN": "", "MRM_TOKEN_FILE": str(token_file)}
    wait_until(
        lambda: audit(record_id, "--vkey", vkey, **as_auditor).returncode == 0,
        "the auditor's token is read by the servers",
    )
    wrong = audit(record_id, "--vkey", vkey, MRM_TOKEN="mrm_" + "0" * 43, **env)
    assert wrong.returncode == 4, wrong.stderr
    assert "UNAUTHENTICATED" in wrong.stderr
    assert "not one this server issued" in wrong.stderr
    assert "0" * 43 not in wrong.stderr  # the token itself is never echoed
    none = audit(record_id, "--vkey", vkey, MRM_TOKEN="", **env)
    assert none.returncode == 4
    assert "no credentials" in none.stderr
    missing = audit(record_id, MRM_TOKEN="", MRM_TOKEN_FILE=str(tmp_path / "nope"), **env)
    assert missing.returncode == 2
    assert "MRM_TOKEN_FILE" in missing.stderr
