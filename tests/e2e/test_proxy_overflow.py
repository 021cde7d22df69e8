"""Spool overflow through the proxy: every dropped sample is counted and GAP-recorded.

A tiny spool and queue, the ledger down, a burst of sampled decisions: none
fails, the spool keeps its cap, the rest is dropped. Once the ledger is back,
GetProxyStatus's dropped counter equals the sum of the GAP records' counts
exactly, and shipped + dropped = sampled.
"""

from __future__ import annotations

import json
from pathlib import Path

import grpc

from mrm.client.ledger import LedgerClient
from mrm.oip.v2 import grpc_predict_v2_pb2 as pb
from mrm.oip.v2 import grpc_predict_v2_pb2_grpc as oip_grpc
from mrm.proxy.shipper import QUEUE_FULL, SPOOL_FULL
from tests.support.inference import infer_request
from tests.support.proxy_stack import (
    MODEL,
    LedgerSwitch,
    deploy_gbt,
    free_port,
    stack_with_ledger_on,
    status,
    wait_until,
)

CAP, QUEUE, N = 20, 8, 150


def test_overflow_drops_are_counted_and_gap_recorded_exactly(tmp_path: Path, pg_url: str) -> None:
    running = stack_with_ledger_on(
        tmp_path / "home",
        free_port(),
        pg_url,
        proxy_spool_max_records=CAP,
        proxy_queue_max=QUEUE,
    )
    switch = LedgerSwitch(running)
    proxy = running.proxy_addr
    try:
        rows, input_name = deploy_gbt(running, tmp_path)
        switch.stop()
        down = status(proxy)  # the status works with the ledger down, and says so
        assert not down.ledger_reachable
        assert (down.spool_capacity, down.queue_capacity) == (CAP, QUEUE)
        replies: list[pb.ModelInferResponse] = []
        with grpc.insecure_channel(proxy) as channel:
            stub = oip_grpc.GRPCInferenceServiceStub(channel)
            request = infer_request(MODEL, rows, input_name)
            # At least N decisions, and more until the spool is full: on a busy
            # machine the burst can overflow the queue before the shipper has
            # spooled CAP samples, and then only later decisions fill the spool.
            while len(replies) < N or status(proxy).spool_depth < CAP:
                assert len(replies) < 20 * N, "the spool never filled"
                replies += [stub.ModelInfer(request, timeout=30) for _ in range(10)]
        sent = len(replies)  # none failed
        assert all(r.parameters["mrm_record_id"].string_param for r in replies)
        wait_until(
            lambda: (s := status(proxy)).queue_depth == 0 and s.spool_depth == CAP,
            "the spool fills up to its cap",
        )
        full = status(proxy)
        assert full.counters.sampled == sent
        assert full.counters.spooled == CAP
        assert full.counters.dropped == sent - CAP
        assert full.counters.shipped == 0
        assert not full.ledger_reachable
        assert full.last_ledger_error
        switch.start()
        wait_until(
            lambda: (s := status(proxy)).spool_depth == 0 and s.gap_records_written > 0,
            "the spool drains and the drops are reported",
        )
        with LedgerClient(running.addr) as ledger:
            gaps = [json.loads(g.body_json) for g in ledger.query(kind="GAP", model_name=MODEL)]
            shipped = list(ledger.query(kind="PREDICTION", model_name=MODEL))
        after = status(proxy)
        assert after.ledger_reachable
        assert after.counters.dropped == sum(g["dropped"] for g in gaps) == sent - CAP
        assert after.counters.shipped + after.counters.dropped == after.counters.sampled == sent
        assert after.counters.shipped == len(shipped) == CAP
        assert after.gap_records_written == len(gaps)
        assert {g["reason"] for g in gaps} <= {SPOOL_FULL, QUEUE_FULL}
        assert {g["model_name"] for g in gaps} == {MODEL}
        assert all(g["from"] <= g["until"] for g in gaps)
        (served,) = after.models
        assert served.counters == after.counters
        answered = {r.parameters["mrm_record_id"].string_param for r in replies}
        assert {r.record_id for r in shipped} <= answered
    finally:
        running.stack.stop()
