"""Strict mode: a strict version's decision is durable (in the ledger, or fsync'd in the
proxy's spool) before its response goes out, and is refused rather than served
unrecorded. Non-strict versions on the same proxy are unaffected."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import pytest
from click.testing import CliRunner

from mrm.cli.main import mrmctl
from mrm.client.errors import InvalidArgument as InvalidArgumentError
from mrm.client.errors import NotFound, Unavailable
from mrm.client.ledger import LedgerClient
from mrm.client.registry import RegistryClient
from mrm.deploy.config import load_config
from mrm.deploy.errors import DeployError
from mrm.oip.v2 import grpc_predict_v2_pb2 as oip
from mrm.oip.v2 import grpc_predict_v2_pb2_grpc as oip_grpc
from mrm.v1 import registry_pb2
from tests.conftest import RunningLedger
from tests.support.inference import infer_request
from tests.support.proxy_stack import (
    MODEL,
    LedgerSwitch,
    deploy_gbt,
    free_port,
    stack_with_ledger_on,
    wait_until,
)

STRICT = "1.1.0"  # 1.0.0, in production, is the non-strict one


def add_strict_version(running: RunningLedger) -> None:
    """1.1.0: the same artifacts as 1.0.0, strict, in staging (served by version)."""
    with RegistryClient(running.registry_addr) as reg:
        first = reg.get_version(MODEL, "1.0.0")
        refs = [registry_pb2.ArtifactRef(role=a.role, sha256=a.sha256) for a in first.artifacts]
        v = reg.register(
            registry_pb2.ModelVersion(
                model_name=MODEL, version=STRICT, artifacts=refs, sample_rate=1.0, strict=True
            )
        ).version
        assert v.strict
        assert not first.strict
        reg.promote(MODEL, STRICT, "staging")
    with grpc.insecure_channel(running.proxy_addr) as channel:
        stub = oip_grpc.GRPCInferenceServiceStub(channel)
        wait_until(
            lambda: stub.ModelReady(oip.ModelReadyRequest(name=MODEL, version=STRICT)).ready,
            "the strict version is served",
        )


Stack = tuple[RunningLedger, np.ndarray[Any, Any], str]


@contextmanager
def strict_stack_on(tmp: Path, pg_url: str, **settings: Any) -> Iterator[Stack]:
    running = stack_with_ledger_on(tmp / "home", free_port(), pg_url, **settings)
    try:
        rows, name = deploy_gbt(running, tmp)
        add_strict_version(running)
        yield running, rows, name
    finally:
        running.stack.stop()


@pytest.fixture
def strict_stack(tmp_path: Path, pg_url: str) -> Iterator[Stack]:
    with strict_stack_on(tmp_path, pg_url) as stack:
        yield stack


def infer(addr: str, rows: np.ndarray[Any, Any], name: str, version: str) -> str:
    """The response's mrm_record_id."""
    with grpc.insecure_channel(addr) as channel:
        reply = oip_grpc.GRPCInferenceServiceStub(channel).ModelInfer(
            infer_request(MODEL, rows, name, version=version), timeout=60
        )
    assert reply.model_version == version
    return str(reply.parameters["mrm_record_id"].string_param)


def in_ledger(addr: str, record_id: str) -> bool:
    with LedgerClient(addr) as ledger:
        try:
            ledger.get_record(record_id)
        except (NotFound, Unavailable):  # not there, or the ledger still coming back
            return False
    return True


def test_a_strict_answer_means_the_record_is_in_the_ledger(
    strict_stack: Stack,
) -> None:
    running, rows, name = strict_stack
    ids: list[str] = []
    missing: list[str] = []
    errors: list[BaseException] = []

    def caller() -> None:  # concurrent callers share group commits
        try:
            with LedgerClient(running.addr) as ledger:
                for _ in range(5):
                    record_id = infer(running.proxy_addr, rows, name, STRICT)
                    ids.append(record_id)
                    try:
                        got = ledger.get_record(record_id)  # right away: no waiting
                    except NotFound:
                        missing.append(record_id)
                        continue
                    assert got.model_version == STRICT
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=caller) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert len(set(ids)) == 30
    assert not missing
    # The non-strict version on the same proxy still answers with a record id.
    assert infer(running.proxy_addr, rows, name, "1.0.0")


