"""Where appended batches are validated, canonicalized and hashed.

That work is most of an append's CPU, and in the server process it competes
for one interpreter lock with gRPC, the writer and the signer. With
`MRM_LEDGER_APPEND_WORKERS` > 0 it runs in that many worker processes, fed
the request's wire bytes (the server never parses an AppendRecordsRequest);
only sequencing and the COPY stay in the server. With 0 it runs in the
server's threads. Either way nothing is appended until the batch is back, so a
worker that dies loses no acknowledged record: its caller gets UNAVAILABLE and
the pool is replaced.
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import threading
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool

from mrm.core.errors import InvalidArgument, Unavailable
from mrm.ledger.batch import PendingBatch, RowEncoder
from mrm.ledger.intake import prepare_serialized
from mrm.ledger.validate import Limits

log = logging.getLogger(__name__)


def _ready() -> None:
    """A no-op task: returns once a worker has started and imported the intake."""


class IntakePool:
    """Turns AppendRecords wire bytes into PendingBatches, in workers or in threads."""

    def __init__(self, limits: Limits, workers: int, encode: RowEncoder | None = None) -> None:
        """`encode` is the store's row encoding (a module-level function: it is
        sent to the workers by name)."""
        self.limits = limits
        self.workers = workers
        self.encode = encode
        self._lock = threading.Lock()
        self._pool: ProcessPoolExecutor | None = None
        if workers:
            self._pool = self._start()

    def _start(self) -> ProcessPoolExecutor:
        # spawn, not fork: the server process runs gRPC and database threads.
        pool = ProcessPoolExecutor(self.workers, mp_context=multiprocessing.get_context("spawn"))
        for future in [pool.submit(_ready) for _ in range(self.workers)]:
            future.result()
        return pool

    async def prepare(self, data: bytes, actor: str, recorded_at_us: int) -> PendingBatch:
        """The stamped, hashed batch; InvalidArgument if the request is not valid."""
        pool = self._pool
        args = (data, self.limits, actor, recorded_at_us, self.encode)
        if pool is None:
            out = await asyncio.to_thread(prepare_serialized, *args)
        else:
            try:
                out = await asyncio.get_running_loop().run_in_executor(
                    pool, prepare_serialized, *args
                )
            except BrokenProcessPool:
                await asyncio.to_thread(self._replace, pool)
                raise Unavailable("an append worker stopped; retry the call") from None
        if isinstance(out, PendingBatch):
            out.contents.rebuilt_from(data)
            return out
        raise InvalidArgument(*out)

    def _replace(self, broken: ProcessPoolExecutor) -> None:
        with self._lock:
            if self._pool is broken:
                log.error("an append worker process died; starting a new pool")
                broken.shutdown(wait=False, cancel_futures=True)
                self._pool = self._start()

    def close(self) -> None:
        with self._lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)
