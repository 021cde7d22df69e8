"""Group commit: one writer thread folds concurrent AppendRecords calls into one transaction.

Every append pays for a lock, a round trip to find the tree's size, a COPY and a
commit. Under load, calls queue while one transaction runs; the next
transaction takes all of them at once, so those fixed costs are shared and the
database sees fewer, larger writes. A lone call waits for nothing extra.
"""

from __future__ import annotations

import logging
import queue
import threading
from concurrent.futures import Future

import psycopg
import sqlalchemy as sa

from mrm.core.errors import MrmError, Unavailable
from mrm.ledger.batch import PendingBatch, Sequenced
from mrm.ledger.store import LedgerStore

log = logging.getLogger(__name__)

_Item = tuple[PendingBatch, "Future[Sequenced]"]


class GroupCommitWriter:
    """Serializes this process's appends; groups whatever has queued meanwhile."""

    def __init__(self, store: LedgerStore, *, max_group_records: int = 8192) -> None:
        self._store = store
        self._max = max_group_records
        self._queue: queue.SimpleQueue[_Item | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name="ledger-writer", daemon=True)
        self._thread.start()

    def submit(self, batch: PendingBatch) -> Future[Sequenced]:
        future: Future[Sequenced] = Future()
        self._queue.put((batch, future))
        return future

    def close(self) -> None:
        """Finish what is queued, then stop."""
        self._queue.put(None)
        self._thread.join()

    def _run(self) -> None:
        while True:
            first = self._queue.get()
            if first is None:
                return
            group = [first]
            total = len(first[0])
            stop = False
            while total < self._max:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is None:
                    stop = True
                    break
                group.append(item)
                total += len(item[0])
            # A caller that gave up (its RPC was cancelled) before its turn is
            # dropped; once running, a batch can no longer be cancelled, so its
            # caller always hears the outcome.
            live = [item for item in group if item[1].set_running_or_notify_cancel()]
            if live:
                self._commit(live)
            if stop:
                return

    def _commit(self, group: list[_Item]) -> None:
        try:
            outcomes = self._store.append_batches([b for b, _ in group])
        except Exception as exc:
            if len(group) > 1 and not isinstance(exc, MrmError):
                # One batch may be at fault: give each its own transaction so
                # the others still land and only its caller hears of it.
                for item in group:
                    self._commit([item])
                return
            failure = _domain_error(exc)
            for _, future in group:
                future.set_exception(failure)
            return
        for (_, future), outcome in zip(group, outcomes, strict=True):
            if isinstance(outcome, MrmError):
                future.set_exception(outcome)
            else:
                future.set_result(outcome)


def _domain_error(exc: Exception) -> Exception:
    """A database that cannot be reached is UNAVAILABLE to the caller, not INTERNAL."""
    if isinstance(exc, MrmError):
        return exc
    if isinstance(exc, sa.exc.OperationalError | psycopg.OperationalError):
        log.warning("append failed, database unavailable: %s", type(exc).__name__)
        return Unavailable("the ledger's database is unavailable; retry later")
    log.error("append failed", exc_info=exc)
    return exc
