"""Ships sampled audit records to the ledger without ever holding up inference.

    offer() → bounded queue → shipper thread → AppendRecords (on a network worker)
                                    └→ spool (SQLite) when the ledger fails or falls behind → replay

`offer` is a non-blocking put. The shipper thread owns everything slow: it
batches the queue and hands each batch to one network worker; while the worker
waits on the ledger, the thread keeps the queue from filling by moving the
backlog into the spool. A record is in one place at a time (the queue, a batch
in flight, the spool) and leaves the spool only once the ledger acknowledged
it; a replay of something the ledger already has is a no-op there (idempotent
per record_id). So every offered record lands exactly once, or is dropped and
counted:

- queue full (the spool's disk cannot keep up either): counted in memory, then
  in the spool on the thread's next turn;
- spool cap reached: counted in the spool, in the transaction that refused it;
- refused by the ledger (INVALID_ARGUMENT, ALREADY_EXISTS, too large): that
  record alone, found by bisecting the batch, with the ledger's reason.

Once the ledger is back and the spool has drained, one GAP record per (reason,
model) reports the drops. A SIGKILL loses what is only in memory: the queue (at
most queue_max records), the batch in flight and drops not yet persisted. Strict
mode (`strict_offer`) closes that window for the decisions that need it.

Every record is counted exactly once per step, per model and version
(`mrm.proxy.metrics.Tally`): sampled when offered, then shipped, spooled (and
later shipped), dropped or strict_failed. Settled (queue and spool empty),
shipped + dropped + strict_failed = sampled, and dropped equals the sum of
the GAP records' counts. `snapshot()` is what GetProxyStatus and the
OpenTelemetry metrics report. The counts are per process: a restarted proxy
starts at zero and counts what it replays from the spool as shipped.
"""

from __future__ import annotations

import logging
import queue
import sqlite3
import threading
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Protocol

import grpc

from mrm.client.credentials import ClientAuth
from mrm.client.errors import AlreadyExists, InvalidArgument, MrmRpcError
from mrm.client.ledger import LedgerClient
from mrm.proxy.metrics import Snapshot, Tally
from mrm.proxy.spool import Spool
from mrm.v1.ledger_pb2 import Record

log = logging.getLogger(__name__)

QUEUE_FULL = "the proxy's in-memory queue was full (the spool could not keep up)"
SPOOL_FULL = "the proxy's spool was full while the ledger was unreachable"


class AuditUnavailable(Exception):
    """A strict record could be neither appended nor spooled: fail the decision."""


class Sample(Protocol):
    """A sampled decision whose record is built in the shipper's thread, off the
    request path (the proxy's PendingPrediction)."""

    @property
    def model_name(self) -> str: ...

    @property
    def model_version(self) -> str: ...

    def record(self) -> Record: ...


def _one_by_one(samples: list[Sample]) -> list[Record | Exception]:
    out: list[Record | Exception] = []
    for sample in samples:
        try:
            out.append(sample.record())
        except Exception as exc:
            out.append(exc)
    return out


@dataclass
class Delivery:
    acked: list[str] = field(default_factory=list)
    refused: list[tuple[Record, str]] = field(default_factory=list)
    failed: list[Record] = field(default_factory=list)  # not delivered: try again later
    error: str = ""  # why the ledger could not be reached, when `failed`


def _refusal(exc: MrmRpcError) -> bool:
    """Errors about the batch's content, which retrying can never fix."""
    return isinstance(exc, InvalidArgument | AlreadyExists) or (
        exc.code == grpc.StatusCode.RESOURCE_EXHAUSTED  # the batch exceeds the message limit
    )


