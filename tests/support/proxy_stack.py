"""Driving the proxy's delivery end to end: a ledger that can be stopped and restarted
on the same port, a proxy in a process of its own, and sampled inference load."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import grpc
import numpy as np

from mrm.client.proxy import ProxyClient, ProxyStatus
from mrm.core.server import GrpcServer
from mrm.core.settings import Settings
from mrm.ledger.app import ledger_service
from mrm.oip.v2 import grpc_predict_v2_pb2 as oip
from mrm.oip.v2 import grpc_predict_v2_pb2_grpc as oip_grpc
from mrm.stack import BackgroundStack
from tests.conftest import RunningLedger
from tests.support.auth import seed_service_home, seed_test_token
from tests.support.credit import tree_model
from tests.support.inference import deployed, infer_request
from tests.support.waiting import free_port, wait_until

__all__ = ["free_port", "wait_until"]
MODEL = "gbt"


def stack_with_ledger_on(
    home: Path, port: int, database_url: str, **settings: Any
) -> RunningLedger:
    """The whole stack, its ledger on a fixed port (so a restarted one is found again)."""
    values: dict[str, Any] = {
        "home": home,
        "database_url": database_url,
        "ledger_addr": f"127.0.0.1:{port}",
        "registry_addr": "127.0.0.1:0",
        "proxy_addr": "127.0.0.1:0",
        "proxy_metrics_addr": "127.0.0.1:0",
        "shutdown_grace": 1.0,
        "health_interval": 0.2,
        "auth_record_tokens": False,
    }
    for optional in ("explain_addr", "http_addr"):  # services that not every stack runs
        if optional in Settings.model_fields:
            values[optional] = "127.0.0.1:0"
    cfg = Settings(**(values | settings))
    seed_test_token(cfg.resolved_tokens_file())
    bg = BackgroundStack(cfg)
    return RunningLedger(addr=f"127.0.0.1:{port}", settings=cfg, stack=bg)


class LedgerSwitch:
    """Stops the stack's ledger server and starts a new one on the same port and database.
    The registry and the proxy keep running: only the ledger goes away."""

    def __init__(self, running: RunningLedger) -> None:
        self.running = running

    def _run(self, coro: Any) -> Any:
        return self.running.stack.run(coro)

    def stop(self) -> None:
        self._run(self.running.stack.stack.servers["ledger"].stop())

    def start(self) -> None:
        stack, cfg = self.running.stack.stack, self.running.settings

        async def serve() -> None:
            ledger = stack.ledger
            assert stack.auth is not None
            server = GrpcServer(
                cfg.ledger_addr,
                [ledger_service(cfg, ledger.store.engine, ledger, stack.auth)],
                auth=stack.auth,
                grace=cfg.shutdown_grace,
                health_interval=cfg.health_interval,
                max_message_bytes=cfg.grpc_max_message_bytes,
            )
            await server.start()
            stack.servers["ledger"] = server  # Stack.stop stops this one

        self._run(serve())


def deploy_gbt(running: RunningLedger, tmp: Path) -> tuple[np.ndarray[Any, Any], str]:
    """Deploys a gradient-boosting model (sample rate 1.0); returns rows and the input name."""
    (tmp / "deploy").mkdir()
    _, X = deployed(running, tmp / "deploy", tree_model, MODEL)
    with grpc.insecure_channel(running.proxy_addr) as channel:
        stub = oip_grpc.GRPCInferenceServiceStub(channel)
        name = stub.ModelMetadata(oip.ModelMetadataRequest(name=MODEL)).inputs[0].name
    return X.iloc[:4].to_numpy(np.float32), name


def wait_model_ready(addr: str, model: str = MODEL) -> None:
    with grpc.insecure_channel(addr) as channel:
        stub = oip_grpc.GRPCInferenceServiceStub(channel)
        wait_until(
            lambda: stub.ModelReady(oip.ModelReadyRequest(name=model), timeout=5).ready,
            f"{model} is ready on {addr}",
        )


def status(addr: str) -> ProxyStatus:
    with ProxyClient(addr) as client:
        return client.status()


class Load:
    """Threads sending sampled ModelInfer requests until stopped; keeps every record id."""

    def __init__(self, addr: str, rows: np.ndarray[Any, Any], input_name: str, threads: int = 2):
        self.record_ids: list[str] = []
        self.errors: list[str] = []
        self._stop = threading.Event()
        self._request = infer_request(MODEL, rows, input_name)
        self._threads = [threading.Thread(target=self._run, args=(addr,)) for _ in range(threads)]
        for t in self._threads:
            t.start()

    def _run(self, addr: str) -> None:
        with grpc.insecure_channel(addr) as channel:
            stub = oip_grpc.GRPCInferenceServiceStub(channel)
            while not self._stop.is_set():
                try:
                    reply = stub.ModelInfer(self._request, timeout=30)
                except grpc.RpcError as exc:
                    self.errors.append(str(exc))
                    continue
                self.record_ids.append(reply.parameters["mrm_record_id"].string_param)

    def stop(self) -> None:
        self._stop.set()
        for t in self._threads:
            t.join()


_PROXY_MAIN = """
import asyncio, sys
from mrm.core.auth import ServerAuth, service_auth
from mrm.core.server import GrpcServer, stop_on_signals
from mrm.core.settings import Settings
from mrm.proxy.app import proxy_service

async def main() -> None:
    stop = stop_on_signals()
    s = Settings()
    server = GrpcServer(
        s.proxy_addr,
        [proxy_service(s, sys.argv[1], sys.argv[2], service_auth(s, "proxy"))],
        auth=ServerAuth.from_settings(s),
        grace=s.shutdown_grace,
        health_interval=s.health_interval,
        max_message_bytes=s.grpc_max_message_bytes,
    )
    print(await server.start(), flush=True)
    await stop.wait()
    await server.stop()

asyncio.run(main())
"""


class ProxyProcess:
    """The proxy alone in a process of its own (the server bootstrap `mrm up` uses),
    pointed at a registry and a ledger. Its spool lives in `home`."""

    def __init__(self, home: Path, registry: str, ledger: str, env: dict[str, str] | None = None):
        seed_service_home(home, "proxy")
        variables = {
            "MRM_HOME": str(home),
            "MRM_PROXY_ADDR": "127.0.0.1:0",
            "MRM_PROXY_METRICS_ADDR": "127.0.0.1:0",
            "MRM_SHUTDOWN_GRACE": "2",
            "MRM_LOG_LEVEL": "WARNING",
        }
        self.proc = subprocess.Popen(
            [sys.executable, "-c", _PROXY_MAIN, registry, ledger],
            env=os.environ | variables | (env or {}),
            stdout=subprocess.PIPE,
            text=True,
            cwd=Path(__file__).parents[2],
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line.strip().isdigit():
            self.close()
            raise AssertionError(f"the proxy process did not start (printed {line!r})")
        self.addr = f"127.0.0.1:{int(line)}"

    def kill(self) -> None:
        """SIGKILL: no shutdown, no flush; whatever only the spool holds must survive."""
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(30)
        assert self.proc.returncode == -signal.SIGKILL

    def close(self) -> None:
        """SIGTERM and wait (what a stop in production sends)."""
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(30)
        if self.proc.stdout is not None:
            self.proc.stdout.close()
