"""`mrmctl why --subject` at 10,000 and at 1,000,000 PREDICTION records, and the
server time of one ExplainRecord for a 100-tree, 30-feature gradient-boosting model.

Run: `.venv/bin/python -m benchmarks.why_subject [--big N] [--small N] [--runs K]`.

1. `mrm up` (subprocess) on a fresh PostgreSQL database; a 100-tree GBT on 30
   features is deployed the way `mrmctl deploy` does it (baseline included), and
   three decisions about one subject go through the inference proxy.
2. The ledger is filled with synthetic PREDICTION records (other subjects) through
   AppendRecords in batches of 4,096, first to `--small` records, then to `--big`.
3. At each size: the median of `mrmctl why --subject` end to end (in-process
   CliRunner: ListDecisions, one ExplainRecord per decision, a fresh checkpoint
   and the client-side inclusion proofs), and of ListDecisions alone. The ratio
   big/small shows whether the subject index keeps it independent of the size.
4. ExplainRecord: the client-observed median over gRPC, and the server's own work
   (the service's domain call, `Explain.explain_record`, run in this process
   against the same ledger and registry), median.
The query plan PostgreSQL chooses for the subject lookup is saved with the results.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import pandas as pd  # type: ignore[import-untyped,unused-ignore]
import psycopg
from click.testing import CliRunner
from sklearn.ensemble import (  # type: ignore[import-untyped,unused-ignore]
    GradientBoostingClassifier,
)

from benchmarks._support import free_port, fresh_pg_database, mrm_up, prediction_body, save, uuid7
from mrm.cli.main import mrmctl
from mrm.client.explain import ExplainClient
from mrm.client.ledger import LedgerClient, Record
from mrm.client.registry import RegistryClient
from mrm.deploy.config import DeployConfig
from mrm.deploy.pipeline import prepare, publish
from mrm.explain.decisions import Decisions
from mrm.explain.evidence import Evidence
from mrm.explain.service import Explain
from mrm.oip.v2 import grpc_predict_v2_pb2 as oip
from mrm.oip.v2 import grpc_predict_v2_pb2_grpc as oip_grpc
from mrm.proxy.audit import Stamper
from mrm.v1 import ledger_pb2

SUBJECT = "applicant-benchmark-7"
FEATURES = 30
BATCH = 4096
THREADS = 3


def median_ms(fn: Callable[[], object], runs: int) -> tuple[float, list[float]]:
    fn()  # warm: channels, caches, the explainer
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1000)
    return round(statistics.median(times), 2), [round(t, 2) for t in times]


def project(tmp: Path) -> tuple[Any, pd.DataFrame]:
    rng = np.random.default_rng(0)
    X = pd.DataFrame(rng.normal(size=(3000, FEATURES)), columns=[f"f{i:02d}" for i in range(30)])
    y = ((X.iloc[:, :5].sum(axis=1) + rng.normal(0, 1, len(X))) > 0).astype(int)
    model = GradientBoostingClassifier(n_estimators=100, max_depth=3, random_state=0)
    model.fit(X.iloc[:2000], y.iloc[:2000])
    import pickle

    (tmp / "model.pkl").write_bytes(pickle.dumps(model))
    X.iloc[2000:].assign(target=y.iloc[2000:]).to_csv(tmp / "eval.csv", index=False)
    return model, X.iloc[2000:]


def deploy(tmp: Path, registry_addr: str, explain_addr: str) -> None:
    cfg = DeployConfig(
        model_path=tmp / "model.pkl",
        version="1.0.0",
        name="gbt-30",
        eval_data=tmp / "eval.csv",
        target="target",
        dataset_id="sha256:" + "0" * 64,
        training_data=None,
        source_commit="0" * 40,
        stage="production",
        sample_rate=1.0,
        fidelity_tolerance=1e-4,
    )
    with RegistryClient(registry_addr, timeout=120) as reg, ExplainClient(explain_addr) as ex:
        publish(cfg, prepare(cfg, lambda _s, _d: None, env={}), reg, lambda _s, _d: None, ex)


def decide(proxy_addr: str, rows: np.ndarray[Any, Any]) -> list[str]:
    ids = []
    with grpc.insecure_channel(proxy_addr) as channel:
        stub = oip_grpc.GRPCInferenceServiceStub(channel)
        deadline = time.monotonic() + 120
        while not stub.ModelReady(oip.ModelReadyRequest(name="gbt-30")).ready:
            assert time.monotonic() < deadline, "the proxy never loaded the model"
            time.sleep(0.1)
        name = stub.ModelMetadata(oip.ModelMetadataRequest(name="gbt-30")).inputs[0].name
        for row in rows:
            array = np.asarray(row, np.float32).reshape(1, -1)
            req = oip.ModelInferRequest(
                model_name="gbt-30",
                inputs=[
                    oip.ModelInferRequest.InferInputTensor(
                        name=name, datatype="FP32", shape=list(array.shape)
                    )
                ],
                raw_input_contents=[array.tobytes()],
            )
            req.parameters["subject_id"].string_param = SUBJECT
            ids.append(stub.ModelInfer(req).parameters["mrm_record_id"].string_param)
    return ids


def wait_recorded(ledger_addr: str, ids: list[str]) -> None:
    with LedgerClient(ledger_addr) as led:
        for rid in ids:
            deadline = time.monotonic() + 60
            while True:
                try:
                    led.get_record(rid)
                    break
                except Exception:
                    assert time.monotonic() < deadline, "the proxy never shipped a decision"
                    time.sleep(0.1)


def leaves(ledger_addr: str) -> int:
    with LedgerClient(ledger_addr) as led:
        return int(led.checkpoint(refresh=True).tree_size)


def fill(ledger_addr: str, start: int, stop: int) -> float:
    """Append synthetic PREDICTION records numbered start..stop-1; records/s."""
    bodies = [prediction_body(i) for i in range(20_014)]
    chunks = list(range(start, stop, BATCH))
    lock = threading.Lock()
    t0 = time.perf_counter()

    def work() -> None:
        with LedgerClient(ledger_addr, timeout=300) as led:
            while True:
                with lock:
                    if not chunks:
                        return
                    first = chunks.pop()
                batch = [
                    Record(
                        record_id=uuid7(),
                        kind=ledger_pb2.RECORD_KIND_PREDICTION,
                        model_name="gbt-30",
                        model_version="1.0.0",
                        subject=f"hmac-sha256:{i % 50_000:064x}",
                        body_json=bodies[i % len(bodies)],
                    )
                    for i in range(first, min(first + BATCH, stop))
                ]
                led.append(batch)

    threads = [threading.Thread(target=work) for _ in range(THREADS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    took = time.perf_counter() - t0
    print(f"filled {stop - start} records in {took:.1f} s", flush=True)
    return round((stop - start) / took)


def why(ledger_addr: str, registry_addr: str, explain_addr: str) -> Callable[[], object]:
    def run() -> object:
        done = CliRunner().invoke(
            mrmctl,
            [
                "--ledger-addr",
                ledger_addr,
                "--registry-addr",
                registry_addr,
                "why",
                "--subject",
                SUBJECT,
                "--explain-addr",
                explain_addr,
                "--output",
                "json",
            ],
        )
        assert done.exit_code == 0, done.output
        docs = json.loads(done.stdout)
        assert len(docs) == 3, docs
        assert all(d["proof_verified"] for d in docs), docs
        return docs

    return run


def analyze(database_url: str) -> None:
    """What autovacuum does after a bulk load: fresh planner statistics."""
    url = database_url.replace("postgresql+psycopg://", "postgresql://", 1)
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("ANALYZE ledger_leaves")


def plan(database_url: str, ref: str) -> list[str]:
    url = database_url.replace("postgresql+psycopg://", "postgresql://", 1)
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "EXPLAIN ANALYZE SELECT leaf_index, body FROM ledger_leaves "
            "WHERE kind = 'PREDICTION' AND subject = %s ORDER BY leaf_index DESC LIMIT 101",
            (ref,),
        ).fetchall()
    return [r[0] for r in rows]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--big", type=int, default=1_000_000)
    parser.add_argument("--small", type=int, default=10_000)
    parser.add_argument("--runs", type=int, default=15)
    args = parser.parse_args()
    result: dict[str, Any] = {"model": "GradientBoostingClassifier, 100 trees, 30 features"}
    with tempfile.TemporaryDirectory() as tmp_s, fresh_pg_database() as url:
        tmp = Path(tmp_s)
        explain_addr = f"127.0.0.1:{free_port()}"
        proxy_addr = f"127.0.0.1:{free_port()}"
        env = {
            "MRM_EXPLAIN_ADDR": explain_addr,
            "MRM_PROXY_ADDR": proxy_addr,
            "MRM_HTTP_ADDR": f"127.0.0.1:{free_port()}",
        }
        with mrm_up(url, tmp / "home", 1, **env) as server:
            _, X = project(tmp)
            deploy(tmp, server.registry_addr, explain_addr)
            ids = decide(proxy_addr, X.iloc[:3].to_numpy())
            wait_recorded(server.addr, ids)
            ref = Stamper(bytes.fromhex((tmp / "home" / "subject.key").read_text())).subject_ref(
                SUBJECT
            )
            run_why = why(server.addr, server.registry_addr, explain_addr)
            client = ExplainClient(explain_addr)
            led, reg = LedgerClient(server.addr), RegistryClient(server.registry_addr)
            domain = Explain(Evidence(led, reg), Decisions(Evidence(led, reg), Stamper(b"x")))
            sizes: dict[str, Any] = {}
            for label, target in (("small", args.small), ("big", args.big)):
                have = leaves(server.addr)
                rate = fill(server.addr, have, target) if target > have else None
                size = leaves(server.addr)
                stale_plan = plan(url, ref)
                analyze(url)
                why_ms, why_all = median_ms(run_why, args.runs)
                list_ms, _ = median_ms(lambda: list(client.decisions(SUBJECT)), args.runs * 4)
                sizes[label] = {
                    "ledger_leaves": size,
                    "fill_records_per_s": rate,
                    "why_subject_median_ms": why_ms,
                    "why_subject_runs_ms": why_all,
                    "list_decisions_median_ms": list_ms,
                    "subject_query_plan_before_analyze": stale_plan,
                    "subject_query_plan": plan(url, ref),
                }
                print(label, json.dumps(sizes[label], indent=2), flush=True)
            explain_rpc, _ = median_ms(lambda: client.explain_record(ids[0]), args.runs * 2)
            explain_server, _ = median_ms(lambda: domain.explain_record(ids[0]), args.runs * 2)
            client.close()
            led.close()
            reg.close()
    result |= {
        "sizes": sizes,
        "why_subject_ratio_big_over_small": round(
            sizes["big"]["why_subject_median_ms"] / sizes["small"]["why_subject_median_ms"], 3
        ),
        "list_decisions_ratio_big_over_small": round(
            sizes["big"]["list_decisions_median_ms"] / sizes["small"]["list_decisions_median_ms"], 3
        ),
        "explain_record_rpc_median_ms": explain_rpc,
        "explain_record_server_median_ms": explain_server,
        "notes": (
            "why --subject explains the subject's 3 decisions (3 ExplainRecord calls, each "
            "appending an EXPLANATION record), signs a fresh checkpoint and verifies 6 "
            "inclusion proofs on the client. The server median is Explain.explain_record "
            "(fetch record and version, download and sha256-check three artifacts, re-run, "
            "SHAP, append) run in-process against the same services."
        ),
    }
    save("why_subject", result)


if __name__ == "__main__":
    main()
