"""The audit shipper as a child process of the proxy (`mrm.proxy.shipping`), against a
real ledger: exactly once, the same bytes as in-process, a SIGKILL of either
process, a child that cannot keep up, strict records through the pipe."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import pytest

from mrm.proxy.audit import PendingPrediction
from mrm.proxy.metrics import Snapshot
from mrm.proxy.shipper import QUEUE_FULL, AuditUnavailable, Shipper
from mrm.proxy.shipping import SHIPPER_EXITED, SHUTDOWN, ShipperProcess
from mrm.proxy.spool import Spool
from mrm.v1.ledger_pb2 import Record
from tests.conftest import RunningLedger
from tests.support.shipping import KEY, decisions, in_ledger, shipper_config, stack_on
from tests.support.waiting import free_port, wait_until


def balanced(snap: Snapshot) -> bool:
    t = snap.totals
    return (
        snap.queue_depth == snap.spool_depth == 0
        and t.sampled == t.shipped + t.dropped + t.strict_failed
    )


@pytest.fixture
def model() -> str:
    return f"shipping-{uuid.uuid4().hex[:8]}"


def test_records_land_exactly_once_with_the_bytes_built_in_process(
    running_stack: RunningLedger, tmp_path: Path, model: str
) -> None:
    sink = ShipperProcess(shipper_config(running_stack.addr, tmp_path))
    try:
        assert sink.pid is not None
        assert sink.pid != os.getpid()
        offered = decisions(model, 2000)
        assert all(sink.offer(d) for d in offered)
        wait_until(lambda: sink.snapshot().totals.shipped == 2000, "all 2000 are shipped")
        snap = sink.snapshot()
        assert balanced(snap)
        assert snap.totals.sampled == 2000
        assert dict(snap.by_model) == {(model, "1.0.0"): snap.totals}
        assert snap.last_ledger_success_at is not None
    finally:
        sink.close()
    landed = {r.record_id: r for r in in_ledger(running_stack.addr, model)}
    assert set(landed) == {d.record_id for d in offered}
    for d in offered[:50]:  # the child's records are those the proxy would build itself
        mine = d.record()
        theirs = landed[d.record_id]
        assert (theirs.body_json, theirs.subject) == (mine.body_json, mine.subject)
    assert "subject-0" not in json.dumps([r.body_json for r in landed.values()])


def test_the_subject_key_never_shows_in_the_config_repr(tmp_path: Path) -> None:
    text = repr(shipper_config("127.0.0.1:1", tmp_path))
    assert KEY.hex() not in text
    assert repr(KEY) not in text
    assert "subject_key=" not in text


def test_a_sigkilled_shipper_is_replaced_and_every_decision_is_accounted_for(
    running_stack: RunningLedger, tmp_path: Path, model: str
) -> None:
    sink = ShipperProcess(shipper_config(running_stack.addr, tmp_path))
    offered: list[PendingPrediction] = []
    stop = threading.Event()

    def load() -> None:
        i = 0
        while not stop.is_set():
            batch = decisions(model, 20, i)
            offered.extend(batch)
            for d in batch:
                sink.offer(d)
            i += 20
            time.sleep(0.005)

    feeder = threading.Thread(target=load)
    feeder.start()
    try:
        wait_until(lambda: sink.snapshot().totals.shipped >= 500, "records are shipped")
        first = sink.pid
        assert first is not None
        os.kill(first, signal.SIGKILL)
        wait_until(lambda: sink.pid not in (None, first), "another shipper process starts")
        shipped = sink.snapshot().totals.shipped
        wait_until(lambda: sink.snapshot().totals.shipped >= shipped + 500, "shipping resumes")
    finally:
        stop.set()
        feeder.join()
    try:
        wait_until(lambda: balanced(sink.snapshot()), "everything is shipped or dropped")
        wait_until(
            lambda: (
                bool(in_ledger(running_stack.addr, model, "GAP"))
                or (sink.snapshot().totals.dropped == 0)
            ),
            "the loss, if any, is recorded",
        )
        snap = sink.snapshot()
    finally:
        sink.close()
    landed = [r.record_id for r in in_ledger(running_stack.addr, model)]
    gaps = [json.loads(g.body_json) for g in in_ledger(running_stack.addr, model, "GAP")]
    assert len(landed) == len(set(landed))  # exactly once
    assert set(landed) <= {d.record_id for d in offered}
    assert snap.totals.sampled == len(offered)
    # What the dead child shipped after its last report is counted dropped, not shipped.
    assert snap.totals.shipped <= len(landed) <= len(offered)
    # Whatever the dead child held and never reported settled is a GAP (at most that many).
    assert sum(g["dropped"] for g in gaps) == snap.totals.dropped
    assert {g["reason"] for g in gaps} <= {SHIPPER_EXITED}
    assert len(landed) + snap.totals.dropped >= len(offered)


_KILLED_PROXY = """
import os, signal, sys, time
from pathlib import Path
sys.path.insert(0, sys.argv[4])
from tests.support.shipping import shipper_config, decisions
from mrm.proxy.shipping import ShipperProcess
sink = ShipperProcess(shipper_config(sys.argv[1], Path(sys.argv[2])))
for d in decisions(sys.argv[3], 3000):
    assert sink.offer(d)
