"""Append throughput through gRPC into PostgreSQL, against a raw COPY of the same rows.

Run: `.venv/bin/python -m benchmarks.ledger_append [--records N] [--streams K]
[--workers W] [--replicas R] [--rounds K]`. The floor is psycopg's COPY of the
very rows the ledger stored, into an identical table (same indexes) of a fresh
database, right after the gRPC run. Server CPU is the ledger's process (under
`mrm up`'s supervisor, the child serving it) with its append workers.
"""

from __future__ import annotations

import argparse
import tempfile
import threading
import time
from pathlib import Path

import psycopg

from benchmarks._support import (
    channel,
    cpu_seconds,
    free_port,
    fresh_pg_database,
    mrm_serve,
    prediction_body,
    save,
    uuid7,
)
from mrm.core import db
from mrm.v1 import ledger_pb2 as pb
from mrm.v1 import ledger_pb2_grpc as pbg

BATCH = int(__import__("os").environ.get("BENCH_BATCH", "256"))
COLUMNS = (
    "leaf_index, record_id, kind, model_name, model_version, subject, trace_id, span_id, "
    "recorded_at_us, actor, body, leaf_hash, subtree_hashes, seal"
)


def make_batches(n: int) -> list[pb.AppendRecordsRequest]:
    batches = []
    for start in range(0, n, BATCH):
        records = [
            pb.Record(
                record_id=uuid7(),
                kind=pb.RECORD_KIND_PREDICTION,
                model_name="credit-risk",
                model_version="1.2.4",
                subject=f"{i % 5000:064x}",
                trace_id=f"{i + 1:032x}",
                span_id=f"{i + 1:016x}",
                body_json=prediction_body(i),
            )
            for i in range(start, min(start + BATCH, n))
        ]
        batches.append(pb.AppendRecordsRequest(records=records))
    return batches


def grpc_append(addr: str, batches: list[pb.AppendRecordsRequest], streams: int) -> float:
    """Seconds to append every batch, `streams` calls in flight at a time."""
    queue = list(reversed(batches))
    lock = threading.Lock()

    def worker() -> None:
        with channel(addr) as ch:
            stub = pbg.LedgerServiceStub(ch)
            while True:
                with lock:
                    if not queue:
                        return
                    req = queue.pop()
                stub.AppendRecords(req, timeout=120)

    threads = [threading.Thread(target=worker) for _ in range(streams)]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return time.perf_counter() - start


TYPES = [
    "int8", "uuid", "varchar", "varchar", "varchar", "varchar", "varchar", "varchar",
    "int8", "varchar", "text", "bytea", "bytea", "bytea",
]  # fmt: skip


def copy_floor(source_url: str, rows: int, binary: bool) -> float:
    """Seconds for one raw COPY of the stored rows into an identical fresh table."""
    plain = source_url.replace("postgresql+psycopg://", "postgresql://", 1)
    with psycopg.connect(plain) as src:
        data = src.execute(f"SELECT {COLUMNS} FROM ledger_leaves ORDER BY leaf_index").fetchall()
    # the appended rows come last; before them, the ACCESS records of the stack's tokens
    assert len(data) >= rows
    data = data[-rows:]
    with fresh_pg_database() as url:
        db.upgrade(db.create_engine(url))
        with psycopg.connect(url.replace("postgresql+psycopg://", "postgresql://", 1)) as conn:
            start = time.perf_counter()
            fmt = " (FORMAT BINARY)" if binary else ""
            with (
                conn.cursor() as cur,
                cur.copy(f"COPY ledger_leaves ({COLUMNS}) FROM STDIN{fmt}") as cp,
            ):
                if binary:
                    cp.set_types(TYPES)
                for row in data:
                    cp.write_row(row)
            conn.commit()
            return time.perf_counter() - start


def _tree(pid: int) -> list[int]:
    """A process and all its descendants (the ledger's append workers)."""
    out = [pid]
    for task in Path(f"/proc/{pid}/task").iterdir():
        for child in (task / "children").read_text().split():
            out.extend(_tree(int(child)))
    return out


