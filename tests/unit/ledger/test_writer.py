"""The group-commit writer: grouping, and isolating the batch at fault."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import cast

import pytest

from mrm.core.errors import AlreadyExists, MrmError
from mrm.ledger.batch import PendingBatch, Sequenced
from mrm.ledger.store import LedgerStore
from mrm.ledger.writer import GroupCommitWriter


class FakeStore:
    """Stands in for the database: records each transaction; a marked batch breaks one."""

    def __init__(self) -> None:
        self.transactions: list[int] = []
        self.gate = threading.Event()

    def append_batches(self, pending: Sequence[PendingBatch]) -> list[Sequenced | MrmError]:
        self.gate.wait(5)
        if any(getattr(b, "poison", False) for b in pending):
            raise ValueError("a batch the database refuses")
        self.transactions.append(len(pending))
        return [
            Sequenced(b, [], {}) if not getattr(b, "conflict", False) else AlreadyExists("x")
            for b in pending
        ]


class _Marked(PendingBatch):
    """An empty batch the fake store treats specially."""

    __slots__ = ("conflict", "poison")

    def __init__(self, *, poison: bool = False, conflict: bool = False) -> None:
        empty: list[str] = []
        columns = (empty,) * 8
        batch = PendingBatch.build(columns, [], "actor", 0, unique=True)
        super().__init__(*(getattr(batch, f) for f in PendingBatch.__dataclass_fields__))
        self.poison = poison
        self.conflict = conflict


def batch(**marks: bool) -> PendingBatch:
    return _Marked(**marks)


def test_queued_calls_share_one_transaction_and_a_bad_one_is_isolated() -> None:
    store = FakeStore()
    writer = GroupCommitWriter(cast(LedgerStore, store))
    first = writer.submit(batch())  # the writer blocks on this one...
    queued = [
        writer.submit(batch()),
        writer.submit(batch(poison=True)),
        writer.submit(batch(conflict=True)),
    ]
    store.gate.set()  # ...while three more queue up
    assert first.result(5).leaf_indexes == []
    assert queued[0].result(5).leaf_indexes == []
    with pytest.raises(ValueError, match="refuses"):
        queued[1].result(5)
    with pytest.raises(AlreadyExists):
        queued[2].result(5)
    # 1 alone, then the group of 3 failed and was retried one by one.
    assert store.transactions == [1, 1, 1]
    writer.close()


def test_a_cancelled_caller_does_not_stop_the_writer() -> None:
    store = FakeStore()
    writer = GroupCommitWriter(cast(LedgerStore, store))
    blocker = writer.submit(batch())
    gone = writer.submit(batch())
    assert gone.cancel()  # still queued: cancellable, and then never appended
    after = writer.submit(batch())
    store.gate.set()
    assert blocker.result(5).leaf_indexes == []
    assert after.result(5).leaf_indexes == []
    assert sum(store.transactions) == 2  # the cancelled batch was never appended
    assert gone.cancelled()
    writer.close()
