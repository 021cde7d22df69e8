"""The ledger's Merkle tree over stored subtree hashes (RFC 6962).

The store keeps the hash of every complete (perfect) subtree. A node is named
by (level, index): it covers leaves [index·2^level, (index+1)·2^level). It is
completed by, and stored with, its last leaf, at row (index+1)·2^level - 1. So
appending never rewrites anything, and any proof or root needs only the
O(log n) perfect subtrees it touches, fetched in one read.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence

from mrm.tlog.merkle import EMPTY_ROOT, node_hash

NodeId = tuple[int, int]
"""(level, index) of a perfect subtree."""

Range = tuple[int, int]
"""Leaves [begin, end) whose RFC 6962 Merkle tree hash is wanted."""

NodeReader = Callable[[Iterable[NodeId]], dict[NodeId, bytes]]


def row_of(node: NodeId) -> int:
    """The leaf row that stores a node: its subtree's last leaf."""
    level, index = node
    return ((index + 1) << level) - 1


def _largest_power_of_two_below(n: int) -> int:
    return 1 << ((n - 1).bit_length() - 1)


def decompose(begin: int, end: int) -> list[NodeId]:
    """The perfect subtrees of an RFC 6962 subtree range, largest first.

    Ranges that occur in proofs start at a multiple of a power of two at least as
    large as their length, so their binary decomposition is aligned.
    """
    nodes: list[NodeId] = []
    offset = begin
    remaining = end - begin
    for level in range(remaining.bit_length() - 1, -1, -1):
        if remaining >> level & 1:
            nodes.append((level, offset >> level))
            offset += 1 << level
    return nodes


def range_hash(begin: int, end: int, hashes: dict[NodeId, bytes]) -> bytes:
    """MTH(D[begin:end]): the perfect parts folded from the right, as RFC 6962 splits."""
    if begin == end:
        return EMPTY_ROOT
    parts = decompose(begin, end)
    acc = hashes[parts[-1]]
    for node in reversed(parts[:-1]):
        acc = node_hash(hashes[node], acc)
    return acc


def inclusion_ranges(index: int, size: int) -> list[Range]:
    """The ranges whose hashes form PATH(index, D[size]), bottom to top."""
    ranges: list[Range] = []
    begin, end = 0, size
    while end - begin > 1:
        k = _largest_power_of_two_below(end - begin)
        if index - begin < k:
            ranges.append((begin + k, end))
            end = begin + k
        else:
            ranges.append((begin, begin + k))
            begin += k
    ranges.reverse()
    return ranges


def consistency_ranges(old_size: int, new_size: int) -> list[Range]:
    """The ranges whose hashes form PROOF(old_size, D[new_size]), in order."""
    if old_size == 0 or old_size == new_size:
        return []
    ranges: list[Range] = []
    begin, end, m, complete = 0, new_size, old_size, True
    while m != end - begin:
        k = _largest_power_of_two_below(end - begin)
        if m <= k:
            ranges.append((begin + k, end))
            end = begin + k
        else:
            ranges.append((begin, begin + k))
            m -= k
            begin += k
            complete = False
    if not complete:
        ranges.append((begin, end))
    ranges.reverse()
    return ranges


def hash_ranges(ranges: Sequence[Range], read: NodeReader) -> list[bytes]:
    """Hashes of the ranges, fetched in a single read of their perfect subtrees."""
    needed = {node for begin, end in ranges for node in decompose(begin, end)}
    hashes = read(needed)
    return [range_hash(begin, end, hashes) for begin, end in ranges]


def root(size: int, read: NodeReader) -> bytes:
    """The root of the first `size` leaves."""
    return hash_ranges([(0, size)], read)[0]


class Frontier:
    """The right edge of the tree: the perfect subtrees covering [0, size)."""

    def __init__(self, size: int, read: NodeReader) -> None:
        self.size = size
        ids = decompose(0, size)
        hashes = read(ids)
        # (level, hash), largest subtree first.
        self._stack: list[tuple[int, bytes]] = [(level, hashes[(level, i)]) for level, i in ids]

    def push(self, h: bytes) -> bytes:
        """Add a leaf hash; return the hashes of the subtrees it completes, level 1 up."""
        current, level = h, 0
        completed: list[bytes] = []
        while self._stack and self._stack[-1][0] == level:
            _, left = self._stack.pop()
            current = node_hash(left, current)
            level += 1
            completed.append(current)
        self._stack.append((level, current))
        self.size += 1
        return b"".join(completed)

    def root(self) -> bytes:
        if not self._stack:
            return EMPTY_ROOT
        acc = self._stack[-1][1]
        for _, h in reversed(self._stack[:-1]):
            acc = node_hash(h, acc)
        return acc
