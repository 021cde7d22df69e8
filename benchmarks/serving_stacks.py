"""The proxy as users run it, beside MLServer 1.7 and its own floor, in one run.

Run: `.venv/bin/python -m benchmarks.serving_stacks [--layouts default,production]
[--concurrency 1,16,64] [--seconds 5] [--warmup 1]` (the first run creates
benchmarks/.venv-mlserver, as `benchmarks.proxy_serving` does).

Issue 14's performance section, for two layouts started as users start them:

- default:    `mrm up` with its defaults: SQLite in MRM_HOME; the supervisor and its
              children store (ledger, registry), explain (explain, monitor, HTTP)
              and proxy; tracing on as `mrm up` sets it up (no exporter); REST on
              MRM_PROXY_HTTP_ADDR; every address a free port;
- production: each service its own `mrm serve <service>` process (ledger,
              registry, explain, monitor, proxy) on a fresh PostgreSQL database,
              after the bootstrap `mrm up` would do (tokens, schema, keys).

The model and its three versions are `benchmarks.proxy_serving`'s (a 100-tree
GradientBoostingClassifier on 30 features; 1.0.0 sampled at 1.0, 1.0.1 at 0),
deployed through the registry; MLServer 1.7 serves the scikit-learn model with
its defaults. At each concurrency, one client process (`benchmarks._stack_load`)
measures in turn: the proxy's ServerLive (the floor), the proxy's ModelInfer at
sampling 1.0 and 0, the proxy's REST infer at 1.0, MLServer's ModelInfer and
MLServer's REST infer (asked for `predict` and `predict_proba`, what the proxy
returns). Each cell reports p50, p99, throughput, and the CPU per decision of
every process group. The machine's load average is kept with the results: the
2-core VM is shared, and the client shares it too.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import pandas as pd  # type: ignore[import-untyped,unused-ignore]

from benchmarks._support import (
    RESULTS,
    free_port,
    fresh_pg_database,
    mrm_up,
    save,
    seed_benchmark_token,
    wait_serving,
)
from benchmarks.deploy_steps import build
from benchmarks.proxy_serving import (
    MODEL,
    ROOT,
    VERSIONS,
    deploy,
    descendants,
    mlserver_repo,
    mlserver_venv,
    process,
    wait_ready,
)
from mrm.oip.v2 import grpc_predict_v2_pb2 as pb
from mrm.oip.v2 import grpc_predict_v2_pb2_grpc as pbg

LAYOUTS = ("default", "production")
TARGETS = {
    "rps_vs_mlserver": ">= 2.5",
    "p99_vs_mlserver": "<= 0.5",
    "rps_sampled_vs_unsampled": ">= 0.9",
    "rest_rps_vs_mlserver_rest": ">= 2.0",
}


@dataclass
class Layout:
    proxy_addr: str
    proxy_http: str
    cpu: dict[str, list[int]]


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="benchmarks.serving_stacks", description=__doc__)
    p.add_argument("--layouts", default=",".join(LAYOUTS), help="comma-separated: %(default)s")
    p.add_argument("--concurrency", default="1,16,64", help="comma-separated callers")
    p.add_argument("--seconds", type=float, default=5.0, help="measured load per cell")
    p.add_argument("--warmup", type=float, default=1.0, help="load before each cell's measure")
    p.add_argument("--proxy-workers", type=int, default=1, help="MRM_PROXY_WORKERS")
    args = p.parse_args(argv)
    args.layouts = [x for x in args.layouts.split(",") if x]
    if unknown := set(args.layouts) - set(LAYOUTS):
        p.error(f"--layouts: unknown {sorted(unknown)} (want {', '.join(LAYOUTS)})")
    args.concurrency = [int(x) for x in args.concurrency.split(",") if x]
    return args


def _addrs(workers: int) -> dict[str, str]:
    """Every listening address a free port, so nothing clashes with a stack already up."""

    def addr() -> str:
        return f"127.0.0.1:{free_port()}"

    return {
        "MRM_PROXY_ADDR": addr(),
        "MRM_PROXY_HTTP_ADDR": addr(),
        "MRM_PROXY_METRICS_ADDR": "127.0.0.1:0",
        "MRM_MONITOR_ADDR": addr(),
        "MRM_MONITOR_METRICS_ADDR": addr(),
        "MRM_PROXY_WORKERS": str(workers),
        "MRM_REUSE_PORT": "1",
        "MRM_LOG_LEVEL": "WARNING",
    }


def _group(pid: int) -> str:
    """Which supervisor child a process is, from its `mrm serve --supervised …` line; the
    proxy's audit shipper process (MRM_PROXY_SHIPPER=process) is a group of its own."""
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return ""
    if b"mrm.proxy.shipping" in argv:
        return "shipper"
    if b"mrm.proxy.workers" in argv:
        return "proxy"
    services = (
        {a.decode() for a in argv[argv.index(b"--supervised") + 1 :]}
        if (b"--supervised" in argv)
        else set()
    )
    if "ledger" in services:
        return "store"
    if "explain" in services:
        return "explain"
    return "proxy" if "proxy" in services else ""


