"""Does the monitor keep up with the proxy's sampled traffic, and how soon does a
drifted window become an ALERT record? Measured side by side in one run.

Run: `.venv/bin/python -m benchmarks.monitor_follow [--backlog-seconds S]
[--load-seconds S] [--repeats N] [--concurrency C]`.

The stack runs one process per service, as deployed (`mrm serve ledger`,
`registry`, `monitor`; the proxy alone with tracing on, as in proxy_serving), on
a fresh PostgreSQL database. The model: deploy_steps' 100-tree classifier on 30
features, deployed with the default monitor config (tumbling 500-row windows)
and sampled at 1.0. Three phases:

1. backlog: the proxy is driven at its maximum (benchmarks._oip_load, 16
   callers) with no monitor running; then the monitor starts and the records/s
   it reads and evaluates until it has caught up is its capacity.
2. keep-up: with the monitor caught up, the proxy is driven at its maximum
   again; the ledger's appends/s (what was sampled) and the monitor's
   `mrm_monitor_records_total` (its /metrics) are sampled together every 0.25 s;
   the ratio is monitored/sampled, the slopes of both over the middle 60% of the
   load (target >= 1: it keeps up), with how far behind it ran. Records are every
   kind the monitor reads (over 99% PREDICTION; the rest its own DRIFT records).
3. latency: a version of its own receives windows of 500 decisions whose
   first feature is shifted; from the ledger time of the decision that
   completed the window (the ALERT's `window.last_recorded_at_us`) to the
   ALERT's own `recorded_at`, p50/p99 over N windows. Each window's alerts are
   acknowledged before the next, so each window alerts again.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Iterator, Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import orjson
import pandas as pd  # type: ignore[import-untyped,unused-ignore]
import psycopg

from benchmarks._support import (
    cpu_seconds,
    free_port,
    fresh_pg_database,
    save,
    seed_benchmark_token,
    wait_serving,
)
from benchmarks.deploy_steps import build
from benchmarks.proxy_serving import process, wait_ready
from mrm.client.ledger import LedgerClient
from mrm.client.monitor import MonitorClient
from mrm.client.registry import RegistryClient
from mrm.deploy.config import DeployConfig
from mrm.deploy.pipeline import prepare, publish
from mrm.drift.config import MonitorConfig
from mrm.oip.v2 import grpc_predict_v2_pb2 as pb
from mrm.oip.v2 import grpc_predict_v2_pb2_grpc as pbg
from mrm.v1 import registry_pb2

ROOT = Path(__file__).resolve().parents[1]
MODEL = "bench"
LOAD_VERSION = "1.0.0"  # production, sampled at 1.0: the load
DRIFT_VERSION = "1.0.1"  # staging, sampled at 1.0: the latency windows
SHIFT = 5.0  # added to the first feature of a drifted decision (its std is about 1.7)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="benchmarks.monitor_follow", description=__doc__)
    parser.add_argument("--backlog-seconds", type=float, default=15.0)
    parser.add_argument("--load-seconds", type=float, default=20.0)
    parser.add_argument("--repeats", type=int, default=20, help="drifted windows (latency)")
    parser.add_argument("--concurrency", type=int, default=16, help="callers of the proxy")
    args = parser.parse_args(argv)
    if args.repeats < 2 or args.backlog_seconds <= 0 or args.load_seconds <= 0:
        parser.error("want --repeats >= 2 and positive durations")
    return args


@dataclass
class Stack:
    home: Path
    url: str
    ledger: str
    registry: str
    proxy: str
    monitor: str
    metrics_port: int
    env: dict[str, str]

    def ledger_size(self) -> int:
        """Records in the ledger (its tree size), straight from the database."""
        with psycopg.connect(self.url.replace("+psycopg", "")) as conn:
            row = conn.execute("SELECT coalesce(max(leaf_index) + 1, 0) FROM ledger_leaves")
            return int(row.fetchone()[0])  # type: ignore[index]

    def predictions(self) -> int:
        with psycopg.connect(self.url.replace("+psycopg", "")) as conn:
            row = conn.execute("SELECT count(*) FROM ledger_leaves WHERE kind = 'PREDICTION'")
            return int(row.fetchone()[0])  # type: ignore[index]

    def first_followed(self) -> int:
        """The leaf the monitor starts reading at: the first decision's (it skips the
        deploy's records), so it has read everything at ledger_size() - this."""
        with psycopg.connect(self.url.replace("+psycopg", "")) as conn:
            row = conn.execute(
                "SELECT min(leaf_index) FROM ledger_leaves WHERE kind = 'PREDICTION'"
            )
            return int(row.fetchone()[0])  # type: ignore[index]

    def monitored(self) -> int:
        """The monitor's mrm_monitor_records_total (every record it has read)."""
        url = f"http://127.0.0.1:{self.metrics_port}/metrics"
        with urllib.request.urlopen(url, timeout=5) as resp:
            text = resp.read().decode()
        found = re.search(r"^mrm_monitor_records_total (\S+)$", text, re.M)
        return int(float(found[1])) if found else 0


