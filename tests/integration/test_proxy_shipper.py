"""The proxy's audit shipper against a real ledger: outages, kills, overflow, bad records."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest

from mrm.client.ledger import LedgerClient, new_record
from mrm.proxy.shipper import SPOOL_FULL, AuditUnavailable, Shipper
from mrm.proxy.spool import Spool
from mrm.stack import BackgroundStack
from mrm.v1.ledger_pb2 import Record
from tests.conftest import RunningLedger, start_ledger
from tests.support.shipping import in_ledger, stack_on
from tests.support.waiting import free_port, wait_until


def stop_ledger_server(stack: BackgroundStack) -> None:
    server = stack.stack.servers["ledger"]
    stack.run(server.stop())


def predictions(model: str, n: int, start: int = 0) -> list[Record]:
    return [new_record("PREDICTION", {"i": i}, model_name=model) for i in range(start, start + n)]


def settled(shipper: Shipper) -> Callable[[], bool]:
    def check() -> bool:
        c = shipper.counters()
        return c["queue_depth"] == 0 and c["spool_depth"] == 0

    return check


@pytest.fixture
def model() -> str:
    return f"shipper-{uuid.uuid4().hex[:8]}"


def test_records_land_exactly_once(
    running_stack: RunningLedger, tmp_path: Path, model: str
) -> None:
    shipper = Shipper(running_stack.addr, Spool(tmp_path / "spool.db", 10_000))
    offered = predictions(model, 2000)
    assert all(shipper.offer(r) for r in offered)
    wait_until(lambda: shipper.counters()["shipped"] == 2000, "all 2000 are shipped")
    shipper.close()
    ids = [r.record_id for r in in_ledger(running_stack.addr, model)]
    assert len(ids) == 2000
    assert set(ids) == {r.record_id for r in offered}
    counters = shipper.counters()
    assert counters["sampled"] == 2000
    assert counters["dropped"] == 0


def test_a_ledger_outage_loses_nothing(tmp_path: Path, model: str) -> None:
    home, port = tmp_path / "home", free_port()
    first = stack_on(home, port)
    shipper = Shipper(f"127.0.0.1:{port}", Spool(tmp_path / "spool.db", 100_000))
    offered: list[Record] = []
    slowest, errors = 0.0, list[BaseException]()
    keep_offering = threading.Event()
    keep_offering.set()

    def offer_steadily() -> None:
        nonlocal slowest
        while keep_offering.is_set():
            rec = predictions(model, 1, len(offered))[0]
            began = time.perf_counter()
            try:
                assert shipper.offer(rec)
            except BaseException as exc:
                errors.append(exc)
            slowest = max(slowest, time.perf_counter() - began)
            offered.append(rec)
            time.sleep(0.0005)

    offerer = threading.Thread(target=offer_steadily)
    offerer.start()
    second: BackgroundStack | None = None
    try:
        wait_until(lambda: shipper.counters()["shipped"] >= 300, "some are shipped")
        stop_ledger_server(first)
        spooled = shipper.counters()["spooled"]
        wait_until(lambda: shipper.counters()["spooled"] >= spooled + 300, "the outage spools")
        first.stop()
        second = stack_on(home, port)  # same database, same port
        shipped = shipper.counters()["shipped"]
        wait_until(lambda: shipper.counters()["shipped"] >= shipped + 300, "shipping resumes")
    finally:
        keep_offering.clear()
        offerer.join()
    try:
        wait_until(settled(shipper), "the spool drains")
        shipper.close()
        ids = Counter(r.record_id for r in in_ledger(second.stack.ledger_addr, model))
        assert not errors
        assert set(ids) == {r.record_id for r in offered}
        assert max(ids.values()) == 1
        counters = shipper.counters()
        assert counters["shipped"] == counters["sampled"] == len(offered)
        assert counters["spooled"] >= 300
        assert counters["dropped"] == 0
        # No offer waited on the ledger (an RPC timeout is 10 s; a ledger stop longer).
        assert slowest < 1.0, slowest
    finally:
        second.stop()


_KILLED_CHILD = """
import json, sys, time
from pathlib import Path
from mrm.client.ledger import new_record
from mrm.proxy.shipper import Shipper
from mrm.proxy.spool import Spool

target, path, model, n = sys.argv[1], Path(sys.argv[2]), sys.argv[3], int(sys.argv[4])
shipper = Shipper(target, Spool(path, 100_000))
records = [new_record("PREDICTION", {"i": i}, model_name=model) for i in range(n)]
for rec in records:
    assert shipper.offer(rec)
while shipper.counters()["spooled"] < n:
    time.sleep(0.01)
