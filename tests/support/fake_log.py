"""An in-memory ledger for the client tests: a log that signs its own checkpoints and
answers proofs the way an honest ledger would.

Proofs are built from the RFC 6962 §2.1 definitions (PATH and SUBPROOF)
directly, independently of the server's storage-based proof code.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field

from mrm.tlog.canonical import canonical_json
from mrm.tlog.checkpoint import Checkpoint
from mrm.tlog.leaf import leaf_bytes_from_proto
from mrm.tlog.merkle import leaf_hash, root_from_leaf_hashes
from mrm.tlog.note import Signer, generate_signer, sign_note
from mrm.v1 import ledger_pb2


def _split(n: int) -> int:
    k = 1
    while k * 2 < n:
        k *= 2
    return k


def inclusion_path(m: int, leaves: list[bytes]) -> list[bytes]:
    n = len(leaves)
    if n == 1:
        return []
    k = _split(n)
    if m < k:
        return [*inclusion_path(m, leaves[:k]), root_from_leaf_hashes(leaves[k:])]
    return [*inclusion_path(m - k, leaves[k:]), root_from_leaf_hashes(leaves[:k])]


def _subproof(m: int, leaves: list[bytes], complete: bool) -> list[bytes]:
    n = len(leaves)
    if m == n:
        return [] if complete else [root_from_leaf_hashes(leaves)]
    k = _split(n)
    if m <= k:
        return [*_subproof(m, leaves[:k], complete), root_from_leaf_hashes(leaves[k:])]
    return [*_subproof(m - k, leaves[k:], False), root_from_leaf_hashes(leaves[:k])]


def consistency_path(old: int, new: int, leaves: list[bytes]) -> list[bytes]:
    if old == 0 or old == new:
        return []
    return _subproof(old, leaves[:new], True)


@dataclass
class FakeLog:
    """Leaf hashes plus a signer: enough to play an honest (or lying) ledger."""

    origin: str = "test.example/log"
    signer: Signer = field(default_factory=lambda: generate_signer("test.example/log"))
    leaves: list[bytes] = field(default_factory=list)

    @property
    def vkey(self) -> str:
        return self.signer.vkey()

    def grow(self, n: int) -> FakeLog:
        self.leaves.extend(leaf_hash(os.urandom(16)) for _ in range(n))
        return self

    def root(self, size: int) -> bytes:
        return root_from_leaf_hashes(self.leaves[:size])

    def note(self, size: int) -> str:
        return sign_note(Checkpoint(self.origin, size, self.root(size)).text(), [self.signer])

    def checkpoint(self, size: int | None = None) -> ledger_pb2.Checkpoint:
        size = len(self.leaves) if size is None else size
        return ledger_pb2.Checkpoint(
            origin=self.origin,
            tree_size=size,
            root_hash=self.root(size),
            note=self.note(size),
            verifier_key=self.vkey,
        )

    def prove(self, old: int, new: int) -> list[bytes]:
        return consistency_path(old, new, self.leaves)


def stored_record(index: int, body: dict[str, object]) -> ledger_pb2.Record:
    """A record as the ledger returns it, with a correct stored leaf hash."""
    rec = ledger_pb2.Record(
        record_id=f"01a22336-0000-7000-8000-{index:012x}",
        kind=ledger_pb2.RECORD_KIND_PREDICTION,
        body_json=canonical_json(body).decode(),
        leaf_index=index,
        actor="anonymous@test",
    )
    rec.recorded_at.FromMicroseconds(1_800_000_000_000_000 + index)
    rec.leaf_hash = leaf_hash(leaf_bytes_from_proto(rec))
    return rec


def body_of(rec: ledger_pb2.Record) -> dict[str, object]:
    value = json.loads(rec.body_json)
    assert isinstance(value, dict)
    return value
