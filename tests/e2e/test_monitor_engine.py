"""The monitor's core against a real ledger and registry (PostgreSQL): a deployed
model's decisions, as the proxy records them, drift into an ALERT that is in the
ledger before anyone is told, and a restarted monitor loses nothing."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort  # type: ignore[import-untyped,unused-ignore]
import orjson
import pandas as pd  # type: ignore[import-untyped,unused-ignore]
import pytest

from mrm.client.credentials import ClientAuth
from mrm.client.ledger import LedgerClient
from mrm.client.registry import RegistryClient
from mrm.deploy.schema import onnx_inputs
from mrm.kernel.schema import InputSchema
from mrm.monitor.app import report_base
from mrm.monitor.engine import Monitor
from mrm.proxy.audit import prediction_record
from mrm.v1 import registry_pb2
from tests.conftest import RunningLedger
from tests.e2e.test_deploy import applicants, deploy, project, tree_model
from tests.support.auth import issue

MONITOR_TOML = "[monitor]\nmin_rows = 200\n[[monitor.window]]\nrows = 300\n"


class World:
    def __init__(self, stack: RunningLedger, tmp: Path) -> None:
        tokens = stack.settings.resolved_tokens_file()
        self.stack = stack
        self.proxy = LedgerClient(
            stack.addr, auth=ClientAuth(issue(tokens, "test-proxy", "proxy"), None, "proxy")
        )
        self.monitor_auth = ClientAuth(issue(tokens, "mrm-monitor", "monitor"), None, "monitor")
        self.reader = LedgerClient(stack.addr, auth=self.monitor_auth)
        with RegistryClient(stack.registry_addr, auth=self.monitor_auth) as reg:
            version = reg.get_version("credit-risk", "1.0.0")
            shas = {a.role: a.sha256 for a in version.artifacts}
            onnx = reg.download(shas[registry_pb2.ARTIFACT_ROLE_ONNX_MODEL])
            self.schema = InputSchema.from_json(
                reg.download(shas[registry_pb2.ARTIFACT_ROLE_INPUT_SCHEMA])
            )
        self.session = ort.InferenceSession(onnx, providers=["CPUExecutionProvider"])
        self.sent = 0

    def monitor(self, notify: Any = None) -> Monitor:
        # The stack's own monitor follows the same ledger and derives the same record
        # ids: the records must match it byte for byte (the link too) to be duplicates.
        base = report_base(self.stack.settings)
        return Monitor(
            LedgerClient(self.stack.addr, auth=self.monitor_auth),
            RegistryClient(self.stack.registry_addr, auth=self.monitor_auth),
            notify=notify,
            page_size=100,
            report_link=f"{base}/reports/drift/{{model}}?version={{version}}",
        )

    def serve(self, frame: pd.DataFrame, version: str = "1.0.0") -> list[str]:
        """Run each row through ONNX Runtime and record it as the proxy does."""
        names = [i.name for i in self.session.get_inputs()]
        records = []
        for i in range(len(frame)):
            feeds = dict(zip(names, onnx_inputs(self.schema, frame.iloc[[i]]), strict=True))
            out = self.session.run(None, feeds)
            outputs = {
                o.name: np.asarray(v) for o, v in zip(self.session.get_outputs(), out, strict=True)
            }
            self.sent += 1
            records.append(
                prediction_record(
                    record_id=_uuid7(),
                    model_name="credit-risk",
                    model_version=version,
                    onnx_sha256="0" * 64,
                    subject="",
                    trace_id="",
                    span_id="",
                    inputs=feeds,
                    outputs=outputs,
                    request_id=str(self.sent),
                )
            )
        for start in range(0, len(records), 500):
            self.proxy.append(records[start : start + 500])
        return [r.record_id for r in records]

    def kinds(self, kind: str) -> list[Any]:
        return list(self.reader.query(kind=kind))


def _uuid7() -> str:
    from mrm.client.ids import new_record_id

    return new_record_id()


def _drain(monitor: Monitor) -> None:
    while monitor.step():
        pass


def _applications(n: int, seed: int, income_factor: float = 1.0) -> pd.DataFrame:
    frame = applicants(n, seed)[["income", "debt_to_income", "credit_history_months"]]
    frame["income"] = frame["income"] * income_factor
    return frame


@pytest.fixture
def world(
    pg_ledger_server: RunningLedger, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> World:
    project(tmp_path, tree_model)
    (tmp_path / "mrm.toml").write_text((tmp_path / "mrm.toml").read_text() + MONITOR_TOML)
    result = deploy(
        pg_ledger_server, tmp_path, "model.pkl", "--version", "1.0.0", monkeypatch=monkeypatch
    )
    assert result.exit_code == 0, result.output
    return World(pg_ledger_server, tmp_path)


def test_drift_raises_an_alert_that_is_in_the_ledger_before_it_is_told(world: World) -> None:
    told: list[tuple[str, dict[str, Any]]] = []

    def notify(alert_id: str, alert: dict[str, Any]) -> None:
        # The ledger has the alert before any notification goes out.
        assert world.reader.get_record(alert_id).kind
        told.append((alert_id, alert))

    monitor = world.monitor(notify)
    monitor.resume()
    world.serve(_applications(300, 11))
    _drain(monitor)
    drift = world.kinds("DRIFT")
    assert len(drift) == 1
    assert world.kinds("ALERT") == []  # the same population: silent
    window = orjson.loads(drift[0].body_json)["window"]
    assert window["rows"] == 300
    assert window["unreadable"] == 0

    shifted = world.serve(_applications(300, 12, income_factor=1.8))
    _drain(monitor)
    alerts = world.kinds("ALERT")
    assert alerts, "a 1.8x income shift raised no alert"
    bodies = [orjson.loads(a.body_json) for a in alerts]
    assert {b["feature"] for b in bodies if b["rule"] == "feature_drift"} == {"income"}
    assert all(e in shifted for b in bodies for e in b["examples"])
    assert [t[0] for t in told] == [a.record_id for a in alerts]
    assert all(a.actor == "mrm-monitor" for a in alerts)
    # One alert per problem (rule, feature), holding every metric the window breached.
    problems = [(b["rule"], b["feature"]) for b in bodies]
    assert len(problems) == len(set(problems))
    (income,) = [b for b in bodies if (b["rule"], b["feature"]) == ("feature_drift", "income")]
    report = orjson.loads(world.kinds("DRIFT")[1].body_json)["report"]
    crossed = {
        (b["metric"], b["value"], b["threshold"])
        for b in report["breaches"]
        if (b["rule"], b["feature"]) == ("feature_drift", "income")
    }
    assert len(crossed) >= 2, "a 1.8x income shift should cross several thresholds"
    assert {(b["metric"], b["value"], b["threshold"]) for b in income["breaches"]} == crossed
    worst = max(income["breaches"], key=lambda b: b["value"] / b["threshold"])
    assert (income["metric"], income["value"], income["threshold"]) == (
        worst["metric"],
        worst["value"],
        worst["threshold"],
    )
    assert income["summary"].startswith("income drifted: ")
    assert f"(>= {worst['threshold']:g})" in income["summary"]

    # Still drifted in the next window: the alert is firing, not raised again.
    world.serve(_applications(300, 13, income_factor=1.8))
    _drain(monitor)
    assert len(world.kinds("DRIFT")) == 3
    assert len(world.kinds("ALERT")) == len(alerts)

    # A monitor that forgot everything replays the ledger into the same record ids:
    # the ledger has them all (duplicates), so nothing new is appended.
    amnesiac = world.monitor()
    _drain(amnesiac)
    assert amnesiac.evaluated == 3
    assert len(world.kinds("DRIFT")) == 3
    assert len(world.kinds("ALERT")) == len(alerts)


def test_a_monitor_killed_mid_window_loses_nothing(world: World) -> None:
    first = world.monitor()
    first.resume()
    world.serve(_applications(300, 21))
    _drain(first)
    half = world.serve(_applications(150, 22, income_factor=1.8))
    _drain(first)  # half a window read, nothing recorded for it yet
    assert len(world.kinds("DRIFT")) == 1
    del first  # killed: whatever it held in memory is gone

    second = world.monitor()
    second.resume()
    world.serve(_applications(150, 23, income_factor=1.8))
    _drain(second)
    drift = world.kinds("DRIFT")
    assert len(drift) == 2
    window = orjson.loads(drift[1].body_json)["window"]
    assert window["rows"] == 300  # both halves, across the restart
    first_leaf = world.reader.get_record(half[0]).leaf_index
    assert window["first_leaf"] == first_leaf
    assert world.kinds("ALERT")

    # A third run over the same ledger appends nothing new.
    before = (len(world.kinds("DRIFT")), len(world.kinds("ALERT")))
    third = world.monitor()
    third.resume()
    _drain(third)
    assert (len(world.kinds("DRIFT")), len(world.kinds("ALERT"))) == before
    assert third.firing  # the unacknowledged alert is still known to be firing
