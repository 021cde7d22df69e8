"""Proof files: their JSON shape, and offline verification with and without keys."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mrm.tlog.checkpoint import Checkpoint, CheckpointError
from mrm.tlog.merkle import ProofError, leaf_hash
from mrm.tlog.note import NoteError, Signer, Verifier, generate_signer, parse_vkey, sign_note
from mrm.tlog.proofs import (
    ConsistencyProof,
    InclusionProof,
    ProofFileError,
    VerifyResult,
    load_proof_file,
    verify_proof,
    verify_proof_file,
)

# Certificate Transparency test data: leaf 5 of 8, and consistency 6 -> 8.
_H = bytes.fromhex
LEAF5 = leaf_hash(_H("40414243"))
ROOT6 = _H("76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef")
ROOT8 = _H("5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328")
PATH_5_IN_8 = (
    _H("bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b"),
    _H("ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0"),
    _H("d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"),
)
PATH_6_TO_8 = (
    _H("0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a"),
    _H("ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0"),
    _H("d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"),
)
ORIGIN = "example.com/mrm"


@pytest.fixture(scope="module")
def signer() -> Signer:
    return generate_signer(ORIGIN)


@pytest.fixture(scope="module")
def verifiers(signer: Signer) -> list[Verifier]:
    return [parse_vkey(signer.vkey())]


def signed(signer: Signer, size: int, root: bytes, origin: str = ORIGIN) -> str:
    return sign_note(Checkpoint(origin, size, root).text(), [signer])


def inclusion(checkpoint: str | None = None) -> InclusionProof:
    return InclusionProof(ORIGIN, 5, 8, LEAF5, PATH_5_IN_8, ROOT8, checkpoint)


def consistency(old: str | None = None, new: str | None = None) -> ConsistencyProof:
    return ConsistencyProof(ORIGIN, 6, 8, ROOT6, ROOT8, PATH_6_TO_8, old, new)


def test_inclusion_json_shape_and_round_trip(signer: Signer) -> None:
    proof = inclusion(signed(signer, 8, ROOT8))
    d = proof.to_json()
    assert d == {
        "origin": ORIGIN,
        "leaf_index": 5,
        "tree_size": 8,
        "leaf_hash": LEAF5.hex(),
        "inclusion_path": [h.hex() for h in PATH_5_IN_8],
        "root_hash": ROOT8.hex(),
        "checkpoint": proof.checkpoint,
    }
    assert InclusionProof.from_json(json.loads(json.dumps(d))) == proof


def test_consistency_json_round_trip(signer: Signer) -> None:
    proof = consistency(signed(signer, 6, ROOT6), signed(signer, 8, ROOT8))
    d = proof.to_json()
    assert d["consistency_path"] == [h.hex() for h in PATH_6_TO_8]
    assert ConsistencyProof.from_json(json.loads(json.dumps(d))) == proof
    bare = {k: v for k, v in d.items() if not k.endswith("_checkpoint")}
    assert ConsistencyProof.from_json(bare) == consistency()


def test_load_proof_file_detects_the_kind(tmp_path: Path) -> None:
    for proof in (inclusion(), consistency()):
        path = tmp_path / "proof.json"
        path.write_text(json.dumps(proof.to_json()))
        assert load_proof_file(path) == proof
        assert load_proof_file(str(path)) == proof


GOOD_INCLUSION = inclusion().to_json()


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"origin": None}, "missing field 'origin'"),
        ({"leaf_index": None}, "missing field 'leaf_index'"),
        ({"inclusion_path": None}, "missing field 'inclusion_path'"),
        ({"origin": ""}, "field 'origin' must be a non-empty string"),
        ({"origin": 7}, "field 'origin' must be a non-empty string"),
        ({"leaf_index": "5"}, "field 'leaf_index' must be an integer"),
        ({"leaf_index": 5.0}, "field 'leaf_index' must be an integer"),
        ({"tree_size": True}, "field 'tree_size' must be an integer"),
        ({"tree_size": -8}, "field 'tree_size' must not be negative"),
        ({"leaf_hash": LEAF5.hex().upper()}, "field 'leaf_hash' must be a lowercase hex"),
        ({"leaf_hash": LEAF5.hex()[:-2]}, "field 'leaf_hash' must be 32 bytes"),
        ({"leaf_hash": "0x" + LEAF5.hex()[2:]}, "field 'leaf_hash' must be a lowercase hex"),
        ({"root_hash": b"raw".hex()}, "field 'root_hash' must be 32 bytes"),
        ({"root_hash": ["x"]}, "field 'root_hash' must be a lowercase hex"),
        ({"inclusion_path": "abc"}, "field 'inclusion_path' must be a list"),
        ({"inclusion_path": [ROOT8.hex(), 3]}, r"field 'inclusion_path'\[1\] must be a lowercase"),
        ({"checkpoint": 12}, "field 'checkpoint' must be a signed note"),
        ({"checkpiont": "typo"}, "unknown field 'checkpiont'"),
    ],
)
def test_bad_inclusion_fields_are_named(change: dict[str, object], reason: str) -> None:
    d = {**GOOD_INCLUSION, **change}
    d = {k: v for k, v in d.items() if not (v is None and k in change)}
    with pytest.raises(ProofFileError, match=reason):
        InclusionProof.from_json(d)


GOOD_CONSISTENCY = consistency().to_json()


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"old_size": None}, "missing field 'old_size'"),
        ({"new_root": None}, "missing field 'new_root'"),
        ({"old_size": -1}, "field 'old_size' must not be negative"),
        ({"new_size": "8"}, "field 'new_size' must be an integer"),
        ({"old_root": ROOT6.hex()[:10]}, "field 'old_root' must be 32 bytes"),
        ({"consistency_path": [ROOT6.hex().upper()]}, r"'consistency_path'\[0\] must be a lower"),
        ({"new_checkpoint": ["note"]}, "field 'new_checkpoint' must be a signed note"),
        ({"leaf_index": 3}, "unknown field 'leaf_index'"),
    ],
)
def test_bad_consistency_fields_are_named(change: dict[str, object], reason: str) -> None:
    d = {**GOOD_CONSISTENCY, **change}
    d = {k: v for k, v in d.items() if not (v is None and k in change)}
    with pytest.raises(ProofFileError, match=reason):
        ConsistencyProof.from_json(d)


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        ("not json", "not a proof file: not valid JSON"),
        ("[1, 2]", "not a proof file: JSON top level is list"),
        ('{"origin": "a", "origin": "b"}', "duplicate key 'origin'"),
        ('{"origin": "a"}', "exactly one of 'inclusion_path' and 'consistency_path'"),
        (
            '{"inclusion_path": [], "consistency_path": []}',
            "exactly one of 'inclusion_path' and 'consistency_path'",
        ),
    ],
)
def test_bad_proof_files(tmp_path: Path, content: str, reason: str) -> None:
    path = tmp_path / "bad.json"
    path.write_text(content)
    with pytest.raises(ProofFileError, match=reason):
        load_proof_file(path)


def test_inclusion_with_signed_checkpoint(signer: Signer, verifiers: list[Verifier]) -> None:
    proof = inclusion(signed(signer, 8, ROOT8))
    assert verify_proof(proof, verifiers) == (
        f"inclusion of leaf 5 in tree of size 8 verified; checkpoint signed by {ORIGIN}"
    )
    reason = verify_proof(proof, None)
    assert reason.startswith("inclusion of leaf 5 in tree of size 8 verified; ")
    assert "NOT checked (pass --vkey)" in reason
    assert verify_proof(proof, []) == reason


def test_inclusion_without_checkpoint(verifiers: list[Verifier]) -> None:
    assert "root hash is not signed" in verify_proof(inclusion(), None)
    with pytest.raises(ProofError, match="no checkpoint"):
        verify_proof(inclusion(), verifiers)


def test_consistency_with_checkpoints(signer: Signer, verifiers: list[Verifier]) -> None:
    both = consistency(signed(signer, 6, ROOT6), signed(signer, 8, ROOT8))
    assert verify_proof(both, verifiers) == (
        "consistency from tree size 6 to 8 verified; "
        f"old checkpoint signed by {ORIGIN}; new checkpoint signed by {ORIGIN}"
    )
    only_new = consistency(None, signed(signer, 8, ROOT8))
    assert verify_proof(only_new, verifiers).endswith(f"; new checkpoint signed by {ORIGIN}")
    assert "NOT checked" in verify_proof(both, None)
    assert "not signed" in verify_proof(consistency(), None)
    with pytest.raises(ProofError, match="no checkpoint"):
        verify_proof(consistency(), verifiers)


def test_failures(signer: Signer, verifiers: list[Verifier]) -> None:
    stranger = generate_signer(ORIGIN)
    cases: list[tuple[InclusionProof | ConsistencyProof, type[Exception], str]] = [
        (inclusion(signed(stranger, 8, ROOT8)), NoteError, "checkpoint: no signature by a known"),
        (inclusion(signed(signer, 7, ROOT8)), ProofError, "checkpoint is for tree size 7"),
        (inclusion(signed(signer, 8, ROOT6)), ProofError, "checkpoint has root hash"),
        (inclusion(signed(signer, 8, ROOT8, "other.example")), ProofError, "is for log"),
        (inclusion(sign_note("a\nb\nc\n", [signer])), CheckpointError, "not a decimal"),
        (inclusion("no signature block\n"), NoteError, "checkpoint: note has no blank line"),
        (
            InclusionProof(ORIGIN, 4, 8, LEAF5, PATH_5_IN_8, ROOT8, signed(signer, 8, ROOT8)),
            ProofError,
            "root mismatch",
        ),
        (
            consistency(signed(signer, 6, ROOT8), signed(signer, 8, ROOT8)),
            ProofError,
            "old checkpoint has root hash",
        ),
        (
            consistency(signed(signer, 6, ROOT6), signed(stranger, 8, ROOT8)),
            NoteError,
            "new checkpoint: no signature by a known key",
        ),
        (
            ConsistencyProof(ORIGIN, 6, 8, ROOT6, ROOT6, PATH_6_TO_8),
            ProofError,
            "does not lead to the new root",
        ),
    ]
    for proof, error, reason in cases:
        with pytest.raises(error, match=reason):
            verify_proof(proof, verifiers)
    # Without keys, a checkpoint that contradicts the proof still fails.
    with pytest.raises(ProofError, match="checkpoint is for tree size 7"):
        verify_proof(inclusion(signed(stranger, 7, ROOT8)), None)


def test_verify_proof_file(tmp_path: Path, signer: Signer, verifiers: list[Verifier]) -> None:
    good = tmp_path / "good.json"
    good.write_text(json.dumps(inclusion(signed(signer, 8, ROOT8)).to_json()))
    result = verify_proof_file(good, verifiers)
    assert result == VerifyResult(str(good), True, verify_proof(load_proof_file(good), verifiers))

    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({**GOOD_INCLUSION, "leaf_index": 4}))
    result = verify_proof_file(bad, None)
    assert not result.valid
    assert result.reason.startswith("root mismatch")

    missing = verify_proof_file(tmp_path / "missing.json", None)
    assert missing == VerifyResult(
        str(tmp_path / "missing.json"), False, "cannot read the file: No such file or directory"
    )
