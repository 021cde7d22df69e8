"""The monitor's core against a real ledger and registry (PostgreSQL): a deployed
model's decisions, as the proxy records them, drift into an ALERT that is in the
ledger before anyone is told, and a restarted monitor loses nothing."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest

from tests.conftest import RunningLedger
from tests.support.credit import deploy, project, tree_model
from tests.support.monitored import MONITOR_TOML, World, applications, drain


@pytest.fixture
def monitored_stack(
    pg_ledger_server: RunningLedger, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> World:
    project(tmp_path, tree_model)
    (tmp_path / "mrm.toml").write_text((tmp_path / "mrm.toml").read_text() + MONITOR_TOML)
    result = deploy(
        pg_ledger_server, tmp_path, "model.pkl", "--version", "1.0.0", monkeypatch=monkeypatch
    )
    assert result.exit_code == 0, result.output
    return World(pg_ledger_server, tmp_path)


def test_drift_raises_an_alert_that_is_in_the_ledger_before_it_is_told(
    monitored_stack: World,
) -> None:
    told: list[tuple[str, dict[str, Any]]] = []

    def notify(alert_id: str, alert: dict[str, Any]) -> None:
        # The ledger has the alert before any notification goes out.
        assert monitored_stack.reader.get_record(alert_id).kind
        told.append((alert_id, alert))

    monitor = monitored_stack.monitor(notify)
    monitor.resume()
    monitored_stack.serve(applications(300, 11))
    drain(monitor)
    drift = monitored_stack.kinds("DRIFT")
    assert len(drift) == 1
    assert monitored_stack.kinds("ALERT") == []  # the same population: silent
    window = orjson.loads(drift[0].body_json)["window"]
    assert window["rows"] == 300
    assert window["unreadable"] == 0

    shifted = monitored_stack.serve(applications(300, 12, income_factor=1.8))
    drain(monitor)
    alerts = monitored_stack.kinds("ALERT")
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
    report = orjson.loads(monitored_stack.kinds("DRIFT")[1].body_json)["report"]
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
    monitored_stack.serve(applications(300, 13, income_factor=1.8))
    drain(monitor)
    assert len(monitored_stack.kinds("DRIFT")) == 3
    assert len(monitored_stack.kinds("ALERT")) == len(alerts)

    # A monitor that forgot everything replays the ledger into the same record ids:
    # the ledger has them all (duplicates), so nothing new is appended.
    amnesiac = monitored_stack.monitor()
    drain(amnesiac)
    assert amnesiac.evaluated == 3
    assert len(monitored_stack.kinds("DRIFT")) == 3
    assert len(monitored_stack.kinds("ALERT")) == len(alerts)


def test_a_monitor_killed_mid_window_loses_nothing(monitored_stack: World) -> None:
    first = monitored_stack.monitor()
    first.resume()
    monitored_stack.serve(applications(300, 21))
    drain(first)
    half = monitored_stack.serve(applications(150, 22, income_factor=1.8))
    drain(first)  # half a window read, nothing recorded for it yet
    assert len(monitored_stack.kinds("DRIFT")) == 1
    del first  # killed: whatever it held in memory is gone

    second = monitored_stack.monitor()
    second.resume()
    monitored_stack.serve(applications(150, 23, income_factor=1.8))
    drain(second)
    drift = monitored_stack.kinds("DRIFT")
    assert len(drift) == 2
    window = orjson.loads(drift[1].body_json)["window"]
    assert window["rows"] == 300  # both halves, across the restart
    first_leaf = monitored_stack.reader.get_record(half[0]).leaf_index
    assert window["first_leaf"] == first_leaf
    assert monitored_stack.kinds("ALERT")

    # A third run over the same ledger appends nothing new.
    before = (len(monitored_stack.kinds("DRIFT")), len(monitored_stack.kinds("ALERT")))
    third = monitored_stack.monitor()
    third.resume()
    drain(third)
    assert (len(monitored_stack.kinds("DRIFT")), len(monitored_stack.kinds("ALERT"))) == before
    assert third.firing  # the unacknowledged alert is still known to be firing