@contextmanager
def default_layout(tmp: Path, workers: int) -> Iterator[Layout]:
    env = _addrs(workers)
    # MRM_DATABASE_URL empty: the default, SQLite in MRM_HOME
    with mrm_up("", tmp / "default-home", 1, **env) as server:
        deploy(tmp, server.registry_addr)
        wait_proxy(env["MRM_PROXY_ADDR"], workers)
        supervisor = server.pids[0]
        cpu: dict[str, list[int]] = {"supervisor": [supervisor]}
        for pid in descendants(supervisor):  # every process, by its own command line
            name = _group(pid)
            if name:
                cpu.setdefault(name, []).append(pid)
        cpu.setdefault("shipper", [])
        yield Layout(env["MRM_PROXY_ADDR"], env["MRM_PROXY_HTTP_ADDR"], cpu)


@contextmanager
def production_layout(tmp: Path, workers: int) -> Iterator[Layout]:
    from mrm.core.settings import Settings
    from mrm.supervisor import bootstrap

    home = tmp / "production-home"
    with fresh_pg_database() as url, ExitStack() as stack:
        seed_benchmark_token(home)
        services = ("ledger", "registry", "explain", "monitor")
        env = os.environ | _addrs(workers) | {"MRM_HOME": str(home), "MRM_DATABASE_URL": url}
        env |= {f"MRM_{s.upper()}_ADDR": f"127.0.0.1:{free_port()}" for s in services}
        env["MRM_HTTP_ADDR"] = f"127.0.0.1:{free_port()}"
        bootstrap(Settings(home=home, database_url=url))
        mrm = str(Path(sys.executable).with_name("mrm"))
        cpu: dict[str, list[int]] = {"shipper": []}
        for name in (*services, "proxy"):
            proc = stack.enter_context(
                process([mrm, "serve", name], env, tmp / f"production-{name}.log")
            )
            cpu[name] = [proc.pid]
            if name != "proxy":  # the proxy is SERVING once it has models: wait_proxy
                wait_serving(env[f"MRM_{name.upper()}_ADDR"])
        deploy(tmp, env["MRM_REGISTRY_ADDR"])
        wait_proxy(env["MRM_PROXY_ADDR"], workers)
        for pid in descendants(cpu["proxy"][0]):
            cpu["shipper" if _group(pid) == "shipper" else "proxy"].append(pid)
        cpu["postgres"] = []  # found by name during each cell
        yield Layout(env["MRM_PROXY_ADDR"], env["MRM_PROXY_HTTP_ADDR"], cpu)


def wait_proxy(addr: str, workers: int) -> None:
    for _ in range(8 * workers):  # every worker has loaded every version
        for version in VERSIONS.values():
            wait_ready(addr, MODEL, version)