def deliver(client: LedgerClient, records: list[Record]) -> Delivery:
    """Append records; a refused batch is bisected so only the bad records stay out."""
    out, parts = Delivery(), [records]
    while parts:
        part = parts.pop()
        if out.failed:  # the ledger is away: stop knocking
            out.failed.extend(part)
            continue
        try:
            client.append(part)
            out.acked.extend(r.record_id for r in part)
        except MrmRpcError as exc:
            if not _refusal(exc):
                out.failed.extend(part)
                out.error = f"{exc.code.name}: {exc.summary()}"
            elif len(part) == 1:
                out.refused.append((part[0], f"the ledger refused the record: {exc.summary()}"))
            else:
                parts += [part[len(part) // 2 :], part[: len(part) // 2]]
        except Exception as exc:  # a transport failure outside gRPC's statuses
            out.failed.extend(part)
            out.error = f"{type(exc).__name__}: {exc}"
    return out


class _Backoff:
    """When to knock on the ledger again: exponential from 0.1 s, at most 5 s."""

    def __init__(self) -> None:
        self.delay, self.retry_at = 0.1, 0.0

    def down(self) -> bool:
        return time.monotonic() < self.retry_at

    def failed(self) -> None:
        self.retry_at = time.monotonic() + self.delay
        self.delay = min(self.delay * 2, 5.0)

    def ok(self) -> None:
        self.delay, self.retry_at = 0.1, 0.0


@dataclass
class _Slot:
    record: Record
    done: bool = False
    error: str = ""


class Shipper:
    """Delivers records to the ledger from a background thread; see the module docstring.

    The spool is the shipper's from construction to close(); whatever it holds
    (a previous process's, say) is replayed first thing.
    """

    def __init__(
        self,
        ledger_target: str,
        spool: Spool,
        *,
        queue_max: int = 10_000,
        batch: int = 512,
        flush_interval: float = 0.1,
        rpc_timeout: float = 10.0,
        build: Callable[[list[Sample]], list[Record | Exception]] | None = None,
        auth: ClientAuth | None = None,
    ) -> None:
        """Records go out in batches of up to `batch`, at least every `flush_interval`
        seconds; larger, rarer batches cost the ledger and PostgreSQL less CPU per
        record (benchmarks/results/README.md). `build` makes a batch's records from
        its samples at once (the proxy's `prediction_records`); without it each
        sample's `record()` is called.
        `auth` is the proxy's credential for the ledger (role proxy)."""
        self.spool, self._target, self._rpc_timeout = spool, ledger_target, rpc_timeout
        self._batch, self._flush = batch, flush_interval
        self._build = build or _one_by_one
        self._queue: queue.Queue[Record | Sample] = queue.Queue(maxsize=queue_max)
        # Past this depth the thread spools the backlog rather than let the queue fill
        # while the ledger is slow to answer.
        self._high_water = max(1, queue_max // 2)
        self._backoff = _Backoff()
        self._tally = Tally()  # exact counts, per model and version
        self._ledger_seen: tuple[str, datetime | None, datetime | None] = ("", None, None)
        self._lock = threading.Lock()  # guards the counter below
        self._unpersisted: Counter[tuple[str, str]] = Counter()  # (reason, model) → drops
        self._replayed: Counter[tuple[str, str]] = Counter()  # (model, version) → out of spool
        self._auth = ClientAuth.from_env() if auth is None else auth
        self._client = LedgerClient(ledger_target, timeout=rpc_timeout, auth=self._auth)
        self._net = ThreadPoolExecutor(1, thread_name_prefix="mrm-ledger-append")
        self._strict_cv = threading.Condition()
        self._strict_waiting: list[_Slot] = []
        self._strict_leader = False
        self._strict_client = LedgerClient(ledger_target, auth=self._auth)
        self._gaps_due = True  # a previous process may have left some
        self._replay_turn = False
        self._warned: set[str] = set()  # what was logged during the current outage
        self._closed = False
        self._deadline = float("inf")
        self._stop = threading.Event()
        self._wake = threading.Event()  # a job finished, or the queue passed its high water
        self._thread = threading.Thread(target=self._run, name="mrm-shipper", daemon=True)
        self._thread.start()

    def offer(self, record: Record | Sample) -> bool:
        """Hand a sampled record over; never blocks, never raises. False: it was dropped.
        A Sample's record is built in the shipper's thread."""
        self._tally.add("sampled", record.model_name, record.model_version)
        if not self._closed:
            try:
                self._queue.put_nowait(record)
            except queue.Full:
                pass
            else:
                if self._queue.qsize() >= self._high_water:
                    self._wake.set()  # the thread spools the backlog now, not at its next poll
                return True
        self._drop_sample(record.model_name, record.model_version, QUEUE_FULL)
        return False

    def strict_offer(self, record: Record, timeout: float = 0.5) -> None:
        """Return only once the record is durable: appended, if the ledger answers within
        `timeout` seconds, else spooled (fsync'd). Concurrent callers share one
        AppendRecords call and one spool transaction (group commit; the leader's
        timeout applies). Blocking: from asyncio, call it through asyncio.to_thread.

        Raises AuditUnavailable when the record could be neither appended nor spooled
        (refused by the ledger, or the ledger away and the spool full).
        """
        self._tally.add("sampled", record.model_name, record.model_version)
        slot = _Slot(record)
        with self._strict_cv:
            self._strict_waiting.append(slot)
            while not slot.done:
                if self._strict_leader:  # a commit is running: the next one takes us
                    self._strict_cv.wait()
                    continue
                self._strict_leader = True
                group, self._strict_waiting = self._strict_waiting, []
                self._strict_cv.release()
                try:
                    self._commit(group, timeout)
                finally:
                    self._strict_cv.acquire()
                    self._strict_leader = False
                    self._strict_cv.notify_all()
        if slot.error:
            self._tally.add("strict_failed", record.model_name, record.model_version)
            raise AuditUnavailable(slot.error)

    def counters(self) -> dict[str, int]:
        """The totals and the depths, flat (see `snapshot` for the rest)."""
        snap = self.snapshot()
        return asdict(snap.totals) | {
            "queue_depth": snap.queue_depth,
            "spool_depth": snap.spool_depth,
        }

    def snapshot(self) -> Snapshot:
        """Counters per model and in total, depths, and what the ledger last said."""
        totals, by_model = self._tally.counts()
        error, error_at, ok_at = self._ledger_seen
        return Snapshot(
            totals=totals,
            by_model=by_model,
            queue_depth=self._queue.qsize(),
            queue_capacity=self._queue.maxsize,
            spool_depth=self.spool.count(),
            spool_capacity=self.spool.max_records,
            gap_records_written=self._tally.gap_records_written,
            ledger_failures=self._tally.ledger_failures,
            last_ledger_error=error,
            last_ledger_error_at=error_at,
            last_ledger_success_at=ok_at,
        )

    @property
    def target(self) -> str:
        """The ledger address records are shipped to."""
        return self._target

    def close(self, timeout: float = 5.0) -> None:
        """Ship what the ledger takes within `timeout` seconds, spool the rest, stop.
        Records offered after this are dropped (counted, but in no GAP record)."""
        if self._closed:
            return
        self._closed, self._deadline = True, time.monotonic() + timeout
        self._stop.set()
        self._thread.join(timeout + self._flush + 10)
        self._net.shutdown(wait=False, cancel_futures=True)
        self._client.close()
        self._strict_client.close()
        if not self._thread.is_alive():
            self.spool.close()

    def replayed(self) -> dict[tuple[str, str], int]:
        """Records that left the spool (shipped or refused on a replay), per model and
        version: counted once when spooled and again when they left, so what this
        shipper still holds in memory is sampled - (shipped + spooled + dropped +
        strict_failed - replayed)."""
        with self._lock:
            return dict(self._replayed)

    def count_dropped(self, model: str, version: str, reason: str, n: int) -> None:
        """Decisions sampled and dropped before they reached this shipper (by the serving
        process that feeds it): counted, and reported in a GAP record like its own drops."""
        self._tally.add("sampled", model, version, n)
        self._tally.add("dropped", model, version, n)
        with self._lock:
            self._unpersisted[reason, model] += n

    def _drop_sample(self, model: str, version: str, reason: str) -> None:
        self._tally.add("dropped", model, version)
        with self._lock:
            self._unpersisted[reason, model] += 1

    def _drop_later(self, records: list[Record], reason: str) -> None:
        # Counting in the spool would mean disk I/O here; the thread persists it.
        self._tally.add_records("dropped", records)
        with self._lock:
            for rec in records:
                self._unpersisted[reason, rec.model_name] += 1

    def _ledger_answered(self, error: str = "") -> None:
        """Remember the ledger's last answer (one tuple: read without a lock)."""
        last_error, error_at, ok_at = self._ledger_seen
        now = datetime.now(UTC)
        if error:
            self._tally.add_own("ledger_failures")
            self._ledger_seen = (error, now, ok_at)
        else:
            self._ledger_seen = (last_error, error_at, now)

    def _persist_drops(self) -> None:
        with self._lock:
            pending, self._unpersisted = self._unpersisted, Counter()
        for (reason, model), n in pending.items():
            try:
                self.spool.add_dropped(n, reason, model)
                self._gaps_due = True
            except sqlite3.Error:
                with self._lock:
                    self._unpersisted[reason, model] += n

    def _late(self) -> bool:
        return time.monotonic() >= self._deadline

    def _run(self) -> None:
        while not (self._stop.is_set() and (self._queue.empty() or self._late())):
            try:
                self._turn()
            except Exception:  # a bug or a failing disk must not end delivery for good
                log.exception("audit shipper: turn failed; retrying")
                time.sleep(1.0)
        self._spool_live(self._take(self._queue.maxsize, 0.0))
        self._persist_drops()

    def _take(self, limit: int, wait: float, linger: float = 0.0) -> list[Record]:
        """Up to `limit` records: waits up to `wait` for the first, then `linger` for more
        to gather (one wake-up per batch rather than one append per record)."""
        items: list[Record | Sample] = []
        try:
            items.append(self._queue.get(timeout=wait) if wait > 0 else self._queue.get_nowait())
            # Linger in short steps: stop early once a batch (or the high water) is there.
            for _ in range(5 if linger > 0 else 0):
                depth = self._queue.qsize()
                if depth >= limit - 1 or depth >= self._high_water or self._stop.is_set():
                    break
                self._stop.wait(linger / 5)
            while len(items) < limit:
                items.append(self._queue.get_nowait())
        except queue.Empty:
            pass
        samples = [item for item in items if not isinstance(item, Record)]
        try:  # built here, in the shipper's thread, not on the request path
            built = self._build(samples) if samples else []
            if len(built) != len(samples):
                raise RuntimeError(f"{len(built)} results for {len(samples)} samples")
        except Exception:  # a bug in the batch builder must not lose the batch
            log.exception("audit shipper: batch build failed; building one at a time")
            built = _one_by_one(samples)
        made = iter(built)
        out: list[Record] = []
        for item in items:
            if isinstance(item, Record):
                out.append(item)
                continue
            record = next(made)
            if isinstance(record, Exception):  # e.g. a value JSON cannot carry exactly
                log.error("audit shipper: cannot build a %s record: %s", item.model_name, record)
                why = f"the proxy could not build the record: {record}"
                self._drop_sample(item.model_name, item.model_version, why)
            else:
                out.append(record)
        return out

    def _turn(self) -> None:
        self._persist_drops()
        if self._backoff.down():  # don't knock: spool what comes until it is time to retry
            wait = min(self._flush, self._backoff.retry_at - time.monotonic())
            self._spool_live(self._take(self._queue.maxsize, wait))
            return
        closing, spooled = self._stop.is_set(), self.spool.count()
        if spooled and not closing and (self._replay_turn or self._queue.empty()):
            kind, records = "replay", self.spool.peek(self._batch)
        elif not spooled and not closing and self._gaps_due:
            kind, records = "gap", [g.record() for g in self.spool.take_gaps()]
            self._gaps_due = bool(records)
        else:
            kind, records = "live", self._take(self._batch, self._flush, linger=self._flush)
        if records:
            self._replay_turn = kind == "live"  # alternate, so live traffic can't starve a replay
            self._run_job(kind, records)

    def _run_job(self, kind: str, records: list[Record]) -> None:
        future: Future[Delivery] = self._net.submit(deliver, self._client, records)
        future.add_done_callback(lambda _: self._wake.set())
        while not future.done():
            self._wake.wait(self._flush)
            self._wake.clear()
            if self._queue.qsize() >= self._high_water:
                self._spool_live(self._take(self._queue.maxsize, 0.0))
            if self._late():
                if kind == "live":  # the ledger may still take them: a replay is harmless
                    self._spool_live(records)
                return
        self._settle(kind, records, future.result())

    def _settle(self, kind: str, records: list[Record], d: Delivery) -> None:
        self._ledger_answered(d.error if d.failed else "")
        if d.failed:
            self._warn_once("outage", "ledger %s unavailable; spooling", self._target)
            self._backoff.failed()
            # A fresh channel: gRPC's own reconnect backoff grows to 2 minutes.
            self._client.close()
            self._client = LedgerClient(self._target, timeout=self._rpc_timeout, auth=self._auth)
        else:
            if self._warned:
                log.info("audit shipper: ledger %s is back", self._target)
                self._warned.clear()
            self._backoff.ok()
        if kind == "gap":
            for rec, why in d.refused:  # retrying can't help; don't let it block the rest
                log.error("audit shipper: GAP record %s refused: %s", rec.body_json, why)
            self.spool.clear_gaps([*d.acked, *(r.record_id for r, _ in d.refused)])
            self._tally.add_own("gap_records_written", len(d.acked))
            self._gaps_due = self.spool.has_gaps()
            return
        acked = set(d.acked)
        self._tally.add_records("shipped", (r for r in records if r.record_id in acked))
        if kind == "replay":
            self.spool.remove(d.acked)
            left = [r for r in records if r.record_id in acked] + [r for r, _ in d.refused]
            with self._lock:
                self._replayed.update((r.model_name, r.model_version) for r in left)
        else:
            self._spool_live(d.failed)
        by_reason: dict[str, list[Record]] = {}
        for rec, why in d.refused:
            by_reason.setdefault(why, []).append(rec)
        for why, refused in by_reason.items():
            log.warning("audit shipper: dropping %d record(s): %s", len(refused), why)
            self.spool.drop(refused, why)
            self._tally.add_records("dropped", refused)
            self._gaps_due = True

    def _spool_live(self, records: list[Record]) -> None:
        if not records:
            return
        try:
            stored = self.spool.put_many(records, overflow_reason=SPOOL_FULL)
        except sqlite3.Error as exc:
            log.error("audit shipper: cannot write the spool: %s", exc)
            self._drop_later(records, f"the proxy's spool could not be written: {exc}")
            return
        self._tally.add_records("spooled", records[:stored])
        if stored < len(records):
            self._warn_once("full", "spool full (%d records); dropping", self.spool.max_records)
            self._tally.add_records("dropped", records[stored:])
            self._gaps_due = True

    def _warn_once(self, key: str, message: str, *args: object) -> None:
        """Once per outage, not once per batch."""
        if key not in self._warned:
            self._warned.add(key)
            log.warning("audit shipper: " + message, *args)

    def _commit(self, group: list[_Slot], budget: float) -> None:
        """One group commit of strict records: one append, then one spool transaction."""
        pending, ok, why = [s.record for s in group], set[str](), dict[str, str]()
        try:
            if not self._backoff.down():
                self._strict_client.timeout = budget  # only the leader uses this client
                d = deliver(self._strict_client, pending)
                self._ledger_answered(d.error if d.failed else "")
                acked = set(d.acked)
                self._tally.add_records("shipped", (r for r in pending if r.record_id in acked))
                ok.update(acked)
                why = {rec.record_id: reason for rec, reason in d.refused}
                if pending := d.failed:
                    self._backoff.failed()
                    self._strict_client.close()
                    self._strict_client = LedgerClient(self._target, auth=self._auth)
            if pending:
                stored = self.spool.put_many(pending)
                self._tally.add_records("spooled", pending[:stored])
                ok.update(r.record_id for r in pending[:stored])
        except Exception:
            log.exception("audit shipper: strict commit failed")
        for slot in group:
            rid = slot.record.record_id
            unreachable = "the ledger is unreachable and the spool is full or unwritable"
            slot.error = "" if rid in ok else why.get(rid, unreachable)
            slot.done = True
