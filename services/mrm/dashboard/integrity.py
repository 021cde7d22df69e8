"""The ledger's integrity as the dashboard can show it cheaply, and a record's proof.

On each page load the dashboard reads the latest signed checkpoint, checks its
signature with the key it saw first (trust on first use, as mrmctl does), and
proves it consistent with the previous checkpoint it saw: an append-only log
never rewrites what an earlier checkpoint covered. A full audit re-hashes every
leaf; that is `mrmctl ledger verify`, which the page offers rather than runs.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass

from mrm.client import errors as client_errors
from mrm.client.ledger import Checkpoint
from mrm.dashboard.sources import Sources, upstream
from mrm.dashboard.views import when
from mrm.tlog.checkpoint import CheckpointError, parse_checkpoint
from mrm.tlog.leaf import kind_name, leaf_bytes_from_proto
from mrm.tlog.merkle import ProofError, leaf_hash, verify_consistency
from mrm.tlog.note import NoteError, open_note, parse_vkey
from mrm.tlog.proofs import InclusionProof, verify_proof

VERIFY_COMMAND = "mrmctl ledger verify"


@dataclass(frozen=True)
class Integrity:
    origin: str
    tree_size: int
    signed_at: str
    root_hash: str
    verifier_key: str
    ok: bool
    signature: str
    """Who signed the checkpoint, or what is wrong with the signature."""
    consistency: str
    """How it relates to the previous checkpoint this server saw."""
    last_full_verification: str
    """"" when none is recorded: the ledger records no audit runs."""
    verify_command: str = VERIFY_COMMAND


class CheckpointWatch:
    """Remembers the previous checkpoint and the first key seen, across page loads."""

    def __init__(self, sources: Sources) -> None:
        self.sources = sources
        self._lock = threading.Lock()
        self._previous: Checkpoint | None = None
        self._previous_seen = ""
        self._vkey = ""

    def check(self) -> Integrity:
        with upstream("ledger"):
            cp = self.sources.ledger.checkpoint()
        with self._lock:
            self._vkey = self._vkey or cp.verifier_key
            ok, signature = _signature(cp, self._vkey)
            previous, seen = self._previous, self._previous_seen
            consistent, consistency = self._consistency(previous, seen, cp)
            if ok and consistent and (previous is None or cp.tree_size >= previous.tree_size):
                self._previous, self._previous_seen = cp, when(cp.signed_at)
        return Integrity(
            origin=cp.origin,
            tree_size=cp.tree_size,
            signed_at=when(cp.signed_at),
            root_hash=cp.root_hash.hex(),
            verifier_key=self._vkey,
            ok=ok and consistent,
            signature=signature,
            consistency=consistency,
            last_full_verification="",
        )

    def _consistency(
        self, previous: Checkpoint | None, seen: str, cp: Checkpoint
    ) -> tuple[bool, str]:
        if previous is None:
            return True, "the first checkpoint this dashboard has seen since it started"
        old, new = previous.tree_size, cp.tree_size
        if new < old:
            return (
                False,
                f"the log shrank: {new:,} records now, {old:,} in the checkpoint of {seen}",
            )
        if new == old:
            if cp.root_hash != previous.root_hash:
                return False, f"the root hash of the same {new:,} records changed since {seen}"
            return True, f"unchanged since the checkpoint of {seen}"
        with upstream("ledger"):
            proof = self.sources.ledger.consistency_proof(old, new)
        try:
            verify_consistency(
                old, new, list(proof.consistency_path), previous.root_hash, cp.root_hash
            )
        except ProofError as e:
            return False, f"NOT an extension of the checkpoint of {seen} ({old:,} records): {e}"
        return True, (
            f"proven to extend the checkpoint of {seen} ({old:,} records) without "
            "changing any of them"
        )


def _signature(cp: Checkpoint, vkey: str) -> tuple[bool, str]:
    try:
        note = open_note(cp.note, [parse_vkey(vkey)])
        parsed = parse_checkpoint(note.text)
    except (NoteError, CheckpointError) as e:
        return False, f"the signature does not check with the key first seen ({e})"
    if (parsed.origin, parsed.size, parsed.root_hash) != (cp.origin, cp.tree_size, cp.root_hash):
        return False, "the signed note does not say what the checkpoint says"
    return True, "signed by " + ", ".join(note.verified)


@dataclass(frozen=True)
class RecordProof:
    """A record, its leaf and its inclusion proof as verified by this server."""

    record_id: str
    kind: str
    model: str
    version: str
    actor: str
    recorded_at: str
    leaf_index: int
    leaf_json: str
    """The leaf as hashed, indented for reading."""
    tree_size: int
    verified: bool
    reason: str
    proof: dict[str, object]
    """The proof file `mrmctl ledger verify-proof` checks."""
    verifier_key: str


def prove(sources: Sources, record_id: str) -> RecordProof:
    """Fetch `record_id` and its proof against the latest checkpoint, and verify it here."""
    with upstream("ledger"):
        record = sources.ledger.get_record(record_id)
        try:
            resp = sources.ledger.inclusion_proof(record_id=record_id)
        except (client_errors.FailedPrecondition, client_errors.InvalidArgument):
            # newer than the latest checkpoint: sign one that covers it
            sources.ledger.checkpoint(refresh=True)
            resp = sources.ledger.inclusion_proof(record_id=record_id)
    leaf = leaf_bytes_from_proto(record)
    proof = InclusionProof(
        origin=resp.checkpoint.origin,
        leaf_index=resp.leaf_index,
        tree_size=resp.tree_size,
        leaf_hash=leaf_hash(leaf),
        inclusion_path=tuple(resp.inclusion_path),
        root_hash=resp.root_hash,
        checkpoint=resp.checkpoint.note or None,
    )
    vkey = resp.checkpoint.verifier_key
    try:
        if proof.leaf_hash != resp.leaf_hash:
            raise ProofError("the record's bytes do not hash to the leaf the ledger proves")
        if resp.leaf_index != record.leaf_index:
            raise ProofError(f"the proof is for leaf {resp.leaf_index}, not {record.leaf_index}")
        reason, verified = verify_proof(proof, [parse_vkey(vkey)]), True
    except (ProofError, NoteError, CheckpointError) as e:
        reason, verified = str(e), False
    return RecordProof(
        record_id=record.record_id,
        kind=kind_name(record.kind),
        model=record.model_name,
        version=record.model_version,
        actor=record.actor,
        recorded_at=when(record.recorded_at),
        leaf_index=record.leaf_index,
        leaf_json=json.dumps(json.loads(leaf), indent=2, ensure_ascii=False, sort_keys=True),
        tree_size=resp.tree_size,
        verified=verified,
        reason=reason,
        proof=proof.to_json(),
        verifier_key=vkey,
    )
