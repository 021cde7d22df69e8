"""The serving benchmark's client: one process, our OIP v2 stubs, the same for every server.

    python -m benchmarks._oip_load SPEC.json  →  JSON results on stdout

SPEC: {"targets": [{"name", "addr", "rpc": "infer"|"live", "model", "version",
"input", "outputs": [...]}], "row": [30 floats], "latency_requests", "warmup",
"seconds", "concurrency", "rounds", "cpu": {"group": [pids]}}. Each request
carries one row as a raw FP32 tensor (what Triton's and KServe's clients
send). Latency: sequential requests on one connection, p50/p90/p99.
Throughput: `concurrency` callers, each on its own connection (so SO_REUSEPORT
can spread them), for `seconds`. Targets are measured in turn, `rounds` times;
each figure is the median over the rounds.
During each throughput phase the CPU each process group used (and this client's
own) is read from /proc and reported per request: `cpu_us_per_request`.
"""

from __future__ import annotations

import asyncio
import json
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import grpc
import numpy as np

from benchmarks._support import cpu_seconds
from mrm.oip.v2 import grpc_predict_v2_pb2 as pb
from mrm.oip.v2 import grpc_predict_v2_pb2_grpc as pbg

Call = Callable[[], Awaitable[Any]]


def _channel(addr: str) -> grpc.aio.Channel:
    # A connection of its own (no shared subchannel), as separate clients would have.
    return grpc.aio.insecure_channel(addr, options=[("grpc.use_local_subchannel_pool", 1)])


def _caller(t: dict[str, Any], row: bytes, channel: grpc.aio.Channel) -> Call:
    stub = pbg.GRPCInferenceServiceStub(channel)
    if t["rpc"] == "live":
        live = pb.ServerLiveRequest()
        return lambda: stub.ServerLive(live)
    request = pb.ModelInferRequest(
        model_name=t["model"],
        model_version=t.get("version", ""),
        inputs=[
            pb.ModelInferRequest.InferInputTensor(name=t["input"], datatype="FP32", shape=[1, 30])
        ],
        outputs=[
            pb.ModelInferRequest.InferRequestedOutputTensor(name=n) for n in t.get("outputs", [])
        ],
        raw_input_contents=[row],
    )
    request.parameters["subject_id"].string_param = "bench-subject"
    return lambda: stub.ModelInfer(request)


async def latency(t: dict[str, Any], row: bytes, n: int, warmup: int) -> dict[str, float]:
    async with _channel(t["addr"]) as channel:
        call = _caller(t, row, channel)
        for _ in range(warmup):
            await call()
        times = []
        for _ in range(n):
            began = time.perf_counter()
            await call()
            times.append(time.perf_counter() - began)
    q = np.percentile(np.array(times) * 1e6, [50, 90, 99])
    return {"p50_us": float(q[0]), "p90_us": float(q[1]), "p99_us": float(q[2])}


def _postgres_pids() -> list[int]:
    """The PostgreSQL server's processes (its backends come and go with connections)."""
    pids = []
    for stat in Path("/proc").glob("[0-9]*/comm"):
        try:
            if stat.read_text().strip() == "postgres":
                pids.append(int(stat.parent.name))
        except OSError:
            continue
    return pids


def _cpu(groups: dict[str, list[int]]) -> dict[str, float]:
    def total(pids: list[int]) -> float:
        used = 0.0
        for pid in pids:
            try:
                used += cpu_seconds(pid)
            except OSError:  # a backend that has exited
                continue
        return used

    return {"client": time.process_time()} | {
        name: total(_postgres_pids() if name == "postgres" else pids)
        for name, pids in groups.items()
    }


async def throughput(
    t: dict[str, Any], row: bytes, seconds: float, concurrency: int, groups: dict[str, list[int]]
) -> dict[str, Any]:
    channels = [_channel(t["addr"]) for _ in range(concurrency)]
    calls = [_caller(t, row, c) for c in channels]
    done = 0
    counting = False
    stop = False

    async def worker(call: Call) -> None:
        nonlocal done
        while not stop:
            await call()
            if counting:
                done += 1

    tasks = [asyncio.create_task(worker(c)) for c in calls]
    await asyncio.sleep(min(1.0, seconds / 4))  # warm up every connection
    before = _cpu(groups)
    counting, began = True, time.perf_counter()
    await asyncio.sleep(seconds)
    counting = False
    elapsed = time.perf_counter() - began
    after = _cpu(groups)
    stop = True
    await asyncio.gather(*tasks)
    for c in channels:
        await c.close()
    cpu = {k: round((after[k] - before[k]) / max(done, 1) * 1e6, 1) for k in after}
    return {"throughput_rps": done / elapsed, "cpu_us_per_request": cpu}


async def run(spec: dict[str, Any]) -> dict[str, Any]:
    row = np.asarray(spec["row"], np.float32).tobytes()
    rounds: dict[str, list[dict[str, float]]] = {t["name"]: [] for t in spec["targets"]}
    for _ in range(spec["rounds"]):
        for t in spec["targets"]:
            lat = await latency(t, row, spec["latency_requests"], spec["warmup"])
            thr = await throughput(
                t, row, spec["seconds"], spec["concurrency"], spec.get("cpu", {})
            )
            rounds[t["name"]].append(lat | thr)
    return {name: _medians(runs) for name, runs in rounds.items()}


def _medians(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Each figure's median over the rounds; the CPU breakdown is the throughput
    median round's, so its parts add up."""
    out: dict[str, Any] = {
        k: round(statistics.median(r[k] for r in runs), 1)
        for k in runs[0]
        if k != "cpu_us_per_request"
    }
    middle = sorted(runs, key=lambda r: r["throughput_rps"])[len(runs) // 2]
    out["cpu_us_per_request"] = middle["cpu_us_per_request"]
    return out


def main() -> None:
    with open(sys.argv[1]) as fh:
        spec = json.load(fh)
    print(json.dumps(asyncio.run(run(spec))))


if __name__ == "__main__":
    main()
