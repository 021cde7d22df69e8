"""The inference proxy against Seldon MLServer 1.7 and its own empty-RPC floor, in one run.

Run: `.venv/bin/python -m benchmarks.proxy_serving` (the first run creates
benchmarks/.venv-mlserver with mlserver and mlserver-sklearn 1.7 from PyPI).

The model: a 100-tree GradientBoostingClassifier on 30 features, deployed
through the registry the way `mrmctl deploy` does (mrm.deploy's prepare and
publish) on a fresh PostgreSQL database, three ways: 1.0.0 sampled at 1.0 (in
production), 1.0.1 sampled at 0, 1.0.2 strict. The proxy runs alone in its own
process with tracing on (real spans, dropped by the exporter); the ledger and
registry run in an `mrm up` process. MLServer serves the original
scikit-learn model (joblib) with its default settings over its gRPC endpoint.
One client process (`benchmarks._oip_load`) measures every server with the
same stubs and the same one-row raw FP32 request, and MLServer is asked for
both `predict` and `predict_proba`, what the proxy returns.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import grpc
import joblib  # type: ignore[import-untyped,unused-ignore]
import numpy as np
import pandas as pd  # type: ignore[import-untyped,unused-ignore]

from benchmarks._support import free_port, fresh_pg_database, mrm_up, save
from benchmarks.deploy_steps import build
from mrm.client.registry import RegistryClient
from mrm.deploy.config import DeployConfig
from mrm.deploy.pipeline import prepare, publish
from mrm.oip.v2 import grpc_predict_v2_pb2 as pb
from mrm.oip.v2 import grpc_predict_v2_pb2_grpc as pbg
from mrm.v1 import registry_pb2

ROOT = Path(__file__).resolve().parents[1]
MLSERVER_VENV = Path(__file__).parent / ".venv-mlserver"
MLSERVER_PINS = [
    "mlserver==1.7.1",
    "mlserver-sklearn==1.7.1",
    "scikit-learn==1.9.1",  # the version the model is trained with here
    "joblib==1.6.0",
    "uvloop==0.21.0",  # 0.22 breaks MLServer 1.7.1's workers (SeldonIO/MLServer#2286)
]
MODEL = "bench"
VERSIONS = {"sampled": "1.0.0", "unsampled": "1.0.1", "strict": "1.0.2"}
# Proxy processes sharing the port (SO_REUSEPORT), each with its own ONNX Runtime
# session and spool and the same subject key: replicas, as `MRM_REUSE_PORT` allows.
WORKERS = int(os.environ.get("MRM_BENCH_PROXY_WORKERS", "1"))


def mlserver_venv() -> Path:
    """MLServer in a virtualenv of its own: its pins must not touch the project's."""
    exe = MLSERVER_VENV / "bin" / "mlserver"
    if not exe.exists():
        subprocess.run([sys.executable, "-m", "venv", str(MLSERVER_VENV)], check=True)
        pip = [str(MLSERVER_VENV / "bin" / "pip"), "install", "-q", *MLSERVER_PINS]
        subprocess.run(pip, check=True)
    return exe


