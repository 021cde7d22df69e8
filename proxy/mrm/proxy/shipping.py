"""The audit shipper in a process of its own, fed through a pipe (MRM_PROXY_SHIPPER=process).

    serving process                          shipper process (python -m mrm.proxy.shipping)
    offer() → buffer → feeder ══ feed pipe ══▶ Shipper (mrm.proxy.shipper): build, append, spool
    strict_offer() ══════════ control pipe ══▶ Shipper.strict_offer (group commit)
    snapshot(): last report ◀═ answer pipe ══ its counts every 0.1 s; strict answers

Building a PREDICTION record (the subject's keyed hash, canonical JSON), the
gRPC append and the spool's SQLite writes then run in the child, at a lower CPU
priority (MRM_PROXY_SHIPPER_NICE), off the proxy's interpreter lock; the serving
process keeps a list append per decision and, in a feeder thread, a pickle of
each few milliseconds' decisions (fields and arrays, about 5 us each). The pipes
carry only what this process wrote to its own child (never a file, never the
network). Measured on 2 cores shared with the load, this gained neither
throughput nor p99 over the thread, and a strict decision's round trip through
the pipe and a lower-priority process cost 0.8 ms (benchmarks/results/README.md),
so it is an option for hosts with cores to spare, not the default.

What is lost and what is counted is what `mrm.proxy.shipper` says, with one
more place a record can be: in transit (the serving process's buffer and the
pipe). The buffer is bounded by MRM_PROXY_QUEUE_MAX: past it a decision is
dropped and counted, and the count travels to the child, which persists it for
a GAP record like any other drop. When the serving process ends, even by
SIGKILL, the child reads the pipe to its end, then ships or spools everything it
holds before it exits. A child that dies is started again (its successor
replays the spool); a SIGKILL of the child loses what only it held in memory,
as a SIGKILL of a one-process proxy does, and nothing spooled or acknowledged
by the ledger: what was handed to it and not settled by its last report (0.1 s
old at most) is counted dropped and written in a GAP record by its successor,
an upper bound, since some of it may have reached the ledger just before.
Strict decisions are answered by the child after its group commit: durable, or
refused.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import logging
import os
import pickle
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from mrm.client.credentials import ClientAuth
from mrm.proxy.audit import PendingPrediction, Stamper, prediction_records
from mrm.proxy.metrics import Counts, Snapshot
from mrm.proxy.shipper import QUEUE_FULL, AuditUnavailable, Shipper
from mrm.proxy.spool import Spool
from mrm.v1.ledger_pb2 import Record

log = logging.getLogger(__name__)

_PIPE_BYTES = 1 << 20  # F_SETPIPE_SZ: room for a few thousand decisions in transit
_F_SETPIPE_SZ = 1031
_FEED_EVERY = 0.005  # seconds the feeder lets decisions gather before one write
_RESTART_DELAY = 0.5
_STABLE = 10.0  # seconds a child must have lived for its exit not to slow the next start
_REPORT_EVERY = 0.1  # seconds between the child's reports of its counts
SHUTDOWN = "the proxy stopped while its shipper process was not running"
SHIPPER_EXITED = (
    "the proxy's shipper process exited; what it held in memory was lost (at most this "
    "many: records settled after its last report are counted here too)"
)

# One decision as it crosses the pipe: PendingPrediction's fields but the stamper.
_Fields = tuple[str, str, str, str, str, str, str, Mapping[str, Any], Mapping[str, Any], str]


@dataclass(frozen=True)
class ShipperConfig:
    """What the child needs to run the proxy's `Shipper`; sent as the first message."""

    ledger_target: str
    spool_path: Path
    spool_max_records: int
    queue_max: int
    subject_key: bytes = field(repr=False)  # secret: never in a log line
    auth: ClientAuth
    nice: int = 10
    batch: int = 512
    flush_interval: float = 0.1
    rpc_timeout: float = 10.0
    log_level: str = "INFO"