def targets(layout: Layout, ml_grpc: str, ml_http: str, row: list[float]) -> list[dict[str, Any]]:
    with grpc.insecure_channel(layout.proxy_addr) as channel:
        meta = pbg.GRPCInferenceServiceStub(channel).ModelMetadata(
            pb.ModelMetadataRequest(name=MODEL)
        )
    onnx_input = meta.inputs[0].name
    proxy = {"kind": "grpc", "addr": layout.proxy_addr, "rpc": "infer", "model": MODEL}
    proxy["input"] = onnx_input
    body = {
        "inputs": [{"name": onnx_input, "shape": [1, 30], "datatype": "FP32", "data": row}],
        "parameters": {"subject_id": "bench-subject"},
    }
    ml_outputs = ["predict", "predict_proba"]
    sampled = VERSIONS["sampled"]
    return [
        {"name": "floor", "kind": "grpc", "addr": layout.proxy_addr, "rpc": "live"},
        proxy | {"name": "grpc_sampled", "version": sampled},
        proxy | {"name": "grpc_unsampled", "version": VERSIONS["unsampled"]},
        {
            "name": "rest_sampled",
            "kind": "rest",
            "url": f"http://{layout.proxy_http}/v2/models/{MODEL}/versions/{sampled}/infer",
            "body": body,
        },
        {
            "name": "mlserver_grpc",
            "kind": "grpc",
            "addr": ml_grpc,
            "rpc": "infer",
            "model": MODEL,
            "input": "input-0",
            "outputs": ml_outputs,
        },
        {
            "name": "mlserver_rest",
            "kind": "rest",
            "url": f"http://{ml_http}/v2/models/{MODEL}/infer",
            "body": body | {"outputs": [{"name": n} for n in ml_outputs]},
        },
    ]


def ratios(m: dict[str, dict[str, dict[str, float]]]) -> dict[str, dict[str, float]]:
    def r(a: float, b: float) -> float:
        return round(a / b, 3) if b else float("nan")

    out = {}
    for c in m["grpc_sampled"]:
        s1, s0, ml = m["grpc_sampled"][c], m["grpc_unsampled"][c], m["mlserver_grpc"][c]
        out[c] = {
            "rps_vs_mlserver": r(s1["throughput_rps"], ml["throughput_rps"]),
            "p99_vs_mlserver": r(s1["p99_us"], ml["p99_us"]),
            "p50_vs_mlserver": r(s1["p50_us"], ml["p50_us"]),
            "rps_sampled_vs_unsampled": r(s1["throughput_rps"], s0["throughput_rps"]),
            "rest_rps_vs_mlserver_rest": r(
                m["rest_sampled"][c]["throughput_rps"], m["mlserver_rest"][c]["throughput_rps"]
            ),
            "rps_vs_floor": r(s1["throughput_rps"], m["floor"][c]["throughput_rps"]),
        }
    return out


def met(name: str, value: float) -> bool:
    op, bound = TARGETS[name].split()
    return value >= float(bound) if op == ">=" else value <= float(bound)