def mrm(*args: str) -> list[str]:
    return [str(Path(sys.executable).with_name("mrm")), *args]


def start(tmp: Path, url: str, stack: ExitStack) -> tuple[Stack, dict[str, int]]:
    """Ledger, registry and proxy, each in its own process; the monitor comes later."""
    home = tmp / "home"
    seed_benchmark_token(home)
    s = Stack(
        home,
        url,
        f"127.0.0.1:{free_port()}",
        f"127.0.0.1:{free_port()}",
        f"127.0.0.1:{free_port()}",
        f"127.0.0.1:{free_port()}",
        free_port(),
        {},
    )
    s.env = {
        **os.environ,
        "MRM_HOME": str(home),
        "MRM_DATABASE_URL": url,
        "MRM_LEDGER_ADDR": s.ledger,
        "MRM_REGISTRY_ADDR": s.registry,
        "MRM_PROXY_ADDR": s.proxy,
        "MRM_PROXY_METRICS_ADDR": "127.0.0.1:0",
        "MRM_MONITOR_ADDR": s.monitor,
        "MRM_MONITOR_METRICS_ADDR": f"127.0.0.1:{s.metrics_port}",
        "MRM_SUBJECT_KEY_FILE": str(tmp / "subject.key"),
        "MRM_LOG_LEVEL": "WARNING",
    }
    subprocess.run(mrm("auth", "init"), env=s.env, check=True, capture_output=True)
    pids = {}
    for name in ("ledger", "registry"):
        proc = stack.enter_context(process(mrm("serve", name), s.env, tmp / f"{name}.log"))
        wait_serving(getattr(s, name))
        pids[name] = proc.pid
    return s, pids


def deploy(tmp: Path, s: Stack) -> None:
    cfg = DeployConfig(
        model_path=tmp / "model.pkl",
        version=LOAD_VERSION,
        name=MODEL,
        eval_data=tmp / "eval.csv",
        target="target",
        dataset_id=None,
        training_data=tmp / "train.csv",
        source_commit="0" * 40,
        stage="production",
        sample_rate=1.0,
        fidelity_tolerance=1e-4,
    )
    with RegistryClient(s.registry) as reg:
        publish(cfg, prepare(cfg, lambda _s, _d: None, env={}), reg, lambda _s, _d: None)
        first = reg.get_version(MODEL, LOAD_VERSION)
        refs = [registry_pb2.ArtifactRef(role=a.role, sha256=a.sha256) for a in first.artifacts]
        reg.register(
            registry_pb2.ModelVersion(
                model_name=MODEL, version=DRIFT_VERSION, artifacts=refs, sample_rate=1.0
            )
        )
        reg.promote(MODEL, DRIFT_VERSION, "staging")


