"""Reads of the ledger's tables, all on one connection: one consistent view per request.

Part of the store layer: SQL lives here, in sql.py, postgres.py and sqlite.py.

A proof needs a record, a tree size, a checkpoint and O(log n) subtree hashes;
reading them through one `LedgerReader` costs one connection checkout and one
round trip per query instead of one checkout per fact.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

import sqlalchemy as sa

from mrm.core.errors import IntegrityError
from mrm.ledger import merkle
from mrm.ledger.records import RecordFilter, SignedCheckpoint, StoredRecord
from mrm.ledger.tables import checkpoints, leaves

_HASH = 32
_SEAL_CHUNK = 10_000

# The columns of a StoredRecord, in its field order, so a row unpacks into one.
RECORD_COLUMNS: list[sa.ColumnElement[Any]] = [
    leaves.c.leaf_index,
    leaves.c.record_id,
    leaves.c.kind,
    *(
        sa.func.coalesce(c, "").label(c.name)
        for c in (
            leaves.c.model_name,
            leaves.c.model_version,
            leaves.c.subject,
            leaves.c.trace_id,
            leaves.c.span_id,
        )
    ),
    leaves.c.body,
    leaves.c.recorded_at_us,
    leaves.c.actor,
    leaves.c.leaf_hash,
]


def checkpoint_of(row: Any) -> SignedCheckpoint:
    return SignedCheckpoint(
        tree_size=row.tree_size,
        root_hash=bytes(row.root_hash),
        note=row.note,
        signed_at_us=row.signed_at_us,
    )


class LedgerReader:
    """Queries over one open connection (and, inside a transaction, one snapshot)."""

    def __init__(self, conn: sa.Connection) -> None:
        self.conn = conn

    def size(self) -> int:
        top = self.conn.execute(sa.select(sa.func.max(leaves.c.leaf_index))).scalar_one()
        return 0 if top is None else int(top) + 1

    def get(self, record_id: Any) -> StoredRecord | None:
        return self._one(leaves.c.record_id == record_id)

    def get_by_index(self, leaf_index: int) -> StoredRecord | None:
        return self._one(leaves.c.leaf_index == leaf_index)

    def _one(self, where: sa.ColumnElement[bool]) -> StoredRecord | None:
        row = self.conn.execute(sa.select(*RECORD_COLUMNS).where(where)).first()
        return StoredRecord(*row) if row else None

    def read_nodes(self, nodes: Iterable[merkle.NodeId]) -> dict[merkle.NodeId, bytes]:
        """Stored perfect-subtree hashes, in one query."""
        wanted = list(nodes)
        if not wanted:
            return {}
        rows = {merkle.row_of(n) for n in wanted}
        found = {
            r.leaf_index: (bytes(r.leaf_hash), bytes(r.subtree_hashes))
            for r in self.conn.execute(
                sa.select(leaves.c.leaf_index, leaves.c.leaf_hash, leaves.c.subtree_hashes).where(
                    leaves.c.leaf_index.in_(rows)
                )
            )
        }
        out: dict[merkle.NodeId, bytes] = {}
        for node in wanted:
            level, _ = node
            row = merkle.row_of(node)
            if row not in found:
                raise IntegrityError(
                    f"leaf {row} is missing from storage; the tree cannot be read", leaf_index=row
                )
            leaf_h, subtrees = found[row]
            h = leaf_h if level == 0 else subtrees[(level - 1) * _HASH : level * _HASH]
            if len(h) != _HASH:
                raise IntegrityError(
                    f"leaf {row} lacks its level-{level} subtree hash", leaf_index=row
                )
            out[node] = h
        return out

    def query(
        self, flt: RecordFilter, *, after: int | None, limit: int, newest_first: bool
    ) -> list[StoredRecord]:
        """Records matching the filter, paged by leaf index (exclusive cursor `after`)."""
        q = sa.select(*RECORD_COLUMNS)
        for column, value in (
            (leaves.c.kind, flt.kind),
            (leaves.c.model_name, flt.model_name),
            (leaves.c.model_version, flt.model_version),
            (leaves.c.subject, flt.subject),
            (leaves.c.trace_id, flt.trace_id),
        ):
            if value:
                q = q.where(column == value)
        if flt.start_us is not None:
            q = q.where(leaves.c.recorded_at_us >= flt.start_us)
        if flt.end_us is not None:
            q = q.where(leaves.c.recorded_at_us < flt.end_us)
        if flt.start_leaf:
            q = q.where(leaves.c.leaf_index >= flt.start_leaf)
        if after is not None:
            q = q.where(
                leaves.c.leaf_index < after if newest_first else leaves.c.leaf_index > after
            )
        order = leaves.c.leaf_index.desc() if newest_first else leaves.c.leaf_index.asc()
        return [StoredRecord(*r) for r in self.conn.execute(q.order_by(order).limit(limit))]

    def leaf_seals(self, start: int, end: int) -> Iterator[tuple[int, bytes, bytes, bytes]]:
        """(leaf_index, leaf_hash, subtree_hashes, seal) of leaves [start, end), in order."""
        for lo in range(start, end, _SEAL_CHUNK):
            rows = self.conn.execute(
                sa.select(
                    leaves.c.leaf_index, leaves.c.leaf_hash, leaves.c.subtree_hashes, leaves.c.seal
                )
                .where(leaves.c.leaf_index >= lo, leaves.c.leaf_index < min(end, lo + _SEAL_CHUNK))
                .order_by(leaves.c.leaf_index)
            )
            for index, stored_hash, subtrees, mark in rows:
                yield index, bytes(stored_hash), bytes(subtrees), bytes(mark)

    def record_id_at(self, leaf_index: int) -> str:
        found = self.get_by_index(leaf_index)
        return str(found.record_id) if found else ""

    def latest_checkpoint(self) -> SignedCheckpoint | None:
        row = self.conn.execute(
            sa.select(checkpoints).order_by(checkpoints.c.tree_size.desc()).limit(1)
        ).first()
        return checkpoint_of(row) if row else None

    def checkpoint_at(self, tree_size: int) -> SignedCheckpoint | None:
        row = self.conn.execute(
            sa.select(checkpoints).where(checkpoints.c.tree_size == tree_size)
        ).first()
        return checkpoint_of(row) if row else None

    def list_checkpoints(self, *, after: int | None, limit: int) -> list[SignedCheckpoint]:
        q = sa.select(checkpoints).order_by(checkpoints.c.tree_size).limit(limit)
        if after is not None:
            q = q.where(checkpoints.c.tree_size > after)
        return [checkpoint_of(r) for r in self.conn.execute(q)]


class SigningTxn(LedgerReader):
    """The signer's transaction: reads under the signing lock, and the one write it makes."""

    def add(self, cp: SignedCheckpoint) -> None:
        self.conn.execute(
            checkpoints.insert().values(
                tree_size=cp.tree_size,
                root_hash=cp.root_hash,
                note=cp.note,
                signed_at_us=cp.signed_at_us,
            )
        )