time.sleep(1.0)  # the feeder hands them over within milliseconds
print(sink.pid, flush=True)
os.kill(os.getpid(), signal.SIGKILL)
"""


def test_the_child_ships_what_it_was_handed_when_the_proxy_is_sigkilled(
    running_stack: RunningLedger, tmp_path: Path, model: str
) -> None:
    root = str(Path(__file__).parents[2])
    proxy = subprocess.run(
        [sys.executable, "-c", _KILLED_PROXY, running_stack.addr, str(tmp_path), model, root],
        stdout=subprocess.PIPE,
        text=True,
        timeout=120,
        check=False,
    )
    assert proxy.returncode == -signal.SIGKILL
    child = int(proxy.stdout.strip())
    wait_until(lambda: len(in_ledger(running_stack.addr, model)) == 3000, "all 3000 land")
    wait_until(lambda: not Path(f"/proc/{child}").exists() or _zombie(child), "the child exits")
    landed = [r.record_id for r in in_ledger(running_stack.addr, model)]
    assert len(set(landed)) == 3000


def _zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] == "Z"
    except OSError:
        return True


def test_a_child_that_cannot_keep_up_costs_drops_that_become_a_gap(
    tmp_path: Path, model: str
) -> None:
    port = free_port()
    # A small buffer in the proxy; the child's own queue (10,000) never overflows here.
    sink = ShipperProcess(shipper_config(f"127.0.0.1:{port}", tmp_path), queue_max=100)
    stack = None
    try:
        child = sink.pid
        assert child is not None
        os.kill(child, signal.SIGSTOP)  # fills the pipe, then the proxy's buffer
        accepted: list[bool] = []
        try:
            for round_ in range(30):  # ~2 KiB each: the 1 MiB pipe holds ~500
                for d in decisions(model, 100, round_ * 100, width=512):
                    accepted.append(sink.offer(d))
                time.sleep(0.02)
        finally:
            os.kill(child, signal.SIGCONT)
        assert accepted.count(False) > 1000
        stack = stack_on(tmp_path / "home", port)
        addr = stack.stack.ledger_addr
        wait_until(lambda: balanced(sink.snapshot()), "the backlog is shipped")
        wait_until(lambda: bool(in_ledger(addr, model, "GAP")), "a GAP record lands")
        snap = sink.snapshot()
        gaps = [json.loads(g.body_json) for g in in_ledger(addr, model, "GAP")]
        assert snap.totals.sampled == len(accepted) == 3000
        assert snap.totals.dropped == sum(g["dropped"] for g in gaps) == accepted.count(False)
        assert {g["reason"] for g in gaps} == {QUEUE_FULL}
        assert len(in_ledger(addr, model)) == snap.totals.shipped == accepted.count(True)
    finally:
        sink.close()
        if stack is not None:
            stack.stop()


def test_strict_records_are_durable_through_the_child(tmp_path: Path, model: str) -> None:
    port = free_port()
    sink = ShipperProcess(shipper_config(f"127.0.0.1:{port}", tmp_path, spool_max_records=20))
    stack = None
    try:
        down = [d.record() for d in decisions(model, 20)]
        errors: list[Exception] = []

        def strict(record: Record) -> None:
            try:
                sink.strict_offer(record, 0.5)
            except Exception as exc:
                errors.append(exc)

        threads = [threading.Thread(target=strict, args=(r,)) for r in down]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert not errors
        assert sink.snapshot().totals.spooled == 20  # the ledger is away: fsync'd locally
        with pytest.raises(AuditUnavailable, match="spool is full"):
            sink.strict_offer(decisions(model, 1, 100)[0].record(), 0.5)
        stack = stack_on(tmp_path / "home", port)
        wait_until(lambda: sink.snapshot().spool_depth == 0, "the strict records are replayed")
        up = decisions(model, 1, 200)[0].record()
        sink.strict_offer(up, 30)  # appended straight away
        snap = sink.snapshot()
        assert snap.totals.strict_failed == 1
        assert snap.totals.sampled == 22
        landed = {r.record_id for r in in_ledger(stack.stack.ledger_addr, model)}
        assert landed == {r.record_id for r in [*down, up]}
    finally:
        sink.close()
        if stack is not None:
            stack.stop()


def test_close_hands_over_the_buffer_and_waits_for_the_child(
    running_stack: RunningLedger, tmp_path: Path, model: str
) -> None:
    sink = ShipperProcess(shipper_config(running_stack.addr, tmp_path))
    child = sink.pid
    for d in decisions(model, 300):
        sink.offer(d)
    sink.close(timeout=10)  # at once: whatever is still buffered goes too
    assert child is not None
    assert _zombie(child)
    assert len(in_ledger(running_stack.addr, model)) == 300
    assert sink.snapshot().totals.shipped == 300


def test_a_child_killed_after_replaying_its_spool_still_counts_what_it_held(
    tmp_path: Path, model: str
) -> None:
    port = free_port()
    sink = ShipperProcess(shipper_config(f"127.0.0.1:{port}", tmp_path))
    stack = None
    try:
        for d in decisions(model, 100):
            sink.offer(d)
        wait_until(lambda: sink.snapshot().totals.spooled == 100, "the outage spools 100")
        stack = stack_on(tmp_path / "home", port)
        wait_until(lambda: sink.snapshot().totals.shipped == 100, "the spool is replayed")
        child = sink.pid
        assert child is not None
        os.kill(child, signal.SIGSTOP)
        for d in decisions(model, 50, 100):
            sink.offer(d)
        time.sleep(0.5)  # handed over: in the pipe, never read
        os.kill(child, signal.SIGKILL)
        os.kill(child, signal.SIGCONT)
        wait_until(lambda: sink.pid not in (None, child), "another shipper process starts")
        addr = stack.stack.ledger_addr
        wait_until(lambda: bool(in_ledger(addr, model, "GAP")), "the loss is recorded")
        # The counts are the child's last report, at most 0.1 s behind the ledger.
        wait_until(lambda: sink.snapshot().gap_records_written == 1, "the GAP is reported")
        snap = sink.snapshot()
        assert balanced(snap)
        assert (snap.totals.sampled, snap.totals.shipped, snap.totals.dropped) == (150, 100, 50)
        (gap,) = [json.loads(g.body_json) for g in in_ledger(addr, model, "GAP")]
        assert (gap["dropped"], gap["reason"]) == (50, SHIPPER_EXITED)
        assert len(in_ledger(addr, model)) == 100
    finally:
        sink.close()
        if stack is not None:
            stack.stop()


def test_what_no_child_took_at_close_is_counted_and_left_for_a_gap(
    running_stack: RunningLedger, tmp_path: Path, model: str
) -> None:
    sink = ShipperProcess(shipper_config(running_stack.addr, tmp_path))
    child = sink.pid
    assert child is not None
    os.kill(child, signal.SIGKILL)
    wait_until(lambda: sink.pid is None, "the child is gone")
    for d in decisions(model, 100):
        sink.offer(d)
    sink.close(timeout=1)  # before another child starts: nobody takes the 100
    snap = sink.snapshot()
    assert (snap.totals.sampled, snap.totals.dropped, snap.queue_depth) == (100, 100, 0)
    assert not sink.offer(decisions(model, 1, 200)[0])  # after close: counted, dropped
    assert sink.snapshot().totals.dropped == 101
    after = Shipper(running_stack.addr, Spool(tmp_path / "spool.db", 1000))
    try:
        wait_until(
            lambda: bool(in_ledger(running_stack.addr, model, "GAP")), "the next shipper writes it"
        )
    finally:
        after.close()
    (gap,) = [json.loads(g.body_json) for g in in_ledger(running_stack.addr, model, "GAP")]
    assert (gap["dropped"], gap["reason"]) == (100, SHUTDOWN)