def markdown(result: dict[str, Any]) -> str:
    load = "; ".join(
        f"{name} {v['before'][0]:.1f} before, {v['after'][0]:.1f} after"
        for name, v in result["load_average"].items()
    )
    lines = [
        "# Serving stacks (`benchmarks.serving_stacks`)",
        "",
        f"{result['cpu_count']} cores; 1-minute load average: {load}. "
        f"{result['seconds']:g} s measured per cell after {result['warmup']:g} s of warm-up. "
        "Latency in ms, throughput in requests/s, CPU in ms per decision of each "
        "process group during that cell (`postgres`: every PostgreSQL process on the "
        "machine, others' too).",
        "",
    ]
    for layout, data in result["layouts"].items():
        m = data["measured"]
        groups = list(next(iter(m["grpc_sampled"].values()))["cpu_us_per_request"])
        lines += [f"## {layout}", ""]
        lines.append("| target | c | p50 | p99 | req/s | " + " | ".join(groups) + " |")
        lines.append("|---|---:|---:|---:|---:|" + "---:|" * len(groups))
        for name, cells in m.items():
            for c, v in cells.items():
                cpu = " | ".join(f"{v['cpu_us_per_request'][g] / 1000:.2f}" for g in groups)
                lines.append(
                    f"| {name} | {c} | {v['p50_us'] / 1000:.2f} | {v['p99_us'] / 1000:.2f} "
                    f"| {v['throughput_rps']:.0f} | {cpu} |"
                )
        lines += ["", "| ratio | target | " + " | ".join(f"c={c}" for c in data["ratios"]) + " |"]
        lines.append("|---|---|" + "---:|" * len(data["ratios"]))
        names = next(iter(data["ratios"].values()))
        for name in names:
            cells = []
            for c in data["ratios"]:
                v = data["ratios"][c][name]
                mark = "" if name not in TARGETS else (" ✓" if met(name, v) else " ✗")
                cells.append(f"{v:.2f}{mark}")
            lines.append(f"| {name} | {TARGETS.get(name, '')} | " + " | ".join(cells) + " |")
        lines.append("")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    args = parse(argv)
    mlserver = mlserver_venv()
    result: dict[str, Any] = {
        "model": "GradientBoostingClassifier(100 trees), 30 features, 1 row per request",
        "seconds": args.seconds,
        "warmup": args.warmup,
        "proxy_workers": args.proxy_workers,
        "cpu_count": os.cpu_count(),
        "load_average": {},
        "targets": TARGETS,
        "layouts": {},
    }
    with tempfile.TemporaryDirectory() as d, ExitStack() as stack:
        tmp = Path(d)
        build(tmp)
        model = pd.read_pickle(tmp / "model.pkl")
        frame = pd.read_csv(tmp / "eval.csv").drop(columns=["target"])
        row = frame.iloc[0].to_numpy(np.float32).tolist()
        repo, ml_port = mlserver_repo(tmp, model)
        ml_http = json.loads((repo / "settings.json").read_text())["http_port"]
        ml_env = {k: v for k, v in os.environ.items() if not k.startswith(("MRM_", "VIRTUAL_ENV"))}
        ml = stack.enter_context(
            process([str(mlserver), "start", str(repo)], ml_env, tmp / "ml.log")
        )
        wait_ready(f"127.0.0.1:{ml_port}", MODEL)
        ml_pids = [ml.pid, *descendants(ml.pid)]
        for name in args.layouts:
            start = default_layout if name == "default" else production_layout
            with start(tmp, args.proxy_workers) as layout:
                spec: dict[str, Any] = {
                    "targets": targets(layout, f"127.0.0.1:{ml_port}", f"127.0.0.1:{ml_http}", row),
                    "row": row,
                    "concurrency": args.concurrency,
                    "seconds": args.seconds,
                    "warmup": args.warmup,
                    "cpu": layout.cpu | {"mlserver": ml_pids},
                }
                (tmp / "spec.json").write_text(json.dumps(spec))
                before = [round(x, 2) for x in os.getloadavg()]
                out = subprocess.run(
                    [sys.executable, "-m", "benchmarks._stack_load", str(tmp / "spec.json")],
                    check=True,
                    stdout=subprocess.PIPE,
                    cwd=ROOT,
                )
                after = [round(x, 2) for x in os.getloadavg()]
            m = json.loads(out.stdout)
            result["load_average"][name] = {"before": before, "after": after}
            result["layouts"][name] = {
                "processes": {k: len(v) for k, v in spec["cpu"].items()},
                "measured": m,
                "ratios": ratios(m),
            }
    save("serving_stacks", result)
    (RESULTS / "serving_stacks.md").write_text(markdown(result))
    print(markdown(result))


if __name__ == "__main__":
    main()
