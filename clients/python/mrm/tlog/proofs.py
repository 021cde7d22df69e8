"""Proof files: JSON documents that let anyone verify the ledger offline.

An inclusion file shows that one record's leaf is in a tree; a consistency
file shows that a later tree extends an earlier one. Either may carry the
signed checkpoints that vouch for its root hashes.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Self

from mrm.tlog.canonical import CanonicalJSONError, parse_json_object
from mrm.tlog.checkpoint import CheckpointError, parse_checkpoint
from mrm.tlog.merkle import HASH_SIZE, ProofError, verify_consistency, verify_inclusion
from mrm.tlog.note import NoteError, Verifier, open_note, unverified_text

_HEX_DIGITS = frozenset("0123456789abcdef")
_INCLUSION_KEYS = frozenset(
    {"origin", "leaf_index", "tree_size", "leaf_hash", "inclusion_path", "root_hash", "checkpoint"}
)
_CONSISTENCY_KEYS = frozenset(
    {"origin", "old_size", "new_size", "old_root", "new_root", "consistency_path"}
    | {"old_checkpoint", "new_checkpoint"}
)


class ProofFileError(Exception):
    """A proof file is not valid JSON of the expected shape; names the bad field."""


def _check_keys(d: Mapping[str, object], allowed: frozenset[str]) -> None:
    # Unknown fields are refused: a misspelt "checkpoint" must not silently
    # turn a signed proof into an unsigned one.
    unknown = sorted(set(d) - allowed)
    if unknown:
        raise ProofFileError(f"unknown field {unknown[0]!r}")


def _get(d: Mapping[str, object], key: str) -> object:
    if key not in d:
        raise ProofFileError(f"missing field {key!r}")
    return d[key]


def _str(d: Mapping[str, object], key: str) -> str:
    value = _get(d, key)
    if not isinstance(value, str) or not value:
        raise ProofFileError(f"field {key!r} must be a non-empty string")
    return value


def _size(d: Mapping[str, object], key: str) -> int:
    value = _get(d, key)
    if type(value) is not int:  # bool is an int subclass, and not a size
        raise ProofFileError(f"field {key!r} must be an integer")
    if value < 0:
        raise ProofFileError(f"field {key!r} must not be negative, got {value}")
    return value


def _hash_from(value: object, what: str) -> bytes:
    if not isinstance(value, str) or not _HEX_DIGITS.issuperset(value):
        raise ProofFileError(f"{what} must be a lowercase hex string")
    if len(value) != 2 * HASH_SIZE:
        raise ProofFileError(f"{what} must be {HASH_SIZE} bytes ({2 * HASH_SIZE} hex digits)")
    return bytes.fromhex(value)


def _hash(d: Mapping[str, object], key: str) -> bytes:
    return _hash_from(_get(d, key), f"field {key!r}")


def _path(d: Mapping[str, object], key: str) -> tuple[bytes, ...]:
    value = _get(d, key)
    if not isinstance(value, list):
        raise ProofFileError(f"field {key!r} must be a list of hashes")
    return tuple(_hash_from(h, f"field {key!r}[{i}]") for i, h in enumerate(value))


def _note(d: Mapping[str, object], key: str) -> str | None:
    value = d.get(key)
    if value is not None and not isinstance(value, str):
        raise ProofFileError(f"field {key!r} must be a signed note (string) or null")
    return value


@dataclass(frozen=True)
class InclusionProof:
    """Leaf `leaf_index` (with `leaf_hash`) is in the tree of `tree_size` with `root_hash`."""

    origin: str
    leaf_index: int
    tree_size: int
    leaf_hash: bytes
    inclusion_path: tuple[bytes, ...]
    root_hash: bytes
    checkpoint: str | None = None

    def to_json(self) -> dict[str, object]:
        return {
            "origin": self.origin,
            "leaf_index": self.leaf_index,
            "tree_size": self.tree_size,
            "leaf_hash": self.leaf_hash.hex(),
            "inclusion_path": [h.hex() for h in self.inclusion_path],
            "root_hash": self.root_hash.hex(),
            "checkpoint": self.checkpoint,
        }

    @classmethod
    def from_json(cls, d: Mapping[str, object]) -> Self:
        _check_keys(d, _INCLUSION_KEYS)
        return cls(
            origin=_str(d, "origin"),
            leaf_index=_size(d, "leaf_index"),
            tree_size=_size(d, "tree_size"),
            leaf_hash=_hash(d, "leaf_hash"),
            inclusion_path=_path(d, "inclusion_path"),
            root_hash=_hash(d, "root_hash"),
            checkpoint=_note(d, "checkpoint"),
        )


@dataclass(frozen=True)
class ConsistencyProof:
    """The tree (`new_size`, `new_root`) is an append-only extension of (`old_size`, `old_root`)."""

    origin: str
    old_size: int
    new_size: int
    old_root: bytes
    new_root: bytes
    consistency_path: tuple[bytes, ...]
    old_checkpoint: str | None = None
    new_checkpoint: str | None = None

    def to_json(self) -> dict[str, object]:
        return {
            "origin": self.origin,
            "old_size": self.old_size,
            "new_size": self.new_size,
            "old_root": self.old_root.hex(),
            "new_root": self.new_root.hex(),
            "consistency_path": [h.hex() for h in self.consistency_path],
            "old_checkpoint": self.old_checkpoint,
            "new_checkpoint": self.new_checkpoint,
        }

    @classmethod
    def from_json(cls, d: Mapping[str, object]) -> Self:
        _check_keys(d, _CONSISTENCY_KEYS)
        return cls(
            origin=_str(d, "origin"),
            old_size=_size(d, "old_size"),
            new_size=_size(d, "new_size"),
            old_root=_hash(d, "old_root"),
            new_root=_hash(d, "new_root"),
            consistency_path=_path(d, "consistency_path"),
            old_checkpoint=_note(d, "old_checkpoint"),
            new_checkpoint=_note(d, "new_checkpoint"),
        )


def load_proof_file(path: str | os.PathLike[str]) -> InclusionProof | ConsistencyProof:
    """Read a proof file, telling the two kinds apart by their path field."""
    try:
        with open(path, "rb") as f:
            d = parse_json_object(f.read())
    except CanonicalJSONError as e:
        raise ProofFileError(f"not a proof file: {e}") from e
    if "inclusion_path" in d and "consistency_path" not in d:
        return InclusionProof.from_json(d)
    if "consistency_path" in d and "inclusion_path" not in d:
        return ConsistencyProof.from_json(d)
    raise ProofFileError(
        "not a proof file: it needs exactly one of 'inclusion_path' and 'consistency_path'"
    )


@dataclass(frozen=True)
class VerifyResult:
    """The outcome of checking one proof file, as `mrmctl` reports it."""

    file: str
    valid: bool
    reason: str


def _check_checkpoint(
    note: str,
    what: str,
    origin: str,
    size: int,
    root: bytes,
    verifiers: Sequence[Verifier] | None,
) -> str:
    """Check that the signed note `note` vouches for (origin, size, root); say by whom."""
    try:
        if verifiers:
            opened = open_note(note, verifiers)
            text, signed = opened.text, f"{what} signed by {', '.join(opened.verified)}"
        else:
            text, signed = unverified_text(note), f"{what} signature NOT checked (pass --vkey)"
        cp = parse_checkpoint(text)
    except NoteError as e:
        raise NoteError(f"{what}: {e}") from e
    except CheckpointError as e:
        raise CheckpointError(f"{what}: {e}") from e
    if cp.origin != origin:
        raise ProofError(f"{what} is for log {cp.origin!r}, but the proof is for {origin!r}")
    if cp.size != size:
        raise ProofError(f"{what} is for tree size {cp.size}, but the proof is for size {size}")
    if cp.root_hash != root:
        raise ProofError(
            f"{what} has root hash {cp.root_hash.hex()}, but the proof has {root.hex()}"
        )
    return signed


def verify_proof(
    proof: InclusionProof | ConsistencyProof, verifiers: Sequence[Verifier] | None
) -> str:
    """Verify a proof and the checkpoints in it; return what was shown, for the user.

    With verifier keys, every checkpoint in the file must carry a valid
    signature by one of them, and the file must hold at least one checkpoint:
    a root hash nobody signed proves nothing. Without keys (None or empty),
    checkpoints are still parsed and matched against the proof, and the reason
    says that their signatures were not checked. Raises ProofError, NoteError
    or CheckpointError on failure.
    """
    if isinstance(proof, InclusionProof):
        verify_inclusion(
            proof.leaf_hash,
            proof.leaf_index,
            proof.tree_size,
            proof.inclusion_path,
            proof.root_hash,
        )
        what = f"inclusion of leaf {proof.leaf_index} in tree of size {proof.tree_size} verified"
        notes = [("checkpoint", proof.checkpoint, proof.tree_size, proof.root_hash)]
    else:
        verify_consistency(
            proof.old_size, proof.new_size, proof.consistency_path, proof.old_root, proof.new_root
        )
        what = f"consistency from tree size {proof.old_size} to {proof.new_size} verified"
        notes = [
            ("old checkpoint", proof.old_checkpoint, proof.old_size, proof.old_root),
            ("new checkpoint", proof.new_checkpoint, proof.new_size, proof.new_root),
        ]
    present = [(name, note, size, root) for name, note, size, root in notes if note is not None]
    if not present:
        if verifiers:
            raise ProofError("the file has no checkpoint, so no key vouches for its root hash")
        return f"{what}; no checkpoint in the file, so the root hash is not signed"
    said = [
        _check_checkpoint(note, name, proof.origin, size, root, verifiers)
        for name, note, size, root in present
    ]
    return "; ".join([what, *said])


def verify_proof_file(
    path: str | os.PathLike[str], verifiers: Sequence[Verifier] | None
) -> VerifyResult:
    """Load and verify one proof file; every failure becomes an invalid result with a reason."""
    try:
        reason = verify_proof(load_proof_file(path), verifiers)
    except (ProofFileError, ProofError, NoteError, CheckpointError) as e:
        return VerifyResult(os.fspath(path), False, str(e))
    except OSError as e:
        return VerifyResult(os.fspath(path), False, f"cannot read the file: {e.strerror}")
    return VerifyResult(os.fspath(path), True, reason)
