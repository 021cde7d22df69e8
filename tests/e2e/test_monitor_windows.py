"""The monitor's windows against a real ledger and registry (PostgreSQL): rolling
windows that survive a restart with the same records, two windows of one version
judged side by side across a restart, a restart that reads from the least leaf
any version still needs, and a large same-population window that stays silent."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest

from mrm.v1 import ledger_pb2
from tests.conftest import RunningLedger
from tests.support.credit import deploy, project, tree_model
from tests.support.monitored import MONITOR_TOML, World, applications, drain

ROLLING_TOML = "[monitor]\nmin_rows = 200\n[[monitor.window]]\nrows = 300\nstep = 100\n"
LARGE_TOML = "[monitor]\nmin_rows = 200\n[[monitor.window]]\nrows = 3000\n"
TWO_TOML = (
    "[monitor]\nmin_rows = 100\n"
    "[[monitor.window]]\nrows = 300\n"
    "[[monitor.window]]\nrows = 200\nstep = 100\n"
)


def _world(stack: RunningLedger, tmp: Path, monkeypatch: pytest.MonkeyPatch, toml: str) -> World:
    project(tmp, tree_model)
    (tmp / "mrm.toml").write_text((tmp / "mrm.toml").read_text() + toml)
    result = deploy(stack, tmp, "model.pkl", "--version", "1.0.0", monkeypatch=monkeypatch)
    assert result.exit_code == 0, result.output
    return World(stack, tmp)


def _windows(world: World, version: str = "1.0.0") -> list[dict[str, Any]]:
    return [
        orjson.loads(r.body_json)["window"]
        for r in world.kinds("DRIFT")
        if r.model_version == version
    ]


def test_rolling_windows_overlap_by_step_and_survive_a_restart(
    pg_ledger_server: RunningLedger, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    world = _world(pg_ledger_server, tmp_path, monkeypatch, ROLLING_TOML)
    first = world.monitor()
    first.resume()
    served = world.serve(applications(300, 31))
    drain(first)
    served += world.serve(applications(250, 32))
    drain(first)
    leaf = {rid: world.reader.get_record(rid).leaf_index for rid in served}
    windows = _windows(world)
    # Full at 300 decisions, then every 100 more over the last 300.
    assert [(w["first_leaf"], w["last_leaf"]) for w in windows] == [
        (leaf[served[0]], leaf[served[299]]),
        (leaf[served[100]], leaf[served[399]]),
        (leaf[served[200]], leaf[served[499]]),
    ]
    assert all(w["rows"] == 300 and w["spec"] == {"rows": 300, "step": 100} for w in windows)
    del first  # killed 50 decisions into the next step

    second = world.monitor()
    second.resume()
    assert second.next_leaf == leaf[served[200]]  # the latest window's first decision
    served += world.serve(applications(50, 33))
    drain(second)
    leaf.update({rid: world.reader.get_record(rid).leaf_index for rid in served[550:]})
    windows = _windows(world)
    assert len(windows) == 4
    assert (windows[3]["first_leaf"], windows[3]["last_leaf"]) == (
        leaf[served[300]],
        leaf[served[599]],
    )
    assert windows[3]["rows"] == 300

    # Judged again from scratch, the same windows are the same records: nothing new.
    drift_ids = [r.record_id for r in world.kinds("DRIFT")]
    third = world.monitor()  # knowing nothing: from leaf 0
    drain(third)
    assert third.evaluated == 4
    assert [r.record_id for r in world.kinds("DRIFT")] == drift_ids


def test_two_windows_are_each_judged_across_a_restart(
    pg_ledger_server: RunningLedger, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    world = _world(pg_ledger_server, tmp_path, monkeypatch, TWO_TOML)
    tumbling, rolling = {"rows": 300}, {"rows": 200, "step": 100}
    first = world.monitor()
    first.resume()
    served = world.serve(applications(350, 61))
    drain(first)

    def by_spec(spec: dict[str, int]) -> list[tuple[int, int]]:
        index = {world.reader.get_record(rid).leaf_index: i for i, rid in enumerate(served)}
        return [
            (index[w["first_leaf"]], index[w["last_leaf"]])
            for w in _windows(world)
            if w["spec"] == spec
        ]

    assert by_spec(tumbling) == [(0, 299)]
    assert by_spec(rolling) == [(0, 199), (100, 299)]
    del first  # killed 50 decisions into the next tumbling window

    second = world.monitor()
    second.resume()
    # The tumbling window needs decision 300 on, the rolling one its latest window's
    # first decision (100): the least of the two.
    assert second.next_leaf == world.reader.get_record(served[100]).leaf_index
    served += world.serve(applications(250, 62, income_factor=1.8))
    drain(second)
    assert by_spec(tumbling) == [(0, 299), (300, 599)]
    assert by_spec(rolling) == [(0, 199), (100, 299), (200, 399), (300, 499), (400, 599)]
    drift = world.kinds("DRIFT")
    assert len({r.record_id for r in drift}) == len(drift) == 7
    # One alert per problem, whichever window saw it first; the others do not repeat it.
    alerts = [orjson.loads(a.body_json) for a in world.kinds("ALERT")]
    assert ("feature_drift", "income") in {(a["rule"], a["feature"]) for a in alerts}
    assert len({(a["rule"], a["feature"]) for a in alerts}) == len(alerts)

    # Judged again from leaf 0, every window of both specs is a duplicate.
    before = [r.record_id for r in world.reader.query()]
    third = world.monitor()
    drain(third)
    assert third.evaluated == 7
    assert [r.record_id for r in world.reader.query()] == before


def test_a_restart_reads_from_the_least_leaf_a_version_still_needs(
    pg_ledger_server: RunningLedger, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    world = _world(pg_ledger_server, tmp_path, monkeypatch, MONITOR_TOML)
    result = deploy(
        pg_ledger_server, tmp_path, "model.pkl", "--version", "1.1.0", monkeypatch=monkeypatch
    )
    assert result.exit_code == 0, result.output
    first = world.monitor()
    first.resume()
    newer = world.serve(applications(50, 41), version="1.1.0")  # no window yet
    world.serve(applications(300, 42))
    drain(first)
    assert len(_windows(world)) == 1
    assert _windows(world, "1.1.0") == []
    del first
    older = world.serve(applications(120, 43))  # half of 1.0.0's next window

    second = world.monitor()
    second.resume()
    # 1.0.0 needs the leaves after its window, 1.1.0 (no window yet) its first decision.
    assert second.next_leaf == world.reader.get_record(newer[0]).leaf_index
    start = second.next_leaf
    drain(second)
    newest = world.reader.query_page(ledger_pb2.QueryRecordsRequest(newest_first=True, page_size=1))
    assert second.processed == newest.records[0].leaf_index + 1 - start  # nothing before it

    world.serve(applications(250, 44), version="1.1.0")
    world.serve(applications(180, 45))
    drain(second)
    (v11,) = _windows(world, "1.1.0")
    assert v11["first_leaf"] == world.reader.get_record(newer[0]).leaf_index
    assert v11["rows"] == 300
    v10 = _windows(world)
    assert len(v10) == 2
    assert v10[1]["first_leaf"] == world.reader.get_record(older[0]).leaf_index
    assert v10[1]["rows"] == 300

    # Both versions have windows now: after the earlier of their latest ones.
    world.serve(applications(10, 46))
    third = world.monitor()
    third.resume()
    assert third.next_leaf == min(v11["last_leaf"], v10[1]["last_leaf"]) + 1
    assert third.next_leaf > start


def test_a_large_window_of_the_same_population_is_silent(
    pg_ledger_server: RunningLedger, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    world = _world(pg_ledger_server, tmp_path, monkeypatch, LARGE_TOML)
    monitor = world.monitor()
    monitor.resume()
    world.serve(applications(3000, 51))
    drain(monitor)
    (drift,) = world.kinds("DRIFT")
    body = orjson.loads(drift.body_json)
    assert body["window"]["rows"] == 3000
    assert body["report"]["judged"]
    assert body["report"]["breaches"] == []
    assert world.kinds("ALERT") == []

    # The same monitor is not deaf: the next 3000, with incomes 1.5x, alert.
    world.serve(applications(3000, 52, income_factor=1.5))
    drain(monitor)
    assert {orjson.loads(a.body_json)["feature"] for a in world.kinds("ALERT")} >= {"income"}
