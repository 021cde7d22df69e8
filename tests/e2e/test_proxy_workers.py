"""MRM_PROXY_WORKERS: several proxy processes on one port, each serving and recording."""

from __future__ import annotations

import os
from pathlib import Path

import grpc

from mrm.client.ledger import LedgerClient
from mrm.oip.v2 import grpc_predict_v2_pb2 as oip
from mrm.oip.v2 import grpc_predict_v2_pb2_grpc as oip_grpc
from mrm.v1 import proxy_pb2, proxy_pb2_grpc
from tests.support.auth import TEST_TOKEN
from tests.support.inference import infer_request
from tests.support.proxy_stack import MODEL, deploy_gbt, free_port, stack_with_ledger_on, wait_until

LOCAL = [("grpc.use_local_subchannel_pool", 1)]  # a connection of its own per channel
BEARER = (("authorization", f"Bearer {TEST_TOKEN}"),)


def workers_of(pid: int) -> list[int]:
    """Child processes of `pid` running the proxy worker module."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            cmdline = (entry / "cmdline").read_bytes()
        except (OSError, IndexError):
            continue
        if ppid == pid and b"mrm.proxy.workers" in cmdline:
            found.append(int(entry.name))
    return found


def test_two_processes_share_the_port_and_both_record(tmp_path: Path, pg_url: str) -> None:
    proxy_addr = f"127.0.0.1:{free_port()}"
    running = stack_with_ledger_on(
        tmp_path / "home", free_port(), pg_url, proxy_addr=proxy_addr, reuse_port=True,
        proxy_workers=2,
    )  # fmt: skip
    try:
        rows, name = deploy_gbt(running, tmp_path)
        [worker] = workers_of(os.getpid())
        wait_until(
            lambda: (tmp_path / "home" / "proxy-worker-1" / "proxy-spool.db").exists(),
            "the worker has its own spool",
        )
        request = infer_request(MODEL, rows, name)
        ids = []
        for _ in range(40):  # new connections: the kernel spreads them over both
            with grpc.insecure_channel(proxy_addr, options=LOCAL) as channel:
                stub = oip_grpc.GRPCInferenceServiceStub(channel)
                wait_until(
                    lambda s=stub: s.ModelReady(oip.ModelReadyRequest(name=MODEL)).ready,  # type: ignore[misc]
                    "the model is loaded in this process",
                )
                reply = stub.ModelInfer(request, timeout=30)
                ids.append(reply.parameters["mrm_record_id"].string_param)
        sampled: dict[str, int] = {}  # per process: each counts only what it served
        for _ in range(60):
            with grpc.insecure_channel(proxy_addr, options=LOCAL) as channel:
                status = proxy_pb2_grpc.ProxyServiceStub(channel).GetProxyStatus(
                    proxy_pb2.GetProxyStatusRequest(), timeout=30, metadata=BEARER
                )
                sampled[status.instance] = status.counters.sampled
            if len(sampled) == 2:
                break
        assert len(sampled) == 2, sampled  # two processes answer on the port
        assert sum(sampled.values()) == 40, sampled  # between them, every decision
        assert min(sampled.values()) > 0, sampled  # and each served some
        with LedgerClient(running.addr) as ledger:

            def landed() -> bool:
                got = {r.record_id for r in ledger.query(kind="PREDICTION", model_name=MODEL)}
                return set(ids) <= got

            wait_until(landed, "every decision's record is in the ledger")
    finally:
        running.stack.stop()
    assert not Path(f"/proc/{worker}").exists() or worker not in workers_of(os.getpid())
