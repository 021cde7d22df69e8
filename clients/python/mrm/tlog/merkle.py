"""RFC 6962 / RFC 9162 Merkle tree hashing and proof verification.

Everything here works on leaf *hashes*: the caller hashes its canonical leaf
bytes with `leaf_hash` once and passes the 32-byte digests around, so proofs can
be checked without the records themselves.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

HASH_SIZE = 32
EMPTY_ROOT: bytes = hashlib.sha256(b"").digest()

_sha256 = hashlib.sha256


class ProofError(Exception):
    """A Merkle proof, or the hashes it is checked against, does not verify."""


def leaf_hash(data: bytes) -> bytes:
    """SHA-256(0x00 || data): the 0x00 prefix keeps a leaf from posing as a node."""
    return _sha256(b"\x00" + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """SHA-256(0x01 || left || right)."""
    return _sha256(b"\x01" + left + right).digest()


def root_from_leaf_hashes(hashes: Sequence[bytes]) -> bytes:
    """The Merkle Tree Hash of RFC 6962 §2.1 over `hashes`, in O(n).

    Pairs neighbours level by level and carries a lone last node up unchanged,
    which builds exactly the tree of RFC 6962's "largest power of two smaller
    than n" split without recursing or slicing.
    """
    if not hashes:
        return EMPTY_ROOT
    level = list(hashes)
    while len(level) > 1:
        paired = [node_hash(level[i], level[i + 1]) for i in range(0, len(level) - 1, 2)]
        if len(level) % 2:
            paired.append(level[-1])
        level = paired
    return level[0]


class TreeBuilder:
    """Streaming root computation over leaf hashes appended one at a time.

    Holds one hash per perfect subtree of the tree so far (a compact range:
    one per set bit of `size`, largest first), so memory is O(log n) and each
    append costs one node hash on average.
    """

    __slots__ = ("_size", "_stack")

    def __init__(self) -> None:
        self._size = 0
        self._stack: list[bytes] = []

    @property
    def size(self) -> int:
        """Number of leaves appended so far."""
        return self._size

    def append(self, leaf_hash: bytes) -> None:
        """Add the next leaf hash (not the leaf bytes) to the tree."""
        if len(leaf_hash) != HASH_SIZE:
            raise ValueError(f"leaf hash must be {HASH_SIZE} bytes, got {len(leaf_hash)}")
        stack = self._stack
        stack.append(leaf_hash)
        # Each trailing 1 bit of the old size is a perfect subtree of the same
        # height as the one just completed: merge them, like binary carry.
        n = self._size
        while n & 1:
            right = stack.pop()
            stack[-1] = node_hash(stack[-1], right)
            n >>= 1
        self._size += 1

    def root(self) -> bytes:
        """Root of every leaf appended so far; the builder is left unchanged."""
        stack = self._stack
        if not stack:
            return EMPTY_ROOT
        root = stack[-1]
        for i in range(len(stack) - 2, -1, -1):
            root = node_hash(stack[i], root)
        return root


def _check_hash(what: str, value: bytes) -> None:
    if len(value) != HASH_SIZE:
        raise ProofError(f"{what} must be {HASH_SIZE} bytes, got {len(value)}")


def _check_path(what: str, path: Sequence[bytes]) -> None:
    for i, element in enumerate(path):
        _check_hash(f"{what} element {i}", element)


def inclusion_path_length(index: int, tree_size: int) -> int:
    """Number of hashes in the inclusion proof of leaf `index` (0 <= index < tree_size)."""
    # Below the level where the paths to `index` and to the last leaf split,
    # every level contributes a sibling; above it, only the levels where
    # `index` has a left neighbour on the tree's right border do.
    inner = (index ^ (tree_size - 1)).bit_length()
    return inner + (index >> inner).bit_count()


def consistency_path_length(old_size: int, new_size: int) -> int:
    """Number of hashes in the consistency proof from 0 < old_size < new_size."""
    inner = ((old_size - 1) ^ (new_size - 1)).bit_length()
    border = ((old_size - 1) >> inner).bit_count()
    shift = (old_size & -old_size).bit_length() - 1
    # When old_size is a power of two its root is a node of the new tree and
    # the verifier already has it, so the proof leaves it out.
    seed = 0 if old_size == 1 << shift else 1
    return seed + inner - shift + border


def root_from_inclusion_proof(
    leaf_hash: bytes, index: int, tree_size: int, path: Sequence[bytes]
) -> bytes:
    """The root that `path` leads to from leaf `index` (RFC 9162 §2.1.3.2)."""
    _check_hash("leaf hash", leaf_hash)
    if index < 0 or index >= tree_size:
        raise ProofError(f"leaf index {index} is out of range for a tree of size {tree_size}")
    want = inclusion_path_length(index, tree_size)
    if len(path) != want:
        raise ProofError(
            f"inclusion path has {len(path)} hashes; a proof for leaf {index} "
            f"in a tree of size {tree_size} has {want}"
        )
    _check_path("inclusion path", path)
    fn, sn, r = index, tree_size - 1, leaf_hash
    for p in path:
        # The RFC's own guards; the length check above makes them unreachable.
        if sn == 0:
            raise ProofError("inclusion path is too long")
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            while not fn & 1 and fn != 0:
                fn >>= 1
                sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise ProofError("inclusion path is too short")
    return r


def verify_inclusion(
    leaf_hash: bytes, index: int, tree_size: int, path: Sequence[bytes], root: bytes
) -> None:
    """Raise ProofError unless `path` proves leaf `index` is in the tree with `root`."""
    _check_hash("root hash", root)
    computed = root_from_inclusion_proof(leaf_hash, index, tree_size, path)
    if computed != root:
        raise ProofError(
            f"root mismatch: the inclusion path for leaf {index} leads to {computed.hex()}, "
            f"not to the expected root {root.hex()}"
        )


def verify_consistency(
    old_size: int, new_size: int, path: Sequence[bytes], old_root: bytes, new_root: bytes
) -> None:
    """Raise ProofError unless the tree (new_size, new_root) extends (old_size, old_root).

    RFC 9162 §2.1.4.2, plus the cases it leaves to the caller: equal sizes
    (empty proof, equal roots) and the empty old tree (empty proof).
    """
    _check_hash("old root", old_root)
    _check_hash("new root", new_root)
    if old_size < 0 or new_size < 0:
        raise ProofError(f"tree sizes must not be negative (old {old_size}, new {new_size})")
    if old_size > new_size:
        raise ProofError(
            f"old tree size {old_size} is larger than new tree size {new_size}: "
            "an append-only log never shrinks"
        )
    if old_size == 0 and old_root != EMPTY_ROOT:
        raise ProofError(f"a tree of size 0 has root {EMPTY_ROOT.hex()}, not {old_root.hex()}")
    if old_size == new_size:
        if path:
            raise ProofError(f"both trees have size {old_size}, so the proof must be empty")
        if old_root != new_root:
            raise ProofError(
                f"two different roots for tree size {old_size} "
                f"({old_root.hex()} and {new_root.hex()}): the log has forked"
            )
        return
    if old_size == 0:
        if path:
            raise ProofError("every tree extends the empty tree, so the proof must be empty")
        return
    want = consistency_path_length(old_size, new_size)
    if len(path) != want:
        raise ProofError(
            f"consistency path has {len(path)} hashes; a proof from size {old_size} "
            f"to size {new_size} has {want}"
        )
    _check_path("consistency path", path)
    nodes = list(path)
    if old_size & (old_size - 1) == 0:
        nodes.insert(0, old_root)
    fn, sn = old_size - 1, new_size - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = nodes[0]
    for c in nodes[1:]:
        # The RFC's own guard; the length check above makes it unreachable.
        if sn == 0:
            raise ProofError("consistency path is too long")
        if fn & 1 or fn == sn:
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            while not fn & 1 and fn != 0:
                fn >>= 1
                sn >>= 1
        else:
            sr = node_hash(sr, c)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise ProofError("consistency path is too short")
    if fr != old_root:
        raise ProofError(
            f"the consistency path does not lead to the old root: got {fr.hex()}, "
            f"expected {old_root.hex()} for size {old_size}"
        )
    if sr != new_root:
        raise ProofError(
            f"the consistency path does not lead to the new root: got {sr.hex()}, "
            f"expected {new_root.hex()} for size {new_size}"
        )
