"""The serving-stacks benchmark's client: closed-loop load at several concurrencies.

    python -m benchmarks._stack_load SPEC.json  →  JSON results on stdout

SPEC: {"targets": [{"name", "kind": "grpc"|"rest", ...}], "row": [30 floats],
"concurrency": [1, 16, 64], "seconds", "warmup", "cpu": {"group": [pids]}}.
A gRPC target is one of `benchmarks._oip_load`'s (Triton's protobufs on grpc.aio,
one connection per caller); a REST target has "url" and "body" (the JSON
document POSTed to `/v2/models/{name}/infer`, the same for every server but for
the outputs asked for) and is sent by aiohttp with up to `concurrency`
keep-alive connections. For each concurrency, every target in turn: `warmup`
seconds of load, then `seconds` in which each request's latency is kept
(p50, p99) and the requests counted (throughput), and the CPU each process
group used (and this client's own) is read from /proc, per request. Before
each cell the client waits for the servers to go idle (`settled_s`).
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from typing import Any

import aiohttp
import numpy as np

from benchmarks._oip_load import Call, _caller, _channel, _cpu


async def _rest_caller(session: aiohttp.ClientSession, t: dict[str, Any]) -> Call:
    body = json.dumps(t["body"]).encode()
    headers = {"Content-Type": "application/json"}

    async def call() -> bytes:
        async with session.post(t["url"], data=body, headers=headers) as resp:
            data = await resp.read()
            if resp.status != 200:
                raise RuntimeError(f"{t['url']}: HTTP {resp.status}: {data[:300]!r}")
            return data

    return call


async def cell(t: dict[str, Any], row: bytes, c: int, spec: dict[str, Any]) -> dict[str, Any]:
    """One target at one concurrency: warm up, then measure."""
    channels: list[Any] = []
    session = None
    if t["kind"] == "rest":
        session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=c))
        calls = [await _rest_caller(session, t) for _ in range(c)]
    else:
        channels = [_channel(t["addr"]) for _ in range(c)]
        calls = [_caller(t, row, ch) for ch in channels]
    times: list[float] = []
    measuring = False
    stop = False

    async def worker(call: Call) -> None:
        while not stop:
            began = time.perf_counter()
            await call()
            if measuring:
                times.append(time.perf_counter() - began)

    tasks = [asyncio.create_task(worker(call)) for call in calls]
    await asyncio.sleep(spec["warmup"])
    before = _cpu(spec.get("cpu", {}))
    measuring, began = True, time.perf_counter()
    await asyncio.sleep(spec["seconds"])
    measuring = False
    elapsed = time.perf_counter() - began
    after = _cpu(spec.get("cpu", {}))
    stop = True
    await asyncio.gather(*tasks)
    for ch in channels:
        await ch.close()
    if session is not None:
        await session.close()
    done = len(times)
    q = np.percentile(np.array(times) * 1e6, [50, 99]) if times else [0.0, 0.0]
    return {
        "p50_us": round(float(q[0]), 1),
        "p99_us": round(float(q[1]), 1),
        "throughput_rps": round(done / elapsed, 1),
        "cpu_us_per_request": {
            k: round((after[k] - before[k]) / max(done, 1) * 1e6, 1) for k in after
        },
    }


async def settle(groups: dict[str, list[int]], limit: float = 15.0) -> float:
    """Wait until the servers are idle (under a tenth of a core in half a second;
    PostgreSQL, shared with others on this machine, does not count), so one cell's
    backlog (records on their way to the ledger, the monitor following it) is not
    charged to the next. Seconds waited."""
    began = time.perf_counter()
    while time.perf_counter() - began < limit:
        before = _cpu(groups)
        await asyncio.sleep(0.5)
        after = _cpu(groups)
        if sum(after[k] - before[k] for k in after if k not in ("client", "postgres")) < 0.05:
            break
    return round(time.perf_counter() - began, 1)


async def run(spec: dict[str, Any]) -> dict[str, Any]:
    row = np.asarray(spec["row"], np.float32).tobytes()
    out: dict[str, dict[str, Any]] = {t["name"]: {} for t in spec["targets"]}
    for c in spec["concurrency"]:
        for t in spec["targets"]:
            waited = await settle(spec.get("cpu", {}))
            out[t["name"]][str(c)] = await cell(t, row, c, spec) | {"settled_s": waited}
            print(f"{t['name']} c={c}: {out[t['name']][str(c)]}", file=sys.stderr, flush=True)
    return out


def main() -> None:
    with open(sys.argv[1]) as fh:
        spec = json.load(fh)
    print(json.dumps(asyncio.run(run(spec))))


if __name__ == "__main__":
    main()
