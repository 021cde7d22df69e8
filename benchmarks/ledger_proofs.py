"""Proofs at 1,000,000 leaves: their cost in storage reads and time, and the full audit's rate.

Run: `.venv/bin/python -m benchmarks.ledger_proofs [--leaves N] [--proofs K]`.

1. Fills a fresh PostgreSQL ledger with N prediction-sized leaves in-process,
   through `LedgerStore.append_batches` in large groups, and signs a checkpoint.
   Roots at every tree size used below are rebuilt independently, from the leaf
   hashes with the client's `TreeBuilder`, so every proof is checked against a
   root the server did not compute (and the size-N root against the signed note).
2. Inclusion proofs for random leaves against the latest checkpoint: client
   latency over gRPC from the real server, and the server time, SQL statements
   and rows per proof in-process; the same at prefix sizes N' of the same log,
   to show the reads grow with log2(size), not with size.
3. Consistency proofs from random old sizes to the latest (and within prefixes).
4. The full audit (`mrmctl ledger verify`) over the whole log, next to two
   floors measured in the same run: hashing records already in memory, and
   streaming every record over gRPC without hashing.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from benchmarks._support import (
    channel,
    fresh_pg_database,
    mrm_up,
    prediction_body,
    save,
    uuid7,
)
from mrm.client.ledger import LedgerClient
from mrm.client.trust import open_checkpoint
from mrm.core import db
from mrm.core.settings import Settings
from mrm.kernel.clock import now_us
from mrm.ledger.app import open_ledger
from mrm.ledger.batch import PendingBatch
from mrm.ledger.records import NewRecord, StoredRecord
from mrm.ledger.service import Ledger
from mrm.tlog.leaf import leaf_bytes_from_proto
from mrm.tlog.merkle import TreeBuilder, leaf_hash, verify_consistency, verify_inclusion
from mrm.tlog.note import Verifier, parse_vkey
from mrm.v1 import ledger_pb2 as pb
from mrm.v1 import ledger_pb2_grpc as pbg

BATCH = 1024  # records per PendingBatch (one AppendRecords call's worth)
GROUP = 8  # batches per append_batches call (one group commit)
PREFIXES = (1_000, 100_000)  # the smaller tree sizes N', as prefixes of the same log
FLOOR_RECORDS = 200_000  # records held in memory for the hashing floor
PAGE = 10_000  # QueryRecords page size, as the audit uses
ACTOR = "bench-ledger-proofs"
# prediction_body(i) depends on i only through i % 10007 and i % 2.
BODY_PERIOD = 10_007 * 2
GRPC_OPTIONS = [("grpc.max_receive_message_length", -1)]


def pct(values: Sequence[float], q: float) -> float:
    """The q-quantile (0..1), nearest rank."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]


def ms(seconds: float) -> float:
    return round(seconds * 1000, 3)


# -- 1. fill ---------------------------------------------------------------------


@dataclass
class Filled:
    seconds: float
    prepare_s: float  # building NewRecords and PendingBatch.prepare (leaf hashing)
    append_s: float  # LedgerStore.append_batches (existing-id lookup, sequencing, COPY)
    leaf_hashes: list[bytes]


def fill(ledger: Ledger, n: int) -> Filled:
    """Append n prediction records in groups of GROUP batches of BATCH records."""
    bodies = [prediction_body(i) for i in range(min(n, BODY_PERIOD))]
    hashes: list[bytes] = []
    prepare_s = append_s = 0.0
    start = time.perf_counter()
    step = GROUP * BATCH
    for group_start in range(0, n, step):
        t0 = time.perf_counter()
        pending = []
        for b in range(group_start, min(group_start + step, n), BATCH):
            records = [
                NewRecord(
                    record_id=uuid.UUID(uuid7()),
                    kind="PREDICTION",
                    model_name="credit-risk",
                    model_version="1.2.4",
                    subject=f"{i % 5000:064x}",
                    trace_id=f"{i + 1:032x}",
                    span_id=f"{i + 1:016x}",
                    body=bodies[i % BODY_PERIOD],
                )
                for i in range(b, min(b + BATCH, n))
            ]
            pending.append(PendingBatch.from_records(records, ACTOR, now_us()))
        t1 = time.perf_counter()
        outcomes = ledger.store.append_batches(pending)
        append_s += time.perf_counter() - t1
        prepare_s += t1 - t0
        for outcome in outcomes:
            if isinstance(outcome, Exception):
                raise outcome
            hashes.extend(a.record.leaf_hash for a in outcome.appended())
    seconds = time.perf_counter() - start
    if len(hashes) != n:
        raise AssertionError(f"appended {len(hashes)} leaves, wanted {n}")
    return Filled(seconds, prepare_s, append_s, hashes)


