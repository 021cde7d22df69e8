"""Live performance from OUTCOME records against a real ledger and registry
(PostgreSQL): outcomes joined to their decisions' predictions, judged every
`min_rows` of them against the deploy-time metrics; a drop raises a
"performance" ALERT that is in the ledger before anyone is told, and the
window's live metrics are in its DRIFT record, which GetDrift returns."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest

from mrm.client.channel import ServiceClient
from mrm.client.ids import new_record_id
from mrm.client.ledger import LedgerClient, new_record
from mrm.monitor.live import DECISION_KEY, LABEL_KEY, predicted_label
from mrm.v1 import monitor_pb2, monitor_pb2_grpc
from tests.conftest import RunningLedger
from tests.support.credit import deploy, project, tree_model
from tests.support.monitored import MONITOR_TOML, World, applications, drain


@pytest.fixture
def deployed(
    pg_ledger_server: RunningLedger, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> World:
    project(tmp_path, tree_model)
    (tmp_path / "mrm.toml").write_text((tmp_path / "mrm.toml").read_text() + MONITOR_TOML)
    result = deploy(
        pg_ledger_server, tmp_path, "model.pkl", "--version", "1.0.0", monkeypatch=monkeypatch
    )
    assert result.exit_code == 0, result.output
    return World(pg_ledger_server, tmp_path)


def _outcomes(ledger: LedgerClient, decisions: list[tuple[str, str]]) -> None:
    """OUTCOME records as OutcomeService.RecordOutcomes writes them, appended directly."""
    records = [
        new_record(
            "OUTCOME",
            {DECISION_KEY: rid, LABEL_KEY: label, "observed_at": "2026-12-01T00:00:00Z"},
            record_id=new_record_id(),
            model_name="credit-risk",
            model_version="1.0.0",
        )
        for rid, label in decisions
    ]
    for start in range(0, len(records), 500):
        ledger.append(records[start : start + 500])


def _predicted(world: World, ids: list[str]) -> list[str]:
    out = []
    for rid in ids:
        label = predicted_label(orjson.loads(world.reader.get_record(rid).body_json))
        assert label is not None
        out.append(str(label))
    return out


def _flip(label: str) -> str:
    return "0" if label == "1" else "1"


class MonitorApi(ServiceClient):
    def drift(self, model: str) -> list[Any]:
        stub = monitor_pb2_grpc.MonitorServiceStub(self._channel)
        req = monitor_pb2.GetDriftRequest(model_name=model, page_size=100)
        return list(self._call(stub.GetDrift, req).windows)


def _performance(world: World) -> list[dict[str, Any]]:
    out = []
    for rec in world.kinds("DRIFT"):
        body = orjson.loads(rec.body_json)
        if body["window"].get("source") == "outcomes":
            out.append(body | {"record_id": rec.record_id})
    return out


def test_outcomes_worse_than_at_deploy_raise_a_performance_alert(
    deployed: World, pg_ledger_server: RunningLedger
) -> None:
    world = deployed
    told: list[str] = []

    def notify(alert_id: str, alert: dict[str, Any]) -> None:
        assert world.reader.get_record(alert_id).kind  # recorded first
        told.append(alert_id)

    monitor = world.monitor(notify)
    monitor.resume()
    served = world.serve(applications(600, 91))
    predicted = _predicted(world, served)
    drain(monitor)
    writer = LedgerClient(world.stack.addr, auth=world.monitor_auth)

    # 200 right answers (and one about a decision that does not exist): silent.
    _outcomes(writer, [("0190e0d2-0000-7000-8000-00000000dead", "1")])
    _outcomes(writer, list(zip(served[:200], predicted[:200], strict=True)))
    drain(monitor)
    (good,) = _performance(world)
    assert good["window"]["rows"] == 200
    assert good["window"]["unjoined"] == 1
    assert good["metrics"]["live"]["accuracy"] == 1.0
    assert good["metrics"]["deploy"]["accuracy"] < 1.0
    assert good["report"]["breaches"] == []
    assert [a for a in world.kinds("ALERT")] == []

    # 80 of the next 200 wrong: accuracy 0.6, far below the deploy-time value.
    labels = [_flip(p) if i < 80 else p for i, p in enumerate(predicted[200:400])]
    _outcomes(writer, list(zip(served[200:400], labels, strict=True)))
    drain(monitor)
    bad = _performance(world)[1]
    assert bad["metrics"]["live"]["accuracy"] == pytest.approx(0.6)
    assert bad["report"]["p_values"]["accuracy"] < 0.001  # the drop is no sampling noise
    assert {t["name"] for t in bad["report"]["tests"]} >= {"accuracy", "precision", "recall"}
    # One alert for the problem, whichever metrics fell: each of them is in its body.
    alerts = [orjson.loads(a.body_json) | {"id": a.record_id} for a in world.kinds("ALERT")]
    (alert,) = alerts
    assert alert["rule"] == "performance"
    assert alert["feature"] == ""
    fell = {b["metric"]: b for b in alert["breaches"]}
    assert {b["metric"] for b in bad["report"]["breaches"]} == set(fell)
    deploy_accuracy = bad["metrics"]["deploy"]["accuracy"]
    assert fell["accuracy"]["value"] == pytest.approx(deploy_accuracy - 0.6)
    worst = max(alert["breaches"], key=lambda b: b["value"] / b["threshold"])
    assert (alert["metric"], alert["value"]) == (worst["metric"], worst["value"])
    assert alert["summary"].startswith("live performance fell: ")
    assert f"accuracy 0.600 vs {deploy_accuracy:.3f} at deploy" in alert["summary"]
    assert alert["drift_record_id"] == bad["record_id"]
    assert all(e in served[200:400] for e in alert["examples"])
    assert told == [alert["id"]]

    # GetDrift shows the window's live metrics.
    with MonitorApi(pg_ledger_server.stack.stack.monitor_addr) as api:
        windows = [orjson.loads(w.body_json) for w in api.drift("credit-risk")]
    shown = [w["metrics"]["live"]["accuracy"] for w in windows if "metrics" in w]
    assert sorted(shown) == pytest.approx([0.6, 1.0])

    # A restarted monitor joins outcomes of decisions it never read (looked up).
    del monitor
    again = world.monitor()
    again.resume()
    assert again.next_leaf > world.reader.get_record(served[-1]).leaf_index
    _outcomes(writer, list(zip(served[400:600], predicted[400:600], strict=True)))
    drain(again)
    third = _performance(world)[2]
    assert third["window"]["rows"] == 200
    assert third["window"]["unjoined"] == 0
    assert third["metrics"]["live"]["accuracy"] == 1.0
    assert len(world.kinds("ALERT")) == len(alerts)  # recovered: nothing new raised
