"""The full audit behind `mrmctl ledger verify`.

It trusts nothing the server computed: every leaf hash is re-derived from the
record's fields, the tree is rebuilt from those hashes, and each signed
checkpoint's root is compared with the rebuilt tree at that size. The first
leaf that disagrees is named, by its hash when the record no longer matches
its stored hash, else by inclusion proofs (see mrm.client.localize).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from mrm.client.localize import BadLeaf, LedgerReader, localize
from mrm.client.trust import TrustedCheckpoint, TrustError, open_checkpoint
from mrm.tlog.leaf import leaf_bytes_from_proto
from mrm.tlog.merkle import TreeBuilder, leaf_hash

PAGE_SIZE = 10_000

__all__ = ["PAGE_SIZE", "AuditReport", "BadLeaf", "LedgerReader", "audit_ledger"]


@dataclass
class AuditReport:
    tree_size: int
    checked_leaves: int = 0
    checkpoints_checked: int = 0
    first_bad_leaf: BadLeaf | None = None
    problems: list[str] = field(default_factory=list)

    @property
    def valid(self) -> bool:
        return not self.problems

    def bad_leaf(self, bad: BadLeaf) -> None:
        who = f"leaf {bad.leaf_index}" + (f" ({bad.record_id})" if bad.record_id else "")
        self.problems.append(f"{who}: {bad.reason}")
        if self.first_bad_leaf is None or bad.leaf_index < self.first_bad_leaf.leaf_index:
            self.first_bad_leaf = bad

    def to_json(self) -> dict[str, Any]:
        bad = self.first_bad_leaf
        return {
            "valid": self.valid,
            "tree_size": self.tree_size,
            "checked_leaves": self.checked_leaves,
            "checkpoints_checked": self.checkpoints_checked,
            "first_bad_leaf": None if bad is None else asdict(bad),
            "problems": list(self.problems),
        }


def _signed_roots(
    client: LedgerReader, trusted: TrustedCheckpoint, report: AuditReport
) -> dict[int, bytes]:
    """Tree size → root of every checkpoint whose signature verifies with the trusted key."""
    roots = {trusted.size: trusted.root_hash}
    for cp in client.list_checkpoints():
        try:
            size, root = open_checkpoint(cp.note, trusted.verifier, trusted.origin)
        except TrustError as e:
            report.problems.append(f"checkpoint of size {cp.tree_size}: {e}")
            continue
        if roots.setdefault(size, root) != root:
            report.problems.append(
                f"two signed checkpoints of size {size} have different roots: the log has forked"
            )
    return roots


class _Auditor:
    """The state of one pass over the leaves, in leaf order."""

    def __init__(self, client: LedgerReader, trusted: TrustedCheckpoint) -> None:
        self.client = client
        self.report = AuditReport(tree_size=trusted.size)
        self.roots = _signed_roots(client, trusted, self.report)
        self.sizes = sorted(self.roots, reverse=True)  # popped smallest first
        self.tree: TreeBuilder | None = TreeBuilder()
        self.window = bytearray()  # recomputed hashes since the last checkpoint that matched
        self.window_start = 0
        self.next_size = -1
        self.checkpoint_reached()  # a checkpoint of size 0, if any

    def checkpoint_reached(self) -> None:
        """Compare with every signed checkpoint of the current tree size."""
        assert self.tree is not None
        size = self.tree.size
        while self.sizes and self.sizes[-1] == size:
            self.sizes.pop()
            self.report.checkpoints_checked += 1
            if self.tree.root() == self.roots[size]:
                self.window.clear()
                self.window_start = size
            else:
                self.root_mismatch(size)
        self.next_size = self.sizes[-1] if self.sizes else -1

    def root_mismatch(self, size: int) -> None:
        self.report.problems.append(
            f"the tree rebuilt from the records does not match the signed checkpoint of size {size}"
        )
        if self.report.first_bad_leaf is None:  # else that leaf explains every later root
            found = localize(
                self.client, self.window_start, bytes(self.window), size, self.roots[size]
            )
            if found is not None:
                self.report.bad_leaf(found)

    def gap(self, expected: int, index: int, record_id: str) -> None:
        if index > expected:
            reason = f"missing: the ledger returned leaf {index} where leaf {expected} belongs"
            self.report.bad_leaf(BadLeaf(expected, None, reason))
        else:
            reason = f"out of order: leaf index {index} came where leaf {expected} belongs"
            self.report.bad_leaf(BadLeaf(expected, record_id, reason))
        # Past a gap no leaf's position is known, so no root can be compared.
        self.tree = None

    def finish(self, count: int) -> AuditReport:
        self.report.checked_leaves = count
        if self.tree is not None and self.next_size > count:
            reason = (
                f"missing: a signed checkpoint covers {self.next_size} leaves, "
                f"but the ledger returned only {count}"
            )
            self.report.bad_leaf(BadLeaf(count, None, reason))
        return self.report


def audit_ledger(
    client: LedgerReader,
    trusted: TrustedCheckpoint,
    *,
    on_progress: Callable[[int], None] | None = None,
) -> AuditReport:
    """Re-derive every leaf and compare the rebuilt tree with every signed checkpoint."""
    audit = _Auditor(client, trusted)
    expected = 0
    # The loop body runs once per leaf: keep it to a hash, an append and compares.
    leaf_bytes, hash_leaf = leaf_bytes_from_proto, leaf_hash
    for page in client.query_pages(page_size=PAGE_SIZE):
        for rec in page:
            if rec.leaf_index != expected:
                if audit.tree is not None:
                    audit.gap(expected, rec.leaf_index, rec.record_id)
                expected = rec.leaf_index
            h = hash_leaf(leaf_bytes(rec))
            if h != rec.leaf_hash:
                reason = f"its content hashes to {h.hex()}, not to its stored leaf hash"
                audit.report.bad_leaf(BadLeaf(expected, rec.record_id, reason))
            expected += 1
            tree = audit.tree
            if tree is not None:
                tree.append(h)
                audit.window += h
                if expected == audit.next_size:
                    audit.checkpoint_reached()
        if on_progress is not None:
            on_progress(expected)
    return audit.finish(expected)