def independent_roots(leaf_hashes: Sequence[bytes], sizes: set[int]) -> dict[int, bytes]:
    """Roots at the given tree sizes, rebuilt client-side from the leaf hashes alone."""
    tree = TreeBuilder()
    roots: dict[int, bytes] = {}
    for h in leaf_hashes:
        tree.append(h)
        if tree.size in sizes:
            roots[tree.size] = tree.root()
    return roots


# -- 2, 3. proofs in-process: time, statements, rows ---------------------------------


@dataclass
class Reads:
    """What the proofs asked of PostgreSQL, per proof."""

    statements: list[int] = field(default_factory=list)
    round_trips: list[int] = field(default_factory=list)  # see SqlCounter
    checkouts: list[int] = field(default_factory=list)  # connections taken from the pool
    leaf_rows: list[int] = field(default_factory=list)  # rows fetched from ledger_leaves
    node_rows: list[int] = field(default_factory=list)  # rows of the subtree-hash read
    seconds: list[float] = field(default_factory=list)

    def summary(self, size: int) -> dict[str, object]:
        return {
            "tree_size": size,
            "log2_size": round(math.log2(size), 2),
            "proofs": len(self.seconds),
            "median_server_ms": ms(statistics.median(self.seconds)),
            "p95_server_ms": ms(pct(self.seconds, 0.95)),
            "sql_statements_per_proof": statistics.median(self.statements),
            "max_sql_statements_per_proof": max(self.statements),
            "db_round_trips_per_proof": statistics.median(self.round_trips),
            "pool_checkouts_per_proof": statistics.median(self.checkouts),
            "leaf_rows_per_proof_median": statistics.median(self.leaf_rows),
            "leaf_rows_per_proof_max": max(self.leaf_rows),
            "node_rows_per_proof_median": statistics.median(self.node_rows),
            "node_rows_per_proof_max": max(self.node_rows),
        }


class SqlCounter:
    """Counts what a piece of code asks of PostgreSQL through an engine.

    Round trips are every message exchange with the server: each pool checkout's
    pre-ping, BEGIN (psycopg sends it on its own before a transaction's first
    statement), each statement, and COMMIT or ROLLBACK.
    """

    def __init__(self, engine: sa.Engine) -> None:
        self.statements = self.round_trips = self.checkouts = 0
        self.leaf_rows = self.node_rows = 0
        sa.event.listen(engine, "after_cursor_execute", self._after)
        for name in ("begin", "commit", "rollback"):
            sa.event.listen(engine, name, self._round_trip)
        sa.event.listen(engine.pool, "checkout", self._checkout)
        dialect = engine.dialect
        ping = dialect.do_ping

        def counted_ping(dbapi_conn: Any) -> bool:
            self.round_trips += 1
            return ping(dbapi_conn)

        # The pool pre-pings with the driver directly, past the engine's events.
        setattr(dialect, "do_ping", counted_ping)  # noqa: B010

    def _round_trip(self, *_: Any) -> None:
        self.round_trips += 1

    def _checkout(self, *_: Any) -> None:
        self.checkouts += 1

    def _after(self, conn: Any, cursor: Any, statement: str, *_: Any) -> None:
        self.statements += 1
        self.round_trips += 1
        if "ledger_leaves" in statement:
            rows = max(cursor.rowcount, 0)  # psycopg 3: the rows a SELECT returned
            self.leaf_rows += rows
            if "subtree_hashes" in statement:
                self.node_rows += rows

    def _snapshot(self) -> tuple[int, int, int, int, int]:
        return self.statements, self.round_trips, self.checkouts, self.leaf_rows, self.node_rows

    @contextmanager
    def measure(self, into: Reads) -> Iterator[None]:
        before = self._snapshot()
        start = time.perf_counter()
        yield
        into.seconds.append(time.perf_counter() - start)
        st, rt, co, lr, nr = (x - y for x, y in zip(self._snapshot(), before, strict=True))
        into.statements.append(st)
        into.round_trips.append(rt)
        into.checkouts.append(co)
        into.leaf_rows.append(lr)
        into.node_rows.append(nr)


def stored_leaf_hash(rec: StoredRecord) -> bytes:
    """The leaf hash re-derived from the record's fields, not the stored hash."""
    return leaf_hash(rec.leaf_bytes())