print(json.dumps([r.record_id for r in records]), flush=True)
time.sleep(600)
"""


def test_spooled_records_survive_sigkill(tmp_path: Path, model: str) -> None:
    path, n = tmp_path / "spool.db", 500
    dead = f"127.0.0.1:{free_port()}"  # nothing listens: every append fails
    with subprocess.Popen(
        [sys.executable, "-c", _KILLED_CHILD, dead, str(path), model, str(n)],
        stdout=subprocess.PIPE,
        text=True,
    ) as child:
        try:
            assert child.stdout is not None
            ids = set(json.loads(child.stdout.readline()))
        finally:
            child.send_signal(signal.SIGKILL)
            child.wait(30)
    assert child.returncode == -signal.SIGKILL
    assert len(ids) == n
    running = start_ledger(tmp_path / "home")
    try:
        shipper = Shipper(running.addr, Spool(path, 100_000))
        assert shipper.counters()["spool_depth"] == n
        wait_until(lambda: shipper.counters()["shipped"] == n, "the spool is replayed")
        wait_until(settled(shipper), "the spool is empty")
        shipper.close()
        landed = [r.record_id for r in in_ledger(running.addr, model)]
        assert len(landed) == n
        assert set(landed) == ids
    finally:
        running.stack.stop()


def test_overflow_is_counted_in_gap_records(tmp_path: Path, model: str) -> None:
    port, cap, n = free_port(), 50, 300
    shipper = Shipper(f"127.0.0.1:{port}", Spool(tmp_path / "spool.db", cap))
    for rec in predictions(model, n):
        assert shipper.offer(rec)  # accepted by the queue; the spool decides later
    wait_until(lambda: shipper.counters()["dropped"] == n - cap, "the spool overflows")
    stack = stack_on(tmp_path / "home", port)
    try:
        addr = stack.stack.ledger_addr
        wait_until(lambda: bool(in_ledger(addr, model, "GAP")), "a GAP record lands")
        wait_until(settled(shipper), "the spool drains")
        shipper.close()
        counters = shipper.counters()
        assert counters == counters | {"sampled": n, "spooled": cap, "dropped": n - cap}
        gaps = [json.loads(g.body_json) for g in in_ledger(addr, model, "GAP")]
        assert sum(g["dropped"] for g in gaps) == counters["dropped"]
        assert {g["reason"] for g in gaps} == {SPOOL_FULL}
        assert all(g["from"] <= g["until"] for g in gaps)
        assert len(in_ledger(addr, model)) == cap
        snap = shipper.snapshot()
        assert snap.gap_records_written == len(gaps)
        assert dict(snap.by_model) == {(model, ""): snap.totals}
        assert snap.ledger_failures >= 1
        assert "UNAVAILABLE" in snap.last_ledger_error
        assert snap.last_ledger_error_at is not None
        assert snap.last_ledger_success_at is not None
        assert snap.last_ledger_error_at < snap.last_ledger_success_at
    finally:
        stack.stop()


def test_one_bad_record_never_blocks_the_rest(
    running_stack: RunningLedger, tmp_path: Path, model: str
) -> None:
    shipper = Shipper(running_stack.addr, Spool(tmp_path / "spool.db", 1000), flush_interval=0.2)
    good = predictions(model, 20)
    bad = new_record("PREDICTION", {"i": -1}, model_name=model, span_id="00f067aa0ba902b7")
    for rec in [*good[:7], bad, *good[7:]]:
        shipper.offer(rec)
    wait_until(lambda: shipper.counters()["shipped"] == 20, "the good ones are shipped")
    wait_until(lambda: bool(in_ledger(running_stack.addr, model, "GAP")), "the drop is recorded")
    shipper.close()
    assert {r.record_id for r in in_ledger(running_stack.addr, model)} == {
        r.record_id for r in good
    }
    (gap,) = [json.loads(g.body_json) for g in in_ledger(running_stack.addr, model, "GAP")]
    assert gap["dropped"] == shipper.counters()["dropped"] == 1
    assert "span_id" in gap["reason"]


def test_strict_records_are_durable_before_returning(tmp_path: Path, model: str) -> None:
    port = free_port()
    shipper = Shipper(f"127.0.0.1:{port}", Spool(tmp_path / "spool.db", 20))
    # The ledger is away: strict records are spooled, concurrently, in shared commits.
    down = predictions(model, 20)
    threads = [threading.Thread(target=shipper.strict_offer, args=(r,)) for r in down]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert shipper.counters()["spooled"] == 20
    with pytest.raises(AuditUnavailable, match="spool is full"):
        shipper.strict_offer(predictions(model, 1)[0])
    stack = stack_on(tmp_path / "home", port)
    try:
        wait_until(settled(shipper), "the strict records are replayed")
        up = predictions(model, 1, 100)[0]
        shipper.strict_offer(up, timeout=30)  # appended straight away, not spooled
        assert shipper.counters()["spooled"] == 20
        shipper.close()
        landed = {r.record_id for r in in_ledger(stack.stack.ledger_addr, model)}
        assert landed == {r.record_id for r in [*down, up]}
        assert shipper.counters()["strict_failed"] == 1
    finally:
        stack.stop()


def test_a_gap_resent_after_a_crash_lands_once(
    running_stack: RunningLedger, tmp_path: Path, model: str
) -> None:
    path = tmp_path / "spool.db"
    spool = Spool(path, 10)
    spool.add_dropped(9, SPOOL_FULL, model)
    (gap,) = spool.take_gaps()
    # Appended, then the process died before clearing.
    with LedgerClient(running_stack.addr) as client:
        client.append([gap.record()])
    spool.close()
    shipper = Shipper(running_stack.addr, Spool(path, 10))
    wait_until(lambda: not shipper.spool.has_gaps(), "the sealed gap is resent and cleared")
    shipper.close()
    (landed,) = in_ledger(running_stack.addr, model, "GAP")
    assert landed.record_id == gap.record_id
    assert json.loads(landed.body_json)["dropped"] == 9