def drive(tmp: Path, s: Stack, row: np.ndarray[Any, Any], seconds: float, callers: int) -> Any:
    """The proxy at its maximum for `seconds` (benchmarks._oip_load); returns its Popen."""
    with grpc.insecure_channel(s.proxy) as channel:
        meta = pbg.GRPCInferenceServiceStub(channel).ModelMetadata(
            pb.ModelMetadataRequest(name=MODEL)
        )
    target = {"addr": s.proxy, "rpc": "infer", "model": MODEL, "input": meta.inputs[0].name}
    spec = {
        "targets": [target | {"name": "proxy", "version": LOAD_VERSION}],
        "row": row.tolist(),
        "latency_requests": 50,
        "warmup": 20,
        "seconds": seconds,
        "concurrency": callers,
        "rounds": 1,
    }
    (tmp / "spec.json").write_bytes(orjson.dumps(spec))
    return subprocess.Popen(
        [sys.executable, "-m", "benchmarks._oip_load", str(tmp / "spec.json")],
        stdout=subprocess.PIPE,
        cwd=ROOT,
    )


def settled(s: Stack, quiet: float = 1.0, timeout: float = 120.0) -> int:
    """The ledger's size once the proxy has shipped everything (no growth for `quiet` s)."""
    deadline = time.monotonic() + timeout
    size, since = s.ledger_size(), time.monotonic()
    while time.monotonic() < deadline:
        time.sleep(0.2)
        now = s.ledger_size()
        if now != size:
            size, since = now, time.monotonic()
        elif time.monotonic() - since >= quiet:
            return size
    raise TimeoutError("the ledger kept growing")


def until_monitored(s: Stack, target: int, timeout: float = 180.0) -> Iterator[tuple[float, int]]:
    """(time, monitored) every 50 ms until the monitor has read `target` records."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            n = s.monitored()
        except OSError:  # not listening yet
            n = -1
        yield time.monotonic(), n
        if n >= target:
            return
        time.sleep(0.05)
    raise TimeoutError(f"the monitor did not reach {target} records")


def backlog_phase(tmp: Path, s: Stack, row: Any, args: argparse.Namespace) -> dict[str, Any]:
    load = drive(tmp, s, row, args.backlog_seconds, args.concurrency)
    load.communicate()
    backlog = settled(s)
    return {"records": backlog, "predictions": s.predictions()}


def catch_up(s: Stack, backlog: int, pid: int) -> dict[str, Any]:
    """From the monitor's start until it has read the backlog; the capacity counts from
    its first page, so the interpreter's start and the resume are not in it."""
    began = time.monotonic()
    first: tuple[float, int, float] | None = None
    for t, n in until_monitored(s, backlog - s.first_followed()):
        if first is None and n > 0:
            first = (t, n, cpu_seconds(pid))
    assert first is not None
    t0, n0, cpu0 = first
    cpu = cpu_seconds(pid) - cpu0
    return {
        "records": backlog,
        "start_to_first_page_s": round(t0 - began, 2),
        "catch_up_s": round(t - t0, 2),
        "capacity_records_per_s": round((n - n0) / (t - t0), 1),
        "cpu_s_per_1000_records": round(cpu / (n - n0) * 1000, 3),
    }


def keep_up_phase(tmp: Path, s: Stack, row: Any, args: argparse.Namespace) -> dict[str, Any]:
    samples: list[tuple[float, int, int]] = []
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            samples.append((time.monotonic(), s.ledger_size(), s.monitored()))
            stop.wait(0.25)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    time.sleep(0.5)
    load = drive(tmp, s, row, args.load_seconds, args.concurrency)
    out, _ = load.communicate()
    ended = time.monotonic()
    stop.set()
    sampler.join()
    offset = s.first_followed()  # leaves before the first decision: never read
    during = [p for p in samples if p[0] <= ended]
    t = np.array([p[0] for p in during])
    ledger, monitor = np.array([p[1] for p in during]), np.array([p[2] + offset for p in during])
    # The steady part: the monitor trails by up to a page (1,000 records) and a poll,
    # which at either end of a short load would read as a shortfall in rate.
    span = t[-1] - t[0]
    mid = (t >= t[0] + 0.2 * span) & (t <= t[0] + 0.8 * span)
    sampled, monitored = (float(np.polyfit(t[mid], y[mid], 1)[0]) for y in (ledger, monitor))
    whole = (monitor[-1] - monitor[0]) / (ledger[-1] - ledger[0])
    behind = ledger - monitor
    total = settled(s)
    after = list(until_monitored(s, total - offset))
    return {
        "load_seconds": round(float(span), 1),
        "proxy_rps": round(orjson.loads(out)["proxy"]["throughput_rps"], 1),
        "ledger_records_per_s": round(sampled, 1),
        "monitor_records_per_s": round(monitored, 1),
        "monitored_over_sampled": round(monitored / sampled, 3),
        "monitored_over_sampled_whole_load": round(float(whole), 3),
        "mean_records_behind": round(float(behind.mean())),
        "max_records_behind": int(behind.max()),
        "records_behind_at_load_end": int(behind[-1]),
        "caught_up_after_load_s": round(after[-1][0] - ended, 2),
    }


