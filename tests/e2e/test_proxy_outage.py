"""The proxy through a ledger outage and a SIGKILL: no failed decision, no lost record.

Real stack on PostgreSQL, real gRPC, real ONNX Runtime; the ledger server is
stopped and restarted on the same port while the proxy keeps serving.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import grpc
import pytest

from mrm.client.errors import Unavailable
from mrm.client.ledger import LedgerClient
from mrm.client.proxy import ProxyClient
from mrm.oip.v2 import grpc_predict_v2_pb2_grpc as oip_grpc
from tests.support.inference import infer_request
from tests.support.proxy_stack import (
    MODEL,
    LedgerSwitch,
    Load,
    ProxyProcess,
    deploy_gbt,
    free_port,
    stack_with_ledger_on,
    status,
    wait_model_ready,
    wait_until,
)


def predictions_in_ledger(addr: str) -> Counter[str]:
    with LedgerClient(addr) as ledger:
        return Counter(r.record_id for r in ledger.query(kind="PREDICTION", model_name=MODEL))


def test_a_ledger_outage_fails_no_decision_and_loses_no_record(tmp_path: Path, pg_url: str) -> None:
    running = stack_with_ledger_on(tmp_path / "home", free_port(), pg_url)
    switch = LedgerSwitch(running)
    try:
        rows, input_name = deploy_gbt(running, tmp_path)
        proxy = running.proxy_addr
        load = Load(proxy, rows, input_name)
        try:
            wait_until(lambda: status(proxy).counters.shipped >= 50, "records are shipped")
            switch.stop()
            down = status(proxy)  # answers while the ledger is down
            assert not down.ledger_reachable
            wait_until(lambda: status(proxy).counters.spooled >= 100, "the outage spools")
            outage = status(proxy)
            assert outage.last_ledger_error.startswith("UNAVAILABLE")
            assert outage.last_ledger_error_at is not None
            switch.start()
            shipped = status(proxy).counters.shipped
            wait_until(lambda: status(proxy).counters.shipped >= shipped + 100, "shipping resumes")
        finally:
            load.stop()
        wait_until(
            lambda: (
                (s := status(proxy)).spool_depth == s.queue_depth == 0
                and s.counters.shipped == s.counters.sampled
            ),
            "the spool drains",
        )
        after = status(proxy)
        assert not load.errors, load.errors[:3]
        assert "" not in load.record_ids  # every decision was sampled (rate 1.0)
        in_ledger = predictions_in_ledger(running.addr)
        assert set(in_ledger) == set(load.record_ids)
        assert max(in_ledger.values()) == 1  # exactly once, replays included
        assert after.counters.sampled == after.counters.shipped == len(load.record_ids)
        assert after.counters.spooled >= 100
        assert after.counters.dropped == after.counters.strict_failed == 0
        assert after.ledger_reachable
        assert after.last_ledger_success_at is not None
        assert outage.last_ledger_error_at is not None
        assert after.last_ledger_success_at > outage.last_ledger_error_at
        (served,) = after.models
        assert (served.name, served.stage, served.sample_rate) == (MODEL, "production", 1.0)
        assert served.counters == after.counters
        assert len(served.onnx_sha256) == 64
    finally:
        running.stack.stop()


@pytest.mark.parametrize("shipper", ["process", "thread"])
def test_a_killed_proxy_delivers_its_spool_after_a_restart(
    tmp_path: Path, pg_url: str, shipper: str
) -> None:
    running = stack_with_ledger_on(tmp_path / "home", free_port(), pg_url)
    switch = LedgerSwitch(running)
    home, n = tmp_path / "proxy-home", 40
    env = {"MRM_PROXY_SHIPPER": shipper}
    try:
        rows, input_name = deploy_gbt(running, tmp_path)
        first = ProxyProcess(home, running.registry_addr, running.addr, env)
        try:
            wait_model_ready(first.addr)
            switch.stop()
            with grpc.insecure_channel(first.addr) as channel:
                stub = oip_grpc.GRPCInferenceServiceStub(channel)
                request = infer_request(MODEL, rows, input_name)
                replies = [stub.ModelInfer(request, timeout=30) for _ in range(n)]
            ids = {r.parameters["mrm_record_id"].string_param for r in replies}
            assert len(ids) == n
            assert "" not in ids
            wait_until(lambda: status(first.addr).spool_depth == n, "the records are spooled")
            assert status(first.addr).counters.shipped == 0
            first.kill()
        finally:
            first.close()
        switch.start()
        second = ProxyProcess(home, running.registry_addr, running.addr, env)
        try:
            wait_until(lambda: status(second.addr).spool_depth == 0, "the spool is replayed")
            replayed = status(second.addr)
            assert replayed.counters.shipped == n  # delivered by the new process
            assert replayed.counters.sampled == 0
        finally:
            second.close()
        in_ledger = predictions_in_ledger(running.addr)
        assert set(in_ledger) == ids
        assert max(in_ledger.values()) == 1
    finally:
        running.stack.stop()


def test_status_of_a_proxy_that_is_down_is_unavailable() -> None:
    with ProxyClient(f"127.0.0.1:{free_port()}", timeout=5) as client, pytest.raises(Unavailable):
        client.status()
