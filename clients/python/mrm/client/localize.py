"""Finding which leaf a signed root disagrees with, using the ledger's inclusion proofs.

Needed when every record still hashes to its stored leaf hash but a signed
checkpoint's root does not match the rebuilt tree: someone rewrote a record
*and* its stored hash. The ledger builds proofs from the subtree hashes it
stored at append time, which such an edit does not reach.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Protocol

import grpc

from mrm.client.errors import from_rpc_error
from mrm.client.ledger import Checkpoint, InclusionProof, Record
from mrm.tlog.merkle import ProofError, root_from_inclusion_proof

_BATCH = 64  # inclusion proofs in flight at once


class PendingProof(Protocol):
    def result(self, timeout: float | None = None) -> InclusionProof: ...


class LedgerReader(Protocol):
    """What the audit needs from the ledger; LedgerClient provides it."""

    def list_checkpoints(self) -> Iterator[Checkpoint]: ...

    def query_pages(self, *, page_size: int) -> Iterator[Sequence[Record]]: ...

    def inclusion_proof_future(self, leaf_index: int, tree_size: int) -> PendingProof: ...


@dataclass(frozen=True)
class BadLeaf:
    leaf_index: int
    record_id: str | None
    reason: str


def _proof(pending: PendingProof) -> InclusionProof:
    try:
        return pending.result()
    except grpc.RpcError as e:
        raise from_rpc_error(e) from None


@dataclass(frozen=True)
class _Window:
    """Leaves [start, size) with their recomputed hashes, against one signed root."""

    client: LedgerReader
    start: int
    hashes: bytes
    size: int
    root: bytes

    def covered(self, proof: InclusionProof, index: int) -> bool:
        """Whether our recomputed hash of leaf `index` is under the signed root."""
        at = (index - self.start) * 32
        try:
            got = root_from_inclusion_proof(
                self.hashes[at : at + 32], index, self.size, proof.inclusion_path
            )
        except ProofError:
            return False
        return got == self.root

    def first_uncovered(self) -> tuple[int, InclusionProof] | None:
        for lo in range(self.start, self.size, _BATCH):
            hi = min(lo + _BATCH, self.size)
            batch = [(i, self.client.inclusion_proof_future(i, self.size)) for i in range(lo, hi)]
            for i, pending in batch:
                proof = _proof(pending)
                if not self.covered(proof, i):
                    return i, proof
        return None


def localize(
    client: LedgerReader, start: int, hashes: bytes, size: int, root: bytes
) -> BadLeaf | None:
    """The first leaf in [start, size) whose recomputed hash (`hashes`, 32 bytes
    per leaf from `start`) the signed `root` of `size` leaves does not cover.

    A proof that verifies clears its leaf; a failing one may instead belong to
    the altered leaf's neighbour, because the lowest level of a path comes
    from the stored leaf hash, the very column such an attacker rewrites. Then
    both leaves of the pair fail, nothing stored tells them apart, and the
    pair is named.
    """
    window = _Window(client, start, hashes, size, root)
    found = window.first_uncovered()
    if found is None:
        return None
    i, proof = found
    rid = proof.record.record_id or None
    j = i ^ 1
    if i < j < size:
        other = _proof(client.inclusion_proof_future(j, size))
        if not window.covered(other, j):
            return BadLeaf(
                i,
                rid,
                f"leaf {i} ({rid}) or leaf {j} ({other.record.record_id}) was altered along "
                f"with its stored leaf hash: the pair is not what the checkpoint of size {size} "
                "signed, and the ledger's stored hashes cannot tell which of the two it was",
            )
    return BadLeaf(
        i,
        rid,
        f"its content is not what the checkpoint of size {size} signed "
        "(its stored leaf hash was rewritten to match)",
    )
