"""The server's stored-subtree tree agrees with the RFC 6962 definitions.

Proofs are generated the way the ledger does it (from perfect-subtree hashes
stored with their last leaf) and checked by the client's independent verifier.
"""

from __future__ import annotations

import hashlib

from hypothesis import given, settings
from hypothesis import strategies as st

from mrm.ledger import merkle
from mrm.tlog.merkle import (
    leaf_hash,
    root_from_leaf_hashes,
    verify_consistency,
    verify_inclusion,
)


class MemoryTree:
    """Stores exactly what the ledger stores per leaf row, in a dict."""

    def __init__(self) -> None:
        self.rows: dict[int, tuple[bytes, bytes]] = {}
        self.frontier = merkle.Frontier(0, self.read)
        self.leaves: list[bytes] = []

    def read(self, nodes: object) -> dict[merkle.NodeId, bytes]:
        out: dict[merkle.NodeId, bytes] = {}
        for node in nodes:  # type: ignore[attr-defined]
            level, _ = node
            leaf_h, subtrees = self.rows[merkle.row_of(node)]
            out[node] = leaf_h if level == 0 else subtrees[(level - 1) * 32 : level * 32]
        return out

    def append(self, data: bytes) -> None:
        h = leaf_hash(data)
        self.rows[len(self.leaves)] = (h, self.frontier.push(h))
        self.leaves.append(h)


def build(n: int) -> MemoryTree:
    tree = MemoryTree()
    for i in range(n):
        tree.append(hashlib.sha256(i.to_bytes(8, "big")).digest())
    return tree


BIG = build(3000)


def test_each_leaf_stores_the_subtrees_it_completes() -> None:
    # Leaf 7 completes subtrees of sizes 2, 4 and 8: three hashes; leaf 8 none.
    assert len(BIG.rows[7][1]) == 3 * 32
    assert BIG.rows[8][1] == b""


def test_roots_match_the_reference_for_every_prefix_up_to_300() -> None:
    for size in range(0, 301):
        assert merkle.root(size, BIG.read) == root_from_leaf_hashes(BIG.leaves[:size])


def test_frontier_root_matches_stored_root() -> None:
    tree = MemoryTree()
    for i in range(200):
        tree.append(bytes([i % 256]))
        assert tree.frontier.root() == merkle.root(i + 1, tree.read)


def test_frontier_reopens_from_storage() -> None:
    reopened = merkle.Frontier(1234, BIG.read)
    expected = MemoryTree()
    for i in range(1235):
        expected.append(hashlib.sha256(i.to_bytes(8, "big")).digest())
    h = leaf_hash(hashlib.sha256((1234).to_bytes(8, "big")).digest())
    assert (h, reopened.push(h)) == expected.rows[1234]


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_inclusion_proofs_verify(data: st.DataObject) -> None:
    size = data.draw(st.integers(1, 3000))
    index = data.draw(st.integers(0, size - 1))
    path = merkle.hash_ranges(merkle.inclusion_ranges(index, size), BIG.read)
    root = merkle.root(size, BIG.read)
    verify_inclusion(BIG.leaves[index], index, size, path, root)


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_consistency_proofs_verify(data: st.DataObject) -> None:
    new = data.draw(st.integers(0, 3000))
    old = data.draw(st.integers(0, new))
    path = merkle.hash_ranges(merkle.consistency_ranges(old, new), BIG.read)
    verify_consistency(old, new, path, merkle.root(old, BIG.read), merkle.root(new, BIG.read))


def test_proofs_read_logarithmically_many_rows() -> None:
    reads: list[int] = []

    def counting(nodes: object) -> dict[merkle.NodeId, bytes]:
        wanted = list(nodes)  # type: ignore[call-overload]
        reads.append(len({merkle.row_of(n) for n in wanted}))
        return BIG.read(wanted)

    for index in (0, 1, 1500, 2047, 2998):
        merkle.hash_ranges([*merkle.inclusion_ranges(index, 2999), (0, 2999)], counting)
    # One read per proof, of at most 2·log2(n) rows.
    assert len(reads) == 5
    assert max(reads) <= 2 * (2999).bit_length()


def test_single_leaf_and_empty_trees() -> None:
    tree = MemoryTree()
    tree.append(b"only")
    assert merkle.inclusion_ranges(0, 1) == []
    assert merkle.consistency_ranges(0, 1) == []
    assert merkle.root(1, tree.read) == leaf_hash(b"only")
    assert merkle.root(0, tree.read) == hashlib.sha256(b"").digest()
