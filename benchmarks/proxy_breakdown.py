"""Where the proxy's distance to its ServerLive floor goes, one layer at a time.

Run: `.venv/bin/python -m benchmarks.proxy_breakdown`.

The same model as `benchmarks.proxy_serving` (a 100-tree gradient-boosting
classifier on 30 features, one raw FP32 row per request) and the same load
client, against the proxy's gRPC server (`mrm.core.server.GrpcServer`, its
interceptors included) hosting `ModelInfer` four ways, each in a process of its
own and each compared with `ServerLive` on that same process in the same run:

- transport: a prebuilt response of the same size; what gRPC and protobuf cost;
- inference: the proxy's decode, finiteness check, ONNX Runtime and encode, and
  nothing else;
- traced: the proxy's servicer with tracing on (real spans, dropped by the
  exporter) and sampling 0: stamping and the span on top of inference;
- sampled: the same at sampling 1.0, the records built and acknowledged in the
  proxy's shipper thread but never sent (no ledger, no database).

No ledger and no PostgreSQL run here, so the cores are shared by the client and
the server only; `benchmarks.proxy_serving` measures the whole path.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd  # type: ignore[import-untyped,unused-ignore]

from benchmarks._oip_load import run
from benchmarks._support import free_port, save
from benchmarks.deploy_steps import build as build_data
from benchmarks.proxy_serving import wait_ready

MODES = tuple(os.environ.get("MRM_BENCH_MODES", "transport,inference,traced,sampled").split(","))
ROUNDS = int(os.environ.get("MRM_BENCH_ROUNDS", "3"))
SECONDS = float(os.environ.get("MRM_BENCH_SECONDS", "4"))


def _onnx(tmp: Path) -> tuple[bytes, bytes, np.ndarray[Any, Any]]:
    from skl2onnx import to_onnx  # type: ignore[import-untyped,unused-ignore]

    model = pd.read_pickle(tmp / "model.pkl")
    rows = pd.read_csv(tmp / "eval.csv").drop(columns=["target"]).to_numpy(np.float32)
    onx = to_onnx(model, rows[:1], options={id(model): {"zipmap": False}})
    features = [{"name": f"f{i:02d}", "position": i, "dtype": "float"} for i in range(30)]
    schema = json.dumps({"mode": "tensor", "features": features}).encode()
    return onx.SerializeToString(), schema, rows[0]


def serve(mode: str, port: int, workdir: Path) -> None:
    """One server process: `mode` behind ModelInfer, ServerLive as always."""
    from opentelemetry import trace
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    from benchmarks._proxy_process import DropExporter
    from mrm.core.auth import Authenticator, ServerAuth
    from mrm.core.auth.config import AuthConfig
    from mrm.core.server import GrpcServer, Service
    from mrm.oip.v2 import grpc_predict_v2_pb2 as pb
    from mrm.oip.v2 import grpc_predict_v2_pb2_grpc as pbg
    from mrm.proxy.audit import Stamper, prediction_records
    from mrm.proxy.models import ModelTable, build
    from mrm.proxy.server import InferenceServicer
    from mrm.proxy.shipper import Delivery, Shipper
    from mrm.proxy.spool import Spool
    from mrm.proxy.tensors import check_finite, decode_inputs, encode_outputs

    provider = TracerProvider()
    provider.add_span_processor(BatchSpanProcessor(DropExporter()))
    trace.set_tracer_provider(provider)
    data, schema = (workdir / "model.onnx").read_bytes(), (workdir / "schema.json").read_bytes()
    rate = 1.0 if mode == "sampled" else 0.0
    model = build("bench", "1", "PRODUCTION", rate, data, "0" * 64, schema)

    class Table:
        table = ModelTable().with_model(model)
        ready = asyncio.Event()

    if mode == "sampled":  # the shipper builds and settles records; nothing is sent
        import mrm.proxy.shipper as shipper_module

        def acknowledge(client: Any, records: list[Any]) -> Delivery:
            return Delivery(acked=[r.record_id for r in records])

        shipper_module.deliver = acknowledge
    sink = Shipper(
        f"127.0.0.1:{free_port()}",
        Spool(workdir / f"spool-{mode}.db", 1000),
        build=prediction_records,
    )
    servicer = InferenceServicer(Table(), Stamper(b"k" * 32), sink)
    response = pb.ModelInferResponse(model_name="bench", model_version="1")
    response.parameters["trace_id"].string_param = "0" * 32
    response.raw_output_contents.extend([b"\0" * 8, b"\0" * 8])

    async def transport(request: Any, context: Any) -> Any:
        return response

    async def inference(request: Any, context: Any) -> Any:
        arrays = decode_inputs(request, model.inputs, model="bench 1")
        check_finite(arrays, allow_nan=False)
        out = pb.ModelInferResponse(model_name="bench", model_version="1", id=request.id)
        encode_outputs(out, model.predict(arrays), raw=True)
        return out

    if mode == "transport":
        servicer.ModelInfer = transport  # type: ignore[method-assign]
    elif mode == "inference":
        servicer.ModelInfer = inference  # type: ignore[method-assign]

    async def ready() -> bool:
        return True

    async def run() -> None:
        service = Service(
            name="inference.GRPCInferenceService",
            register=lambda s: pbg.add_GRPCInferenceServiceServicer_to_server(servicer, s),
            ready=ready,
            traces_itself=True,
        )
        server = GrpcServer(
            f"127.0.0.1:{port}",
            [service],
            # Only ModelInfer and ServerLive are measured; neither needs credentials.
            auth=ServerAuth(
                Authenticator.create(enabled=False, tokens_file=workdir, config=AuthConfig())
            ),
            grace=1,
            health_interval=5,
            max_message_bytes=1 << 22,
        )
        await server.start()
        await asyncio.Event().wait()

    asyncio.run(run())


def main() -> None:
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        build_data(tmp)
        onnx_bytes, schema, first = _onnx(tmp)
        (tmp / "model.onnx").write_bytes(onnx_bytes)
        (tmp / "schema.json").write_bytes(schema)
        measured: dict[str, Any] = {}
        for mode in MODES:
            port = free_port()
            args = [sys.executable, "-m", "benchmarks.proxy_breakdown", "serve", mode]
            proc = subprocess.Popen([*args, str(port), str(tmp)])
            try:
                addr = f"127.0.0.1:{port}"
                wait_ready(addr)
                infer = {"rpc": "infer", "model": "bench", "input": "X"}
                spec = {
                    "targets": [
                        {"name": "live", "addr": addr, "rpc": "live"},
                        {"name": "infer", "addr": addr, **infer},
                    ],
                    "row": first.tolist(),
                    "latency_requests": 2000,
                    "warmup": 200,
                    "seconds": SECONDS,
                    "concurrency": 16,
                    "rounds": ROUNDS,
                }
                measured[mode] = asyncio.run(run(spec))
            finally:
                proc.kill()
                proc.wait()
    save(
        "proxy_breakdown",
        {
            "model": "GradientBoostingClassifier(100 trees), 30 features, 1 row per request",
            "measured": measured,
            "ratios_vs_own_floor": {
                mode: {
                    "p50": round(m["infer"]["p50_us"] / m["live"]["p50_us"], 3),
                    "throughput": round(
                        m["infer"]["throughput_rps"] / m["live"]["throughput_rps"], 3
                    ),
                }
                for mode, m in measured.items()
            },
        },
    )


if __name__ == "__main__":
    if sys.argv[1:2] == ["serve"]:
        serve(sys.argv[2], int(sys.argv[3]), Path(sys.argv[4]))
    else:
        main()