def inclusion_in_process(
    ledger: Ledger,
    counter: SqlCounter,
    size: int,
    latest: int,
    roots: dict[int, bytes],
    indexes: Sequence[int],
) -> Reads:
    """Server-side inclusion proofs at tree `size` (tree_size=0 when it is the latest)."""
    reads = Reads()
    ask = 0 if size == latest else size
    for i in indexes:
        with counter.measure(reads):
            proof = ledger.inclusion_proof(record_id=None, leaf_index=i, tree_size=ask)
        if proof.tree_size != size or proof.record.leaf_index != i:
            raise AssertionError(f"asked leaf {i} at size {size}, got {proof}")
        verify_inclusion(stored_leaf_hash(proof.record), i, size, proof.path, roots[size])
    return reads


def consistency_in_process(
    ledger: Ledger,
    counter: SqlCounter,
    size: int,
    latest: int,
    roots: dict[int, bytes],
    old_sizes: Sequence[int],
) -> Reads:
    reads = Reads()
    ask = 0 if size == latest else size
    for old in old_sizes:
        with counter.measure(reads):
            proof = ledger.consistency_proof(old, ask)
        if proof.new_size != size:
            raise AssertionError(f"asked {old} -> {size}, got new size {proof.new_size}")
        verify_consistency(old, size, proof.path, roots[old], roots[size])
    return reads


# -- 2, 3. proofs over gRPC ------------------------------------------------------------


def signed_root(cp: pb.Checkpoint, verifier: Verifier, origin: str, size: int) -> bytes:
    cp_size, root = open_checkpoint(cp.note, verifier, origin)
    if cp_size != size:
        raise AssertionError(f"the signed checkpoint covers {cp_size} leaves, not {size}")
    return root


def timed_calls(count: int, call: Callable[[int], None]) -> list[float]:
    out = []
    for k in range(count):
        start = time.perf_counter()
        call(k)
        out.append(time.perf_counter() - start)
    return out


def grpc_proofs(
    addr: str,
    size: int,
    root: bytes,
    roots: dict[int, bytes],
    verifier: Verifier,
    origin: str,
    indexes: Sequence[int],
    old_sizes: Sequence[int],
) -> dict[str, object]:
    """Client-observed latency of proofs against the latest checkpoint; each one verified."""
    with channel(addr, GRPC_OPTIONS) as ch:
        stub = pbg.LedgerServiceStub(ch)
        responses: list[pb.GetInclusionProofResponse] = []
        cons: list[pb.GetConsistencyProofResponse] = []

        def inclusion(k: int) -> None:
            req = pb.GetInclusionProofRequest(leaf_index=indexes[k], tree_size=0)
            responses.append(stub.GetInclusionProof(req, timeout=30))

        def consistency(k: int) -> None:
            req = pb.GetConsistencyProofRequest(old_size=old_sizes[k], new_size=0)
            cons.append(stub.GetConsistencyProof(req, timeout=30))

        for k in range(20):  # warm up the channel and the server's pool
            inclusion(k)
        responses.clear()
        inc_s = timed_calls(len(indexes), inclusion)
        cons_s = timed_calls(len(old_sizes), consistency)
    for i, resp in zip(indexes, responses, strict=True):
        if resp.leaf_index != i or resp.tree_size != size or resp.record.leaf_index != i:
            raise AssertionError(f"asked leaf {i} at size {size}, got {resp.leaf_index}")
        if signed_root(resp.checkpoint, verifier, origin, size) != root:
            raise AssertionError("the proof's checkpoint is not the one signed after the fill")
        h = leaf_hash(leaf_bytes_from_proto(resp.record))
        verify_inclusion(h, i, size, resp.inclusion_path, root)
    for old, c in zip(old_sizes, cons, strict=True):
        verify_consistency(old, size, c.consistency_path, roots[old], root)
    return {
        "inclusion_proofs": len(inc_s),
        "inclusion_client_median_ms": ms(statistics.median(inc_s)),
        "inclusion_client_p95_ms": ms(pct(inc_s, 0.95)),
        "inclusion_path_len_median": statistics.median(len(r.inclusion_path) for r in responses),
        "consistency_proofs": len(cons_s),
        "consistency_client_median_ms": ms(statistics.median(cons_s)),
        "consistency_client_p95_ms": ms(pct(cons_s, 0.95)),
        "all_verified": True,  # any failure above raised
    }