def wait_ready(addr: str, model: str = "", version: str = "", timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    # A connection of its own: with several processes on the port, each call may
    # reach another one.
    with grpc.insecure_channel(addr, options=[("grpc.use_local_subchannel_pool", 1)]) as channel:
        stub = pbg.GRPCInferenceServiceStub(channel)
        while time.monotonic() < deadline:
            try:
                if model:
                    req = pb.ModelReadyRequest(name=model, version=version)
                    if stub.ModelReady(req, timeout=2).ready:
                        return
                elif stub.ServerLive(pb.ServerLiveRequest(), timeout=2).live:
                    return
            except grpc.RpcError:
                pass
            time.sleep(0.2)
    raise TimeoutError(f"{addr}: {model or 'server'} {version} never became ready")


@contextmanager
def process(args: list[str], env: dict[str, str], log: Path) -> Iterator[subprocess.Popen[bytes]]:
    with log.open("wb") as out:
        proc = subprocess.Popen(args, env=env, stdout=out, stderr=subprocess.STDOUT, cwd=ROOT)
    try:
        yield proc
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def deploy(tmp: Path, registry_addr: str) -> None:
    cfg = DeployConfig(
        model_path=tmp / "model.pkl",
        version=VERSIONS["sampled"],
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
    with RegistryClient(registry_addr) as reg:
        publish(cfg, prepare(cfg, lambda _s, _d: None, env={}), reg, lambda _s, _d: None)
        first = reg.get_version(MODEL, VERSIONS["sampled"])
        refs = [registry_pb2.ArtifactRef(role=a.role, sha256=a.sha256) for a in first.artifacts]
        for key, rate, strict in (("unsampled", 0.0, False), ("strict", 1.0, True)):
            version = VERSIONS[key]
            reg.register(
                registry_pb2.ModelVersion(
                    model_name=MODEL,
                    version=version,
                    artifacts=refs,
                    sample_rate=rate,
                    strict=strict,
                )
            )
            reg.promote(MODEL, version, "staging")


def mlserver_repo(tmp: Path, model: Any) -> tuple[Path, int]:
    repo = tmp / "mlserver"
    (repo / MODEL).mkdir(parents=True)
    joblib.dump(model, repo / MODEL / "model.joblib")
    (repo / MODEL / "model-settings.json").write_text(
        json.dumps(
            {
                "name": MODEL,
                "implementation": "mlserver_sklearn.SKLearnModel",
                "parameters": {"uri": "./model.joblib"},
            }
        )
    )
    port = free_port()
    settings = {"grpc_port": port, "http_port": free_port(), "metrics_port": free_port()}
    (repo / "settings.json").write_text(json.dumps(settings))
    return repo, port


def descendants(pid: int) -> list[int]:
    """Every process under `pid` (MLServer serves from worker processes)."""
    parents: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            ppid = int(stat.read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError):
            continue
        parents.setdefault(ppid, []).append(int(stat.parent.name))
    found, todo = [], [pid]
    while todo:
        children = parents.get(todo.pop(), [])
        found += children
        todo += children
    return found


def ratio(a: float, b: float) -> float:
    return round(a / b, 3)


def main() -> None:
    mlserver = mlserver_venv()
    with tempfile.TemporaryDirectory() as d, fresh_pg_database() as url, ExitStack() as stack:
        tmp = Path(d)
        build(tmp)
        model = pd.read_pickle(tmp / "model.pkl")
        row = pd.read_csv(tmp / "eval.csv").drop(columns=["target"]).iloc[0].to_numpy(np.float32)
        server = stack.enter_context(mrm_up(url, tmp / "home"))
        deploy(tmp, server.registry_addr)
        proxy_addr = f"127.0.0.1:{free_port()}"
        env = {
            **os.environ,
            "MRM_PROXY_ADDR": proxy_addr,
            "MRM_LEDGER_ADDR": server.addr,
            "MRM_REGISTRY_ADDR": server.registry_addr,
            "MRM_LOG_LEVEL": "WARNING",
            "MRM_REUSE_PORT": "1",
            "MRM_SUBJECT_KEY_FILE": str(tmp / "subject.key"),
            # the stack's credentials: its tokens file, and the proxy's own token
            "MRM_AUTH_TOKENS_FILE": str(tmp / "home" / "tokens.json"),
            "MRM_PROXY_TOKEN_FILE": str(tmp / "home" / "proxy.token"),
        }
        proxy_pids = []
        for i in range(WORKERS):
            proc = stack.enter_context(
                process(
                    [sys.executable, "-m", "benchmarks._proxy_process"],
                    env | {"MRM_HOME": str(tmp / f"proxy-home-{i}")},
                    tmp / f"proxy-{i}.log",
                )
            )
            proxy_pids.append(proc.pid)
            if i == 0:  # the first creates the subject key the others share
                wait_ready(proxy_addr, MODEL, VERSIONS["sampled"])
        for _ in range(8 * WORKERS):  # every process has loaded every version
            for version in VERSIONS.values():
                wait_ready(proxy_addr, MODEL, version)
        repo, ml_port = mlserver_repo(tmp, model)
        ml_addr = f"127.0.0.1:{ml_port}"
        ml_env = {k: v for k, v in os.environ.items() if not k.startswith(("MRM_", "VIRTUAL_ENV"))}
        ml = stack.enter_context(
            process([str(mlserver), "start", str(repo)], ml_env, tmp / "ml.log")
        )
        wait_ready(ml_addr, MODEL)
        onnx_input = "X"  # skl2onnx's name for a tensor-mode model
        with grpc.insecure_channel(proxy_addr) as channel:
            meta = pbg.GRPCInferenceServiceStub(channel).ModelMetadata(
                pb.ModelMetadataRequest(name=MODEL)
            )
            onnx_input = meta.inputs[0].name
        proxy = {"addr": proxy_addr, "rpc": "infer", "model": MODEL, "input": onnx_input}
        targets = [
            {"name": "floor", "addr": proxy_addr, "rpc": "live"},
            proxy | {"name": "proxy", "version": VERSIONS["sampled"]},
            proxy | {"name": "proxy_unsampled", "version": VERSIONS["unsampled"]},
            proxy | {"name": "proxy_strict", "version": VERSIONS["strict"]},
            {
                "name": "mlserver",
                "addr": ml_addr,
                "rpc": "infer",
                "model": MODEL,
                "input": "input-0",
                "outputs": ["predict", "predict_proba"],
            },
        ]
        spec = {
            "targets": targets,
            "row": row.tolist(),
            "latency_requests": int(os.environ.get("MRM_BENCH_REQUESTS", "2000")),
            "warmup": 200,
            "seconds": float(os.environ.get("MRM_BENCH_SECONDS", "5")),
            "concurrency": 16,
            "rounds": int(os.environ.get("MRM_BENCH_ROUNDS", "3")),
            "cpu": {
                "proxy": proxy_pids,
                "ledger_and_registry": server.pids,
                "postgres": [],  # found by name during each phase
                "mlserver": [ml.pid, *descendants(ml.pid)],
            },
        }
        (tmp / "spec.json").write_text(json.dumps(spec))
        out = subprocess.run(
            [sys.executable, "-m", "benchmarks._oip_load", str(tmp / "spec.json")],
            check=True,
            capture_output=True,
            cwd=ROOT,
        )
        m = json.loads(out.stdout)
    p50 = {k: v["p50_us"] for k, v in m.items()}
    rps = {k: v["throughput_rps"] for k, v in m.items()}
    save(
        "proxy_serving" if WORKERS == 1 else f"proxy_serving_{WORKERS}_workers",
        {
            "model": "GradientBoostingClassifier(100 trees), 30 features, 1 row per request",
            "proxy_workers": WORKERS,
            "measured": m,
            "ratios": {
                "p50_c1_vs_mlserver": ratio(p50["proxy"], p50["mlserver"]),
                "p50_c1_vs_floor": ratio(p50["proxy"], p50["floor"]),
                "rps_c16_vs_mlserver": ratio(rps["proxy"], rps["mlserver"]),
                "rps_c16_vs_floor": ratio(rps["proxy"], rps["floor"]),
                "rps_sampled_vs_unsampled": ratio(rps["proxy"], rps["proxy_unsampled"]),
                "p50_strict_vs_nonstrict": ratio(p50["proxy_strict"], p50["proxy"]),
                "rps_strict_vs_nonstrict": ratio(rps["proxy_strict"], rps["proxy"]),
            },
            "targets": {
                "p50_c1_vs_mlserver": "<= 0.5",
                "p50_c1_vs_floor": "<= 1.35",
                "rps_c16_vs_mlserver": ">= 2.5",
                "rps_c16_vs_floor": ">= 0.75",
                "rps_sampled_vs_unsampled": ">= 0.9",
            },
        },
    )


if __name__ == "__main__":
    main()
