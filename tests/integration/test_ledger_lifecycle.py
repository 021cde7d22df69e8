"""The ledger as an operator runs it: keys, origins, cadence, health, replicas, SIGTERM."""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import grpc
import pytest
import sqlalchemy as sa
from grpc_health.v1 import health_pb2, health_pb2_grpc

from mrm.core import db
from mrm.ledger.tables import leaves
from mrm.tlog.note import generate_signer
from mrm.v1 import ledger_pb2 as pb
from mrm.v1 import ledger_pb2_grpc as pbg
from tests.conftest import RunningLedger, start_ledger
from tests.support.auth import channel as authorized_channel
from tests.support.ledger import new_record, open_ledger, uuid7
from tests.support.waiting import free_port


def eventually(check: Callable[[], bool], what: str, timeout: float = 30.0) -> None:
    """Poll until `check` holds; the timeout only bounds a hung test, it asserts no speed."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"never happened: {what}")
        time.sleep(0.05)


def test_key_is_generated_private_and_origins_are_unique(tmp_path: Path) -> None:
    a = start_ledger(tmp_path / "a")
    b = start_ledger(tmp_path / "b")
    try:
        key = tmp_path / "a" / "ledger.key"
        assert stat.S_IMODE(key.stat().st_mode) == 0o600
        assert key.read_text().startswith("PRIVATE+KEY+")
        assert a.stack.stack.ledger.origin != b.stack.stack.ledger.origin
    finally:
        a.stack.stop()
        b.stack.stop()


def test_a_configured_key_and_origin_are_used(tmp_path: Path) -> None:
    signer = generate_signer("audit.example.com/prod")
    key_file = tmp_path / "prod.key"
    key_file.write_text(signer.encode() + "\n")
    key_file.chmod(0o600)
    running = start_ledger(
        tmp_path / "home", ledger_key_file=key_file, ledger_origin="audit.example.com/prod"
    )
    try:
        ledger = running.stack.stack.ledger
        assert ledger.origin == "audit.example.com/prod"
        assert ledger.verifier_key == signer.vkey()
        assert not (tmp_path / "home" / "ledger.key").exists()
    finally:
        running.stack.stop()


def test_checkpoints_follow_the_cadence(tmp_path: Path) -> None:
    running = start_ledger(
        tmp_path / "home", ledger_checkpoint_every=10, ledger_checkpoint_interval=3600
    )
    try:
        with authorized_channel(running.addr) as channel:
            stub = pbg.LedgerServiceStub(channel)
            records = [
                pb.Record(record_id=str(uuid7()), kind=pb.RECORD_KIND_GAP, body_json="{}")
                for _ in range(12)
            ]
            stub.AppendRecords(pb.AppendRecordsRequest(records=records))

            def signed_12() -> bool:
                cp = stub.GetCheckpoint(pb.GetCheckpointRequest()).checkpoint
                return cp.tree_size == 12

            eventually(signed_12, "a checkpoint after 12 leaves with every=10")
    finally:
        running.stack.stop()


def test_timed_checkpoints(tmp_path: Path) -> None:
    running = start_ledger(
        tmp_path / "home", ledger_checkpoint_every=10_000, ledger_checkpoint_interval=0.2
    )
    try:
        with authorized_channel(running.addr) as channel:
            stub = pbg.LedgerServiceStub(channel)
            stub.AppendRecords(
                pb.AppendRecordsRequest(
                    records=[
                        pb.Record(record_id=str(uuid7()), kind=pb.RECORD_KIND_GAP, body_json="{}")
                    ]
                )
            )
            eventually(
                lambda: stub.GetCheckpoint(pb.GetCheckpointRequest()).checkpoint.tree_size == 1,
                "a timed checkpoint",
            )
    finally:
        running.stack.stop()


def _health(running: RunningLedger) -> int:
    with authorized_channel(running.addr) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        return int(stub.Check(health_pb2.HealthCheckRequest(service="mrm.v1.LedgerService")).status)


def test_health_drops_when_the_log_is_tampered_with(tmp_path: Path) -> None:
    running = start_ledger(tmp_path / "home", ledger_checkpoint_interval=0.2, health_interval=0.1)
    try:
        assert _health(running) == health_pb2.HealthCheckResponse.SERVING
        ledger = running.stack.stack.ledger
        ledger.append([new_record(i) for i in range(3)], "svc")
        engine = ledger.store.engine
        with engine.begin() as conn:  # a row written around the ledger: no valid seal
            row = conn.execute(sa.text("SELECT * FROM ledger_leaves WHERE leaf_index = 2")).one()
            forged = dict(row._mapping) | {
                "leaf_index": 3,
                "record_id": uuid7(),
                "seal": b"\0" * 32,
            }
            conn.execute(leaves.insert(), forged)
        eventually(
            lambda: _health(running) == health_pb2.HealthCheckResponse.NOT_SERVING,
            "NOT_SERVING after the signer found a forged leaf",
        )
        with authorized_channel(running.addr) as channel:
            stub = pbg.LedgerServiceStub(channel)
            with pytest.raises(grpc.RpcError) as err:
                stub.GetCheckpoint(pb.GetCheckpointRequest(refresh=True))
            assert err.value.code() == grpc.StatusCode.DATA_LOSS
            assert "leaf 3" in (err.value.details() or "")
    finally:
        running.stack.stop()


def test_two_replicas_append_the_same_ids_once(engine: sa.Engine, tmp_path: Path) -> None:
    first = open_ledger(engine, tmp_path)
    second = open_ledger(engine, tmp_path)  # same key file: a second replica
    batch = [new_record(i) for i in range(200)]
    results: list[list[int]] = []

    def run(ledger: object, k: int) -> None:
        mine = batch[k * 7 % 200 :] + batch[: k * 7 % 200]
        out = ledger.append(mine, f"replica-{k}")  # type: ignore[attr-defined]
        results.append(sorted(r.record.leaf_index for r in out))

    threads = [
        threading.Thread(target=run, args=(lg, k)) for k, lg in enumerate([first, second] * 3)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == [list(range(200))] * 6
    assert first.store.size() == 200
    first.close()
    second.close()


def test_sigterm_stops_gracefully(tmp_path: Path) -> None:
    port = free_port()
    env = os.environ | {
        "MRM_HOME": str(tmp_path / "home"),
        "MRM_LEDGER_ADDR": f"127.0.0.1:{port}",
        "MRM_REGISTRY_ADDR": f"127.0.0.1:{free_port()}",
        "MRM_PROXY_ADDR": f"127.0.0.1:{free_port()}",
    }
    mrm = str(Path(sys.executable).with_name("mrm"))
    proc = subprocess.Popen(
        [mrm, "up"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        running = RunningLedger(addr=f"127.0.0.1:{port}", settings=None, stack=None)  # type: ignore[arg-type]

        def serving() -> bool:
            try:
                return bool(_health(running) == health_pb2.HealthCheckResponse.SERVING)
            except grpc.RpcError:
                return False

        eventually(serving, "mrm up serving")
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err
    assert "ledger" in out
    assert "registry" in out
    assert "shutting down" in err
    assert "Traceback" not in err


def test_migrations_are_idempotent(database_url: str) -> None:
    engine = db.create_engine(database_url)
    try:
        db.upgrade(engine)
        db.upgrade(engine)
        with engine.connect() as conn:
            version = conn.exec_driver_sql("SELECT version_num FROM alembic_version").scalar_one()
        assert version == db.head_revision()
    finally:
        engine.dispose()


def test_database_down_means_unavailable_and_not_serving(tmp_path: Path, pg_url: str) -> None:
    import psycopg

    from tests.conftest import PG_ADMIN_URL

    running = start_ledger(tmp_path / "home", pg_url, health_interval=0.1)
    try:
        with authorized_channel(running.addr) as channel:
            stub = pbg.LedgerServiceStub(channel)

            def append() -> pb.AppendRecordsResponse:
                record = pb.Record(record_id=str(uuid7()), kind=pb.RECORD_KIND_GAP, body_json="{}")
                return stub.AppendRecords(pb.AppendRecordsRequest(records=[record]))

            assert append().results[0].leaf_index == 0
            with psycopg.connect(PG_ADMIN_URL, autocommit=True) as admin:
                admin.execute(f'DROP DATABASE "{pg_url.rsplit("/", 1)[1]}" WITH (FORCE)')
            with pytest.raises(grpc.RpcError) as err:
                append()
            assert err.value.code() == grpc.StatusCode.UNAVAILABLE
            eventually(
                lambda: _health(running) == health_pb2.HealthCheckResponse.NOT_SERVING,
                "NOT_SERVING without a database",
            )
    finally:
        running.stack.stop()