def test_with_the_ledger_down_strict_decisions_are_spooled_then_delivered(
    strict_stack: Stack,
) -> None:
    running, rows, name = strict_stack
    switch = LedgerSwitch(running)
    switch.stop()
    try:
        spooled = [infer(running.proxy_addr, rows, name, STRICT) for _ in range(3)]
        began = time.monotonic()
        unstrict = infer(running.proxy_addr, rows, name, "1.0.0")  # never waits on the ledger
        assert time.monotonic() - began < 5.0
    finally:
        switch.start()
    for record_id in [*spooled, unstrict]:
        wait_until(lambda r=record_id: in_ledger(running.addr, r), f"{record_id} arrives")  # type: ignore[misc]


def test_ledger_down_and_spool_full_is_unavailable(tmp_path: Path, pg_url: str) -> None:
    with strict_stack_on(tmp_path, pg_url, proxy_spool_max_records=3) as stack:
        spool_full_is_unavailable(*stack)


def spool_full_is_unavailable(
    running: RunningLedger, rows: np.ndarray[Any, Any], name: str
) -> None:
    switch = LedgerSwitch(running)
    switch.stop()
    try:
        spooled = [infer(running.proxy_addr, rows, name, STRICT) for _ in range(3)]  # the cap
        with pytest.raises(grpc.RpcError) as caught:
            infer(running.proxy_addr, rows, name, STRICT)
        err: Any = caught.value
        assert err.code() == grpc.StatusCode.UNAVAILABLE
        assert f"{MODEL} {STRICT} is strict" in err.details()
        assert "spool is full" in err.details()
        # A non-strict decision is still served; its sample is dropped and counted.
        assert infer(running.proxy_addr, rows, name, "1.0.0")
    finally:
        switch.start()
    for record_id in spooled:
        wait_until(lambda r=record_id: in_ledger(running.addr, r), f"{record_id} arrives")  # type: ignore[misc]
    with LedgerClient(running.addr) as ledger:
        strict_records = list(ledger.query(kind="PREDICTION", model_version=STRICT))
    assert sorted(r.record_id for r in strict_records) == sorted(spooled)  # nothing else


def test_a_strict_version_must_sample_everything(
    ledger_server: RunningLedger, tmp_path: Path
) -> None:
    deploy_gbt(ledger_server, tmp_path)
    with RegistryClient(ledger_server.registry_addr) as reg:
        refs = [
            registry_pb2.ArtifactRef(role=a.role, sha256=a.sha256)
            for a in reg.get_version(MODEL, "1.0.0").artifacts
        ]
        bad = registry_pb2.ModelVersion(
            model_name=MODEL, version="2.0.0", artifacts=refs, sample_rate=0.5, strict=True
        )
        with pytest.raises(InvalidArgumentError) as caught:
            reg.register(bad)
    [(field, why)] = caught.value.field_violations
    assert field == "version.sample_rate"
    assert "a strict version records every decision" in why


def test_deploy_config_strict(tmp_path: Path) -> None:
    model = tmp_path / "model.pkl"
    toml = tmp_path / "mrm.toml"
    toml.write_text('[data]\neval = "e.csv"\ntarget = "y"\n[deploy]\nstrict = true\n')
    assert load_config(model, "1.0.0", {}, toml).strict
    assert not load_config(model, "1.0.0", {"strict": False}, toml).strict  # the flag wins
    with pytest.raises(DeployError, match=r"sample_rate 0\.5 with strict mode"):
        load_config(model, "1.0.0", {"sample_rate": 0.5}, toml)
    toml.write_text('[data]\neval = "e.csv"\ntarget = "y"\n[deploy]\nstrict = "yes"\n')
    with pytest.raises(DeployError, match="want true or false"):
        load_config(model, "1.0.0", {}, toml)
    toml.write_text('[data]\neval = "e.csv"\ntarget = "y"\n')
    args = ["deploy", str(model), "--version", "1.0.0", "--config", str(toml)]
    result = CliRunner().invoke(mrmctl, [*args, "--strict", "--sample-rate", "0.5"])
    assert result.exit_code == 2, result.output
    assert "sample_rate 0.5 with strict mode" in result.output
    assert "Traceback" not in result.output