def drifted_rows(tmp: Path, n: int) -> np.ndarray[Any, Any]:
    frame = pd.read_csv(tmp / "eval.csv").drop(columns=["target"])
    rows: np.ndarray[Any, Any] = frame.to_numpy(np.float32)[np.arange(n) % len(frame)].copy()
    rows[:, 0] += SHIFT
    return rows


def latency_phase(tmp: Path, s: Stack, args: argparse.Namespace) -> dict[str, Any]:
    window = MonitorConfig.from_table({}).windows[0].size  # what the deploy used
    rows = drifted_rows(tmp, window)
    ledger_ms: list[float] = []
    response_ms: list[float] = []
    seen: set[str] = set()
    with (
        grpc.insecure_channel(s.proxy) as channel,
        LedgerClient(s.ledger) as ledger,
        MonitorClient(s.monitor) as monitor,
    ):
        stub = pbg.GRPCInferenceServiceStub(channel)
        name = stub.ModelMetadata(pb.ModelMetadataRequest(name=MODEL)).inputs[0].name
        for _ in range(args.repeats):
            for row in rows:
                request = pb.ModelInferRequest(
                    model_name=MODEL,
                    model_version=DRIFT_VERSION,
                    inputs=[
                        pb.ModelInferRequest.InferInputTensor(
                            name=name, datatype="FP32", shape=[1, len(row)]
                        )
                    ],
                    raw_input_contents=[row.reshape(1, -1).tobytes()],
                )
                request.parameters["subject_id"].string_param = "drifted-applicant"
                stub.ModelInfer(request)
            answered_us = time.time_ns() // 1000
            deadline = time.monotonic() + 60
            while True:
                new = [
                    r
                    for r in ledger.query(
                        kind="ALERT", model_name=MODEL, model_version=DRIFT_VERSION
                    )
                    if r.record_id not in seen and orjson.loads(r.body_json)["state"] == "firing"
                ]
                if new:
                    break
                if time.monotonic() > deadline:
                    raise TimeoutError("the drifted window raised no alert")
                time.sleep(0.02)
            time.sleep(0.2)  # the rest of the window's batch (one append: all or nothing)
            new = [
                r
                for r in ledger.query(kind="ALERT", model_name=MODEL, model_version=DRIFT_VERSION)
                if r.record_id not in seen and orjson.loads(r.body_json)["state"] == "firing"
            ]
            alert_us = min(r.recorded_at.ToMicroseconds() for r in new)
            completed_us = orjson.loads(new[0].body_json)["window"]["last_recorded_at_us"]
            ledger_ms.append((alert_us - completed_us) / 1000)
            response_ms.append((alert_us - answered_us) / 1000)
            for r in new:
                seen.add(r.record_id)
                monitor.acknowledge(r.record_id, note="benchmark")
            time.sleep(0.3)  # the monitor learns of acknowledgements from a worker
    return {
        "window_rows": window,
        "windows": args.repeats,
        "alerts_per_window": round(len(seen) / args.repeats, 1),
        "decision_to_alert_ms": percentiles(ledger_ms),
        "last_response_to_alert_ms": percentiles(response_ms),
    }


