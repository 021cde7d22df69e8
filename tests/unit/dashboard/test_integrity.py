"""The dashboard's checkpoint watch: a log that grew is proven to extend the last
checkpoint seen; one that shrank, rewrote a leaf or changed its key is flagged."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

from mrm.dashboard.integrity import CheckpointWatch
from mrm.tlog.checkpoint import Checkpoint as Body
from mrm.tlog.merkle import TreeBuilder, leaf_hash
from mrm.tlog.note import Signer, generate_signer, sign_note
from mrm.v1 import ledger_pb2

ORIGIN = "mrm.test/dashboard"


def _root(leaves: list[bytes]) -> bytes:
    tree = TreeBuilder()
    for leaf in leaves:
        tree.append(leaf_hash(leaf))
    return tree.root()


def _checkpoint(signer: Signer, leaves: list[bytes]) -> ledger_pb2.Checkpoint:
    root = _root(leaves)
    note = sign_note(Body(ORIGIN, len(leaves), root).text(), [signer])
    return ledger_pb2.Checkpoint(
        origin=ORIGIN,
        tree_size=len(leaves),
        root_hash=root,
        note=note,
        verifier_key=signer.vkey(),
    )


def _consistency(old: list[bytes], new: list[bytes]) -> list[bytes]:
    """RFC 6962 SUBPROOF(m, D[n], true), straight from the definition, over `new`'s
    own leaves (so a rewritten log gets a proof that cannot match the old root)."""

    def mth(d: list[bytes]) -> bytes:
        return _root(d)

    def sub(m: int, d: list[bytes], complete: bool) -> list[bytes]:
        n = len(d)
        if m == n:
            return [] if complete else [mth(d)]
        k = 1
        while k * 2 < n:
            k *= 2
        if m <= k:
            return [*sub(m, d[:k], complete), mth(d[k:])]
        return [*sub(m - k, d[k:], False), mth(d[:k])]

    return sub(len(old), new, True)


@dataclass
class FakeLedger:
    checkpoints: list[ledger_pb2.Checkpoint]
    leaves: list[list[bytes]]
    calls: list[str] = field(default_factory=list)

    def checkpoint(self) -> ledger_pb2.Checkpoint:
        self.calls.append("checkpoint")
        return self.checkpoints.pop(0)

    def consistency_proof(self, old: int, new: int) -> Any:
        self.calls.append(f"consistency {old} {new}")
        current = self.leaves[0]
        return ledger_pb2.GetConsistencyProofResponse(
            old_size=old, new_size=new, consistency_path=_consistency(current[:old], current)
        )


@dataclass
class FakeSources:
    ledger: FakeLedger


def _leaves(n: int, salt: str = "") -> list[bytes]:
    return [hashlib.sha256(f"{salt}{i}".encode()).digest() for i in range(n)]


def _watch(*states: tuple[Signer, list[bytes]]) -> tuple[CheckpointWatch, FakeLedger]:
    ledger = FakeLedger([_checkpoint(s, leaves) for s, leaves in states], [states[-1][1]])
    return CheckpointWatch(FakeSources(ledger)), ledger  # type: ignore[arg-type]


def test_a_grown_log_is_proven_to_extend_the_last_checkpoint() -> None:
    key = generate_signer("vm")
    watch, ledger = _watch((key, _leaves(5)), (key, _leaves(13)))
    first = watch.check()
    assert first.ok
    assert first.consistency.startswith("the first checkpoint")
    second = watch.check()
    assert second.ok, second.consistency
    assert second.consistency.startswith("proven to extend")
    assert ledger.calls == ["checkpoint", "checkpoint", "consistency 5 13"]


def test_a_rewritten_leaf_is_caught() -> None:
    key = generate_signer("vm")
    rewritten = _leaves(13)
    rewritten[2] = b"tampered"
    watch, _ = _watch((key, _leaves(5)), (key, rewritten))
    watch.check()
    second = watch.check()
    assert not second.ok
    assert "NOT an extension" in second.consistency


def test_a_shrunk_log_and_a_changed_root_are_caught() -> None:
    key = generate_signer("vm")
    watch, _ = _watch((key, _leaves(8)), (key, _leaves(5)))
    watch.check()
    shrunk = watch.check()
    assert not shrunk.ok
    assert "the log shrank" in shrunk.consistency
    watch, _ = _watch((key, _leaves(8)), (key, _leaves(8, "other")))
    watch.check()
    changed = watch.check()
    assert not changed.ok
    assert "root hash of the same 8 records changed" in changed.consistency


def test_a_checkpoint_signed_by_another_key_is_flagged() -> None:
    watch, _ = _watch((generate_signer("vm"), _leaves(3)), (generate_signer("vm"), _leaves(4)))
    assert watch.check().ok
    other = watch.check()
    assert not other.ok
    assert "does not check with the key first seen" in other.signature