def _fields(p: PendingPrediction) -> _Fields:
    return (
        p.record_id,
        p.model_name,
        p.model_version,
        p.onnx_sha256,
        p.subject_id,
        p.trace_id,
        p.span_id,
        p.inputs,
        p.outputs,
        p.request_id,
    )


class ShipperProcess:
    """The proxy's record sink (`mrm.proxy.core.RecordSink`) when the shipper is a child
    process; the same surface as `Shipper` for the servicers (snapshot, target, close)."""

    def __init__(self, config: ShipperConfig, *, queue_max: int | None = None) -> None:
        self.config = config
        self._queue_max = queue_max or config.queue_max
        self._lock = threading.Lock()  # the buffer, the counters below, the child
        self._buffer: list[_Fields] = []
        self._sending: list[_Fields] = []  # the feeder's batch while it writes it
        self._drops: Counter[tuple[str, str, str]] = Counter()  # (reason, model, version)
        self._handed: Counter[tuple[str, str]] = Counter()  # everything offered, per version
        self._retired: dict[tuple[str, str], Counts] = {}  # counts of children that ended
        self._retired_own = [0, 0]  # gap_records_written, ledger_failures
        self._last: Snapshot | None = None
        self._last_replayed: dict[tuple[str, str], int] = {}
        # Until a child reports: what its spool holds (a previous process's records).
        self._spool_hint = _spooled(config.spool_path)
        self._control_lock = threading.Lock()  # the control pipe (strict asks), the child
        self._pending: dict[int, Future[str]] = {}
        self._next_id = 0
        self._closed = False
        self._wake = threading.Event()
        self._child: subprocess.Popen[bytes] | None = None
        self._feed_conn: Connection | None = None  # the feeder's alone (and close's)
        self._control: Connection | None = None
        self._up = threading.Event()
        self._delay = _RESTART_DELAY
        self._started: dict[int, float] = {}
        self._start_child()
        self._feeder = threading.Thread(target=self._feed, name="mrm-shipper-feed", daemon=True)
        self._feeder.start()

    # -- the sink ---------------------------------------------------------------

    def offer(self, record: PendingPrediction) -> bool:
        """Never blocks, never raises; False when the buffer was full (counted)."""
        key = (record.model_name, record.model_version)
        with self._lock:
            self._handed[key] += 1
            if self._closed:  # as the thread's shipper: counted, in no GAP record
                self._settle_here(key, Counts(sampled=1, dropped=1))
            elif len(self._buffer) < self._queue_max:
                self._buffer.append(_fields(record))
                return True
            else:
                self._drops[QUEUE_FULL, *key] += 1
        return False

    def strict_offer(self, record: Record, timeout: float) -> None:
        """Blocks until the child made the record durable; AuditUnavailable if it could
        not (or the child did not answer within `timeout` and a little more)."""
        with self._lock:
            self._handed[record.model_name, record.model_version] += 1
        key = (record.model_name, record.model_version)
        if not self._up.wait(timeout):
            with self._lock:
                self._settle_here(key, Counts(sampled=1, strict_failed=1))
            raise AuditUnavailable("the proxy's shipper process is not running")
        ident, answer = self._ask(record.SerializeToString(), timeout)
        if ident is None:  # it never reached the child: refused here
            with self._lock:
                self._settle_here(key, Counts(sampled=1, strict_failed=1))
        try:
            error = answer.result(timeout + 5.0)
        except Exception as exc:
            # Reached a child that did not answer: that child counts it (or, if it died,
            # its loss is counted when it retires); the record may still reach the ledger.
            self._pending.pop(ident or 0, None)
            raise AuditUnavailable(f"the proxy's shipper process did not answer ({exc})") from None
        if error:
            raise AuditUnavailable(error)

    # -- state ------------------------------------------------------------------

    @property
    def target(self) -> str:
        return self.config.ledger_target

    def snapshot(self) -> Snapshot:
        """The child's last report (at most 0.1 s old), plus what is in transit: offered
        here, not yet counted there (the buffer, the pipe). Never waits for the child."""
        with self._lock:
            child = self._last
            handed = dict(self._handed)
            local_drops = sum(self._drops.values())
            retired, own = dict(self._retired), list(self._retired_own)
        by_model: dict[tuple[str, str], Counts] = {}
        for key in {*handed, *(child.by_model if child else {}), *retired}:
            seen = child.by_model.get(key, Counts()) if child else Counts()
            gone = retired.get(key, Counts())
            counted = _plus(seen, gone)
            in_transit = max(0, handed.get(key, 0) - counted.sampled)
            by_model[key] = replace(counted, sampled=counted.sampled + in_transit)
        totals = Counts()
        for counts in by_model.values():
            totals = _plus(totals, counts)
        in_transit = max(0, sum(handed.values()) - _plus_all(child, retired).sampled)
        depth = (child.queue_depth if child else 0) + max(0, in_transit - local_drops)
        return Snapshot(
            totals=totals,
            by_model=by_model,
            queue_depth=depth,
            queue_capacity=self._queue_max,
            spool_depth=child.spool_depth if child else self._spool_hint,
            spool_capacity=self.config.spool_max_records,
            gap_records_written=own[0] + (child.gap_records_written if child else 0),
            ledger_failures=own[1] + (child.ledger_failures if child else 0),
            last_ledger_error=child.last_ledger_error if child else "",
            last_ledger_error_at=child.last_ledger_error_at if child else None,
            last_ledger_success_at=child.last_ledger_success_at if child else None,
        )

    @property
    def pid(self) -> int | None:
        """The child's process id (None while it is being restarted)."""
        child = self._child
        return child.pid if child is not None and child.poll() is None else None

    def close(self, timeout: float = 5.0) -> None:
        """Hand the child what is buffered, let it ship what the ledger takes within
        `timeout` and spool the rest, and wait for it to exit."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        self._wake.set()
        self._feeder.join(timeout + 10)
        child = self._child
        if child is not None:
            with self._control_lock, contextlib.suppress(OSError):
                if self._feed_conn is not None and not self._feeder.is_alive():
                    self._feed_conn.send_bytes(pickle.dumps(("close", timeout), protocol=5))
            try:
                child.wait(timeout + 15)
            except subprocess.TimeoutExpired:
                log.error("audit shipper process %d did not stop; killing it", child.pid)
                child.kill()
                child.wait()
            self._reader.join(10)  # its last report counted, before close() returns
        with self._control_lock:
            self._close_pipes()
        self._count_abandoned()

    def _count_abandoned(self) -> None:
        """After the last child: what none took (its shipper was down at close) is dropped,
        counted here and in the spool, whose next shipper writes the GAP records."""
        with self._lock:
            left: Counter[tuple[str, str, str]] = Counter(self._drops)
            left.update((SHUTDOWN, f[1], f[2]) for f in (*self._buffer, *self._sending))
            self._buffer, self._sending, self._drops = [], [], Counter()
            for (_, model, version), n in left.items():
                self._settle_here((model, version), Counts(sampled=n, dropped=n))
        if not left:
            return
        log.error("audit shipper: %d records not handed over at close", sum(left.values()))
        try:
            spool = Spool(self.config.spool_path, self.config.spool_max_records)
        except (OSError, sqlite3.Error) as exc:
            log.error("audit shipper: cannot count them in the spool: %s", exc)
            return
        try:
            per: Counter[tuple[str, str]] = Counter()
            for (reason, model, _), n in left.items():
                per[reason, model] += n
            for (reason, model), n in per.items():
                spool.add_dropped(n, reason, model)
        finally:
            spool.close()

    # -- the child --------------------------------------------------------------

    def _start_child(self) -> None:
        """Called with the control lock held (or before anyone else can take it)."""
        feed, control, answers = os.pipe(), os.pipe(), os.pipe()  # (read end, write end)
        for fd in (feed[1], control[1], answers[1]):
            with contextlib.suppress(OSError):  # the default 64 KiB: the feeder waits sooner
                fcntl.fcntl(fd, _F_SETPIPE_SZ, _PIPE_BYTES)
        theirs = (feed[0], control[0], answers[1])
        try:
            child = subprocess.Popen(  # noqa: S603 (this interpreter, our module, three fds)
                [
                    sys.executable,
                    "-m",
                    "mrm.proxy.shipping",
                    *map(str, theirs),
                    f"--nice={self.config.nice}",
                ],
                pass_fds=theirs,
                stdin=subprocess.DEVNULL,
            )
        except BaseException:
            for fd in (*feed, *control, *answers):
                os.close(fd)
            raise
        for fd in theirs:
            os.close(fd)
        self._started[child.pid] = time.monotonic()
        self._control = Connection(control[1], readable=False)
        self._feed_conn = Connection(feed[1], readable=False)
        self._child = child
        with contextlib.suppress(OSError):  # it died at once: the reader starts another
            self._control.send_bytes(pickle.dumps(self.config, protocol=5))
        reader = threading.Thread(
            target=self._read, args=(Connection(answers[0], writable=False), child), daemon=True
        )
        reader.name = "mrm-shipper-answers"
        reader.start()
        self._reader = reader
        self._up.set()

    def _read(self, conn: Connection, child: subprocess.Popen[bytes]) -> None:
        """Answers from one child, until it ends; then its counts retire and, unless
        closing, a new child starts."""
        try:
            while True:
                kind, ident, value = _load(conn.recv_bytes())
                if kind == "report":
                    with self._lock:
                        self._last, self._last_replayed = value
                elif (future := self._pending.pop(ident, None)) is not None:
                    future.set_result(value)
        except (EOFError, OSError):
            pass
        finally:
            conn.close()
        child.wait()
        self._up.clear()
        self._retire()
        if self._closed:
            return
        log.error(
            "audit shipper process %d exited (%s); starting another, which replays the spool",
            child.pid,
            child.returncode,
        )
        # A child that dies young waits longer each time (0.5 s doubling to 30 s).
        self._delay = _RESTART_DELAY if self._lived(child) else min(self._delay * 2, 30.0)
        while True:
            time.sleep(self._delay)
            with self._control_lock:
                self._close_pipes()
                if self._closed:
                    return
                try:
                    self._start_child()
                    return
                except (OSError, ValueError) as exc:  # no fds, no memory, no interpreter
                    log.error("audit shipper process cannot start (%s); retrying", exc)
                    self._close_pipes()
            self._delay = min(self._delay * 2, 30.0)

    def _lived(self, child: subprocess.Popen[bytes]) -> bool:
        return time.monotonic() - self._started.get(child.pid, 0.0) >= _STABLE

    def _close_pipes(self) -> None:
        """Our ends of the pipes to a child that is gone (with the control lock held)."""
        for end in (self._feed_conn, self._control):
            if end is not None:
                end.close()
        self._feed_conn = self._control = None

    def _retire(self) -> None:
        """The ended child's settled counts join the retired ones; what was handed to it
        and not settled by its last report is lost, counted as dropped (and written in a
        GAP record by the next child); its open questions fail."""
        with self._lock:
            last, self._last = self._last, None
            replayed, self._last_replayed = self._last_replayed, {}
            if last is not None:
                self._spool_hint = last.spool_depth
            for key, counts in (last.by_model if last is not None else {}).items():
                settled = (
                    counts.shipped
                    + counts.spooled
                    + counts.dropped
                    + counts.strict_failed
                    - replayed.get(key, 0)
                )
                self._retired[key] = _plus(
                    self._retired.get(key, Counts()), replace(counts, sampled=settled)
                )
            if last is not None:
                self._retired_own[0] += last.gap_records_written
                self._retired_own[1] += last.ledger_failures
            waiting: Counter[tuple[str, str]] = Counter(f[1:3] for f in self._buffer)
            waiting.update(f[1:3] for f in self._sending)
            for (_, model, version), n in self._drops.items():
                waiting[model, version] += n
            for key, n in self._handed.items():
                lost = n - self._retired.get(key, Counts()).sampled - waiting[key]
                if lost > 0:
                    self._drops[SHIPPER_EXITED, *key] += lost
        for ident in list(self._pending):
            future = self._pending.pop(ident, None)
            if future is not None and not future.done():
                future.set_exception(AuditUnavailable("the proxy's shipper process exited"))

    def _settle_here(self, key: tuple[str, str], counts: Counts) -> None:
        """Decisions settled in this process, never seen by a child (lock held)."""
        self._retired[key] = _plus(self._retired.get(key, Counts()), counts)

    def _ask(self, record: bytes, timeout: float) -> tuple[int | None, Future[str]]:
        """A strict record to the child, on the control pipe (never behind the feed):
        its id, or None when it could not be sent, and the future of the answer."""
        future: Future[str] = Future()
        with self._control_lock:
            self._next_id += 1
            ident = self._next_id
            self._pending[ident] = future
            try:
                if self._control is None:
                    raise OSError("the shipper process is restarting")
                self._control.send_bytes(pickle.dumps((ident, record, timeout), protocol=5))
            except OSError as exc:
                self._pending.pop(ident, None)
                future.set_exception(AuditUnavailable(f"the proxy's shipper process: {exc}"))
                return None, future
        return ident, future

    def _send_feed(self, batch: list[_Fields], drops: Counter[tuple[str, str, str]]) -> None:
        conn = self._feed_conn
        if conn is None:
            raise OSError("the shipper process is restarting")
        conn.send_bytes(pickle.dumps(("feed", batch, dict(drops)), protocol=5))

    def _feed(self) -> None:
        """Every few milliseconds, the buffer and the drop counts to the child in one write.
        A full pipe blocks this thread, never the request path (the buffer is bounded)."""
        while True:
            closing = self._closed
            with self._lock:
                batch, self._buffer = self._buffer, []
                drops, self._drops = self._drops, Counter()
                self._sending = batch
            if batch or drops:
                try:
                    if not self._up.wait(1.0):
                        raise OSError("the shipper process is not running")
                    self._send_feed(batch, drops)
                    with self._lock:
                        self._sending = []
                except OSError:
                    with self._lock:  # back in front of what came since, for the next child
                        self._sending = []
                        self._buffer[:0] = batch
                        del self._buffer[self._queue_max :]
                        self._drops.update(drops)
                    if closing:
                        log.error("audit shipper: %d records not handed over at close", len(batch))
                        return
                    time.sleep(0.1)
                    continue
            if closing:
                return
            self._wake.wait(_FEED_EVERY)
            self._wake.clear()


def _spooled(path: Path) -> int:
    """How many records a spool holds, read without taking it over (0 if none)."""
    if not path.exists():
        return 0
    try:
        with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as db:
            return int(db.execute("SELECT count(*) FROM records").fetchone()[0])
    except sqlite3.Error:
        return 0


def _load(data: bytes) -> Any:
    """A message from the other end of our own anonymous pipe: the proxy and the child it
    started, one trust domain (never a file, a socket or anything a user hands over)."""
    return pickle.loads(data)  # noqa: S301


def _plus(a: Counts, b: Counts) -> Counts:
    return Counts(
        a.sampled + b.sampled,
        a.shipped + b.shipped,
        a.spooled + b.spooled,
        a.dropped + b.dropped,
        a.strict_failed + b.strict_failed,
    )


def _plus_all(child: Snapshot | None, retired: Mapping[tuple[str, str], Counts]) -> Counts:
    total = child.totals if child is not None else Counts()
    for counts in retired.values():
        total = _plus(total, counts)
    return total


# -- the child's side ------------------------------------------------------------


def _lower_priority(nice: int) -> None:
    if nice > 0:
        with contextlib.suppress(OSError):
            os.nice(nice)


def _own_spool(path: Path) -> None:
    """One shipper per spool: a predecessor still draining (its proxy was killed, say)
    finishes with the spool before this one replays it. Held until this process exits."""
    path.parent.mkdir(parents=True, exist_ok=True)
    lock = (path.parent / f"{path.name}.lock").open("a")
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        log.info("audit shipper: waiting for the previous shipper to release %s", path)
        fcntl.flock(lock, fcntl.LOCK_EX)
    _held.append(lock)


_held: list[Any] = []


def serve(feed: Connection, control: Connection, outbox: Connection) -> None:
    """Run the proxy's Shipper on the decisions arriving in `feed` until that pipe ends
    or says close, and on the strict records arriving in `control`; counts and
    answers go to `outbox`."""
    config: ShipperConfig = _load(control.recv_bytes())
    logging.basicConfig(
        level=config.log_level,
        format="%(asctime)s %(levelname)s %(name)s [shipper %(process)d]: %(message)s",
    )
    _own_spool(config.spool_path)
    stamper = Stamper(config.subject_key)
    shipper = Shipper(
        config.ledger_target,
        Spool(config.spool_path, config.spool_max_records),
        queue_max=config.queue_max,
        batch=config.batch,
        flush_interval=config.flush_interval,
        rpc_timeout=config.rpc_timeout,
        build=prediction_records,
        auth=config.auth,
    )
    answers = threading.Lock()
    strict = ThreadPoolExecutor(64, thread_name_prefix="mrm-strict")

    def answer(kind: str, ident: int, value: object) -> None:
        with answers, contextlib.suppress(OSError):  # OSError: nobody left to answer
            outbox.send_bytes(pickle.dumps((kind, ident, value), protocol=5))

    def report() -> None:
        """The counts, read and sent under one lock: reports arrive in the order taken."""
        with answers, contextlib.suppress(OSError):
            counts = (shipper.snapshot(), shipper.replayed())
            outbox.send_bytes(pickle.dumps(("report", 0, counts), protocol=5))

    def commit(ident: int, data: bytes, timeout: float) -> None:
        error = ""
        try:
            shipper.strict_offer(Record.FromString(data), timeout)
        except AuditUnavailable as exc:
            error = str(exc)
        report()  # counted before the caller hears back
        answer("strict", ident, error)

    def strict_records() -> None:
        while True:
            try:
                ident, data, timeout = _load(control.recv_bytes())
            except (EOFError, OSError):
                return
            strict.submit(commit, ident, data, timeout)

    stopping = threading.Event()

    def reports() -> None:
        while not stopping.wait(_REPORT_EVERY):
            report()

    report()  # what the spool holds, before the first decision
    threading.Thread(target=strict_records, name="mrm-shipper-control", daemon=True).start()
    threading.Thread(target=reports, name="mrm-shipper-report", daemon=True).start()
    timeout = 5.0
    try:
        while True:
            try:
                message = _load(feed.recv_bytes())
            except (EOFError, OSError):
                break  # the serving process ended: ship or spool what we hold
            if message[0] == "close":
                timeout = float(message[1])
                break
            _, samples, drops = message
            for fields in samples:
                shipper.offer(PendingPrediction(stamper, *fields))
            for (reason, model, version), n in drops.items():
                shipper.count_dropped(model, version, reason, n)
    finally:
        stopping.set()
        strict.shutdown(wait=True)
        shipper.close(timeout=timeout)
        report()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m mrm.proxy.shipping", description=__doc__)
    parser.add_argument("feed", type=int, help="fd: the decisions the proxy sampled")
    parser.add_argument("control", type=int, help="fd: the config, then strict records")
    parser.add_argument("answers", type=int, help="fd: reports and answers to the proxy")
    parser.add_argument("--nice", type=int, default=10, help="lower the CPU priority by this")
    args = parser.parse_args(argv)
    _lower_priority(args.nice)
    # The proxy stops this process by closing the pipe, after its own last decisions;
    # a Ctrl-C or SIGTERM meant for the proxy's process group must not cut that short.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    serve(
        Connection(args.feed, writable=False),
        Connection(args.control, writable=False),
        Connection(args.answers, readable=False),
    )


if __name__ == "__main__":
    main()