def percentiles(values: list[float]) -> dict[str, float]:
    q = np.percentile(np.array(values), [50, 90, 99])
    return {
        "p50": round(float(q[0]), 1),
        "p90": round(float(q[1]), 1),
        "p99": round(float(q[2]), 1),
        "max": round(max(values), 1),
    }


def table(result: dict[str, Any]) -> str:
    b, k, lat = result["backlog"], result["keep_up"], result["latency"]
    lines = [
        f"{'backlog: records':<44}{b['records']:>12}",
        f"{'backlog: monitor capacity (records/s)':<44}{b['capacity_records_per_s']:>12}",
        f"{'backlog: monitor CPU per 1000 records (s)':<44}{b['cpu_s_per_1000_records']:>12}",
        f"{'keep-up: proxy (requests/s)':<44}{k['proxy_rps']:>12}",
        f"{'keep-up: ledger appends (records/s)':<44}{k['ledger_records_per_s']:>12}",
        f"{'keep-up: monitor read (records/s)':<44}{k['monitor_records_per_s']:>12}",
        f"{'keep-up: monitored / sampled (steady)':<44}{k['monitored_over_sampled']:>12}",
        f"{'keep-up: monitored / sampled, whole load':<44}"
        f"{k['monitored_over_sampled_whole_load']:>12}",
        f"{'keep-up: records behind, mean / max':<44}"
        f"{k['mean_records_behind']:>6} / {k['max_records_behind']}",
        f"{'latency: decision -> ALERT p50 (ms)':<44}{lat['decision_to_alert_ms']['p50']:>12}",
        f"{'latency: decision -> ALERT p99 (ms)':<44}{lat['decision_to_alert_ms']['p99']:>12}",
        f"{'latency: last response -> ALERT p50 (ms)':<44}"
        f"{lat['last_response_to_alert_ms']['p50']:>12}",
    ]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    with tempfile.TemporaryDirectory() as d, fresh_pg_database() as url, ExitStack() as stack:
        tmp = Path(d)
        build(tmp)
        row = pd.read_csv(tmp / "eval.csv").drop(columns=["target"]).iloc[0].to_numpy(np.float32)
        s, pids = start(tmp, url, stack)
        deploy(tmp, s)
        proxy = stack.enter_context(
            process([sys.executable, "-m", "benchmarks._proxy_process"], s.env, tmp / "proxy.log")
        )
        for version in (LOAD_VERSION, DRIFT_VERSION):
            wait_ready(s.proxy, MODEL, version)
        pids["proxy"] = proxy.pid

        print("backlog: driving the proxy with no monitor running", file=sys.stderr)
        backlog = backlog_phase(tmp, s, row, args)
        print(f"backlog: {backlog}; starting the monitor", file=sys.stderr)
        monitor = stack.enter_context(process(mrm("serve", "monitor"), s.env, tmp / "monitor.log"))
        backlog |= catch_up(s, backlog["records"], monitor.pid)
        wait_serving(s.monitor)

        print(f"backlog: {backlog}; keep-up phase", file=sys.stderr)
        try:
            keep_up = keep_up_phase(tmp, s, row, args)
            print(f"keep-up: {keep_up}; latency phase", file=sys.stderr)
            latency = latency_phase(tmp, s, args)
        except BaseException:
            print((tmp / "monitor.log").read_text()[-3000:], file=sys.stderr)
            raise
    result: dict[str, Any] = {
        "model": "GradientBoostingClassifier(100 trees), 30 features, 1 row per request",
        "stack": "mrm serve ledger | registry | monitor and the proxy, one process each; "
        "PostgreSQL; sampling 1.0; tumbling 500-row windows; monitor poll 0.2 s",
        "backlog": backlog,
        "keep_up": keep_up,
        "latency": latency,
        "ratios": {
            "monitored_over_sampled": keep_up["monitored_over_sampled"],
            "capacity_over_sampled": round(
                backlog["capacity_records_per_s"] / keep_up["ledger_records_per_s"], 2
            ),
        },
        "targets": {"monitored_over_sampled": ">= 1", "capacity_over_sampled": ">= 1"},
    }
    print(table(result))
    save("monitor_follow", result)


if __name__ == "__main__":
    main()