def ledger_pids(pids: list[int]) -> list[int]:
    """The processes serving the ledger: under `mrm up`'s supervisor, the children
    whose command line names it (the rest of the stack is not the ledger's CPU)."""
    found = [
        p
        for pid in pids
        for p in _tree(pid)[1:]
        if b"ledger" in Path(f"/proc/{p}/cmdline").read_bytes().split(b"\0")
    ]
    return found or pids


def server_cpu(pids: list[int]) -> float:
    """CPU seconds used so far by the server processes and their live children."""
    return sum(cpu_seconds(p) for pid in pids for p in _tree(pid))


def one_round(args: argparse.Namespace, batches: list[pb.AppendRecordsRequest]) -> dict[str, float]:
    """Append every batch through gRPC into a fresh database, then COPY the same rows."""
    with fresh_pg_database() as url, tempfile.TemporaryDirectory() as home:
        env = {
            "MRM_LEDGER_CHECKPOINT_EVERY": "100000",
            "MRM_LEDGER_APPEND_WORKERS": str(args.workers),
            "MRM_HTTP_ADDR": f"127.0.0.1:{free_port()}",  # the reports' server, unused here
        }
        # The ledger alone: no monitor following the appends, no proxy, no explain.
        with mrm_serve(("ledger",), url, Path(home), args.replicas, **env) as server:
            grpc_append(server.addr, batches[:4], 1)  # warm up connections and caches
            warm = sum(len(b.records) for b in batches[:4])
            ledger = ledger_pids(server.pids)
            cpu = server_cpu(ledger)
            main_cpu = sum(cpu_seconds(pid) for pid in ledger)
            client_cpu = time.process_time()
            elapsed = grpc_append(server.addr, batches[4:], args.streams)
            cpu = server_cpu(ledger) - cpu
            main_cpu = sum(cpu_seconds(pid) for pid in ledger) - main_cpu
            client_cpu = time.process_time() - client_cpu
        appended = args.records - warm
        # The floor is the faster of text and binary COPY, measured now.
        copy_s = min(copy_floor(url, args.records, binary) for binary in (False, True))
    grpc_rate = appended / elapsed
    copy_rate = args.records / copy_s
    return {
        "grpc": grpc_rate,
        "copy": copy_rate,
        "ratio": grpc_rate / copy_rate,
        "cpu_us": cpu / appended * 1e6,
        "main_cpu_us": main_cpu / appended * 1e6,
        "utilisation": cpu / elapsed,
        "client_us": client_cpu / appended * 1e6,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--records", type=int, default=102_400)
    parser.add_argument("--streams", type=int, default=8)
    parser.add_argument("--replicas", type=int, default=1, help="ledger processes")
    parser.add_argument(
        "--workers",
        type=int,
        default=1,  # measured best on 2 cores, which PostgreSQL and the client share
        help="MRM_LEDGER_APPEND_WORKERS of each replica",
    )
    parser.add_argument(
        "--rounds", type=int, default=3, help="paired gRPC/COPY runs; the median ratio counts"
    )
    args = parser.parse_args()
    batches = make_batches(args.records)
    rounds = [one_round(args, batches) for _ in range(args.rounds)]
    # The machine is shared: each round pairs the two measurements in the same
    # minute, and the median round is reported, with the spread of the ratios.
    rounds.sort(key=lambda r: r["ratio"])
    mid = rounds[len(rounds) // 2]
    save(
        "ledger_append" if args.replicas == 1 else f"ledger_append_{args.replicas}_replicas",
        {
            "records": args.records,
            "batch": BATCH,
            "streams": args.streams,
            "replicas": args.replicas,
            "append_workers": args.workers,
            "rounds": args.rounds,
            "grpc_append_rows_per_s": round(mid["grpc"]),
            "raw_copy_rows_per_s": round(mid["copy"]),
            "ratio_grpc_to_copy": round(mid["ratio"], 3),
            "ratios_all_rounds": [round(r["ratio"], 3) for r in rounds],
            "server_cpu_us_per_record": round(mid["cpu_us"], 1),
            "server_main_process_cpu_us_per_record": round(mid["main_cpu_us"], 1),
            "server_cpu_utilisation": round(mid["utilisation"], 2),
            "client_cpu_us_per_record": round(mid["client_us"], 1),
            "target_ratio": 0.4,
        },
    )


if __name__ == "__main__":
    main()
