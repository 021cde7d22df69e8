"""The proxy with its audit shipper in a child process (MRM_PROXY_SHIPPER=process):
the child runs at a lower CPU priority, and a SIGKILL of it fails no decision and
leaves every decision either in the ledger exactly once or counted in a GAP
record. Real stack on PostgreSQL, real gRPC, real ONNX Runtime."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

from mrm.client.ledger import LedgerClient
from tests.support.proxy_stack import (
    MODEL,
    Load,
    ProxyProcess,
    deploy_gbt,
    free_port,
    stack_with_ledger_on,
    status,
    wait_model_ready,
    wait_until,
)


def shipper_children(pid: int) -> list[int]:
    """The proxy's `python -m mrm.proxy.shipping` children."""
    out = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        for child in (task / "children").read_text().split():
            try:
                argv = Path(f"/proc/{child}/cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if b"mrm.proxy.shipping" in argv:
                out.append(int(child))
    return out


def gap_total(ledger_addr: str) -> int:
    with LedgerClient(ledger_addr) as ledger:
        gaps = ledger.query(kind="GAP", model_name=MODEL)
        return sum(json.loads(g.body_json)["dropped"] for g in gaps)


def test_a_sigkilled_shipper_fails_no_decision_and_every_decision_is_accounted_for(
    tmp_path: Path, pg_url: str
) -> None:
    running = stack_with_ledger_on(tmp_path / "home", free_port(), pg_url)
    try:
        rows, input_name = deploy_gbt(running, tmp_path)
        proxy = ProxyProcess(
            tmp_path / "proxy-home",
            running.registry_addr,
            running.addr,
            {"MRM_PROXY_SHIPPER": "process"},
        )
        try:
            wait_model_ready(proxy.addr)
            (first,) = shipper_children(proxy.proc.pid)
            load = Load(proxy.addr, rows, input_name)
            try:
                wait_until(lambda: status(proxy.addr).counters.shipped >= 100, "records ship")
                # Inference first: the shipper yields the cores when both want them.
                mine = os.getpriority(os.PRIO_PROCESS, proxy.proc.pid)
                assert os.getpriority(os.PRIO_PROCESS, first) == min(mine + 10, 19)
                os.kill(first, signal.SIGKILL)
                wait_until(
                    lambda: shipper_children(proxy.proc.pid) not in ([], [first]),
                    "another shipper process starts",
                )
                shipped = status(proxy.addr).counters.shipped
                wait_until(
                    lambda: status(proxy.addr).counters.shipped >= shipped + 100,
                    "shipping resumes",
                )
            finally:
                load.stop()
            wait_until(
                lambda: (
                    (s := status(proxy.addr)).queue_depth == s.spool_depth == 0
                    and s.counters.sampled == s.counters.shipped + s.counters.dropped
                ),
                "every decision is shipped or counted dropped",
            )
            after = status(proxy.addr)
            wait_until(
                lambda: gap_total(running.addr) == after.counters.dropped,
                "what the killed child held is recorded in GAP records",
            )
        finally:
            proxy.close()
        assert not load.errors, load.errors[:3]  # no decision failed
        assert "" not in load.record_ids  # every decision was sampled (rate 1.0)
        assert after.counters.sampled == len(load.record_ids)
        with LedgerClient(running.addr) as ledger:
            landed = [r.record_id for r in ledger.query(kind="PREDICTION", model_name=MODEL)]
        assert len(landed) == len(set(landed))  # exactly once
        assert set(landed) <= set(load.record_ids)
        # What the killed child held and had not reported settled is dropped, in a GAP.
        assert gap_total(running.addr) == after.counters.dropped
        assert len(landed) + after.counters.dropped >= len(load.record_ids)
        assert after.counters.shipped <= len(landed)
    finally:
        running.stack.stop()