# -- 4. the full audit and its floors --------------------------------------------------


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run_audit(addr: str, vkey: str, size: int, server_cpu: Callable[[], float]) -> dict[str, Any]:
    """`mrmctl ledger verify --output json` as an auditor runs it, with a fresh trust store."""
    mrmctl = str(Path(sys.executable).with_name("mrmctl"))
    with tempfile.TemporaryDirectory() as config:
        env = {**os.environ, "MRM_CONFIG_DIR": config, "MRM_LEDGER_VKEY": vkey}
        cmd = [mrmctl, "--ledger-addr", addr, "--timeout", "120"]
        cmd += ["ledger", "verify", "--output", "json"]
        cpu0, srv0 = children_cpu(), server_cpu()
        start = time.perf_counter()
        done = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
        seconds = time.perf_counter() - start
        cpu, srv = children_cpu() - cpu0, server_cpu() - srv0
        start = time.perf_counter()
        subprocess.run([mrmctl, "--version"], env=env, capture_output=True, check=True)
        startup = time.perf_counter() - start
    if done.returncode != 0:
        raise AssertionError(f"mrmctl ledger verify exited {done.returncode}: {done.stderr}")
    report = json.loads(done.stdout)
    if not report["valid"] or report["checked_leaves"] != size or report["tree_size"] != size:
        raise AssertionError(f"the audit did not pass over {size} leaves: {report}")
    return {
        "seconds": seconds,
        "startup_s": startup,
        "client_cpu_s": cpu,
        "server_cpu_s": srv,
        "report": {k: report[k] for k in ("valid", "tree_size", "checked_leaves")},
        "checkpoints_checked": report["checkpoints_checked"],
    }


def fetch_records(addr: str, limit: int) -> list[pb.Record]:
    out: list[pb.Record] = []
    with LedgerClient(addr, timeout=120) as client:
        for page in client.query_pages(page_size=PAGE):
            out.extend(page)
            if len(out) >= limit:
                break
    return out[:limit]


def hashing_floor(records: Sequence[pb.Record], root: bytes) -> float:
    """Seconds to re-derive the leaf hashes of in-memory records and fold them into a tree."""
    leaf_bytes, hash_leaf = leaf_bytes_from_proto, leaf_hash
    tree = TreeBuilder()
    start = time.perf_counter()
    for rec in records:
        tree.append(hash_leaf(leaf_bytes(rec)))
    seconds = time.perf_counter() - start
    if tree.root() != root:
        raise AssertionError(f"the records' leaves do not rebuild the root at {len(records)}")
    return seconds


def streaming_floor(addr: str, size: int, server_cpu: Callable[[], float]) -> dict[str, float]:
    """Seconds to page every record over gRPC exactly as the audit does, hashing nothing."""
    count = 0
    srv0, cpu0 = server_cpu(), time.process_time()
    start = time.perf_counter()
    with LedgerClient(addr, timeout=120) as client:
        for page in client.query_pages(page_size=PAGE):
            count += len(page)
    seconds = time.perf_counter() - start
    if count != size:
        raise AssertionError(f"streamed {count} records, the log has {size}")
    return {
        "seconds": seconds,
        "client_cpu_s": time.process_time() - cpu0,
        "server_cpu_s": server_cpu() - srv0,
    }


# -- main ----------------------------------------------------------------------------


def sample_sizes(rng: random.Random, size: int, count: int) -> list[int]:
    """Random old tree sizes in [1, size)."""
    return [rng.randrange(1, size) for _ in range(count)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--leaves", type=int, default=1_000_000)
    parser.add_argument("--proofs", type=int, default=500, help="inclusion proofs per size")
    parser.add_argument("--consistency", type=int, default=300, help="proofs per size")
    parser.add_argument("--seed", type=int, default=6962)
    args = parser.parse_args()
    n: int = args.leaves
    rng = random.Random(args.seed)
    sizes = [s for s in PREFIXES if s < n] + [n]
    floor_n = min(FLOOR_RECORDS, n)
    inc_idx = {s: [rng.randrange(s) for _ in range(args.proofs)] for s in sizes}
    cons_old = {s: sample_sizes(rng, s, args.consistency) for s in sizes}
    grpc_idx = [rng.randrange(n) for _ in range(args.proofs)]
    grpc_old = sample_sizes(rng, n, args.consistency)
    wanted = {*sizes, floor_n, *grpc_old, *(o for olds in cons_old.values() for o in olds)}
    result: dict[str, object] = {"leaves": n, "batch": BATCH, "group": GROUP}
    wall = time.perf_counter()

    with fresh_pg_database() as url, tempfile.TemporaryDirectory() as home:
        engine = db.create_engine(url)
        db.upgrade(engine)
        ledger = open_ledger(Settings(home=Path(home), database_url=url), engine)
        try:
            # 1. Fill, sign, and rebuild the roots we will check proofs against.
            filled = fill(ledger, n)
            print(f"filled {n} leaves in {filled.seconds:.1f}s", file=sys.stderr)
            t0 = time.perf_counter()
            cp = ledger.sign_checkpoint()
            sign_s = time.perf_counter() - t0
            t0 = time.perf_counter()
            with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
                conn.exec_driver_sql("VACUUM (ANALYZE) ledger_leaves")
            vacuum_s = time.perf_counter() - t0
            roots = independent_roots(filled.leaf_hashes, wanted)
            filled.leaf_hashes = []  # 1M hashes: let them go
            verifier = parse_vkey(ledger.verifier_key)
            if (
                cp.tree_size != n
                or signed_root(pb.Checkpoint(note=cp.note), verifier, ledger.origin, n) != roots[n]
            ):
                raise AssertionError("the signed checkpoint's root is not the rebuilt root")
            result["fill"] = {
                "seconds": round(filled.seconds, 1),
                "rows_per_s": round(n / filled.seconds),
                "append_batches_rows_per_s": round(n / filled.append_s),
                "prepare_s": round(filled.prepare_s, 1),
                "append_batches_s": round(filled.append_s, 1),
                "sign_checkpoint_s": round(sign_s, 1),
                "vacuum_analyze_s": round(vacuum_s, 1),
            }

            # 2, 3. In-process: server time, statements and rows per proof, by size.
            counter = SqlCounter(engine)
            for s in sizes:  # warm the pool and the caches a little
                inclusion_in_process(ledger, counter, s, n, roots, inc_idx[s][:20])
            inclusion = [
                inclusion_in_process(ledger, counter, s, n, roots, inc_idx[s]).summary(s)
                for s in sizes
            ]
            consistency = [
                consistency_in_process(ledger, counter, s, n, roots, cons_old[s]).summary(s)
                for s in sizes
            ]
            print("in-process proofs done", file=sys.stderr)
        finally:
            ledger.close()
            engine.dispose()

        # The real server, on the same database and key.
        with mrm_up(url, Path(home)) as server:
            over_grpc = grpc_proofs(
                server.addr, n, roots[n], roots, verifier, ledger.origin, grpc_idx, grpc_old
            )
            print("gRPC proofs done", file=sys.stderr)
            # 4. Floors first, so the audit does not get a cache the floors lacked.
            records = fetch_records(server.addr, floor_n)
            hash_s = min(hashing_floor(records, roots[floor_n]) for _ in range(2))
            del records
            stream = streaming_floor(server.addr, n, server.cpu_seconds)
            print("floors done; auditing", file=sys.stderr)
            audit = run_audit(server.addr, ledger.verifier_key, n, server.cpu_seconds)

    node_rows = float(str(inclusion[-1]["node_rows_per_proof_median"]))
    audit_rate = n / audit["seconds"]
    hash_rate = floor_n / hash_s
    stream_rate = n / stream["seconds"]
    result |= {
        "inclusion_in_process": inclusion,
        "consistency_in_process": consistency,
        "grpc_at_full_size": over_grpc,
        "audit": {
            "leaves_per_s": round(audit_rate),
            "seconds": round(audit["seconds"], 2),
            "mrmctl_startup_s": round(audit["startup_s"], 2),
            "client_cpu_s": round(audit["client_cpu_s"], 2),
            "server_cpu_s": round(audit["server_cpu_s"], 2),
            "checkpoints_checked": audit["checkpoints_checked"],
            "mrmctl_json": audit["report"],
            "target_leaves_per_s": 50_000,
        },
        "floors": {
            "hashing_records": floor_n,
            "hashing_leaves_per_s": round(hash_rate),
            "streaming_records_per_s": round(stream_rate),
            "streaming_seconds": round(stream["seconds"], 2),
            "streaming_client_cpu_s": round(stream["client_cpu_s"], 2),
            "streaming_server_cpu_s": round(stream["server_cpu_s"], 2),
        },
        "ratios": {
            "audit_to_hashing_floor": round(audit_rate / hash_rate, 3),
            "audit_to_streaming_floor": round(audit_rate / stream_rate, 3),
            "audit_to_target": round(audit_rate / 50_000, 3),
            "inclusion_node_rows_to_log2_n": round(node_rows / math.log2(n), 3),
        },
        "wall_seconds": round(time.perf_counter() - wall, 1),
    }
    save("ledger_proofs", result)


if __name__ == "__main__":
    main()
