"""Every configured window is judged (mrm.monitor.engine), against an in-memory ledger:
two specs each get their own windows, DRIFT ids and restart position; a single-window
configuration keeps the record ids earlier monitors wrote, so their ledgers dedupe."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import orjson
import pandas as pd  # type: ignore[import-untyped,unused-ignore]
import pytest

from mrm.client.ledger import new_record
from mrm.drift.config import MonitorConfig, WindowSpec
from mrm.drift.profile import ReferenceProfile, build_profile
from mrm.kernel.schema import Feature, InputSchema
from mrm.monitor.engine import Monitor, Reference
from tests.support.monitor_fakes import FakeLedger, FakeRegistry, S, drain

MODEL, VERSION = "m", "1.0.0"


SCHEMA = InputSchema((Feature("x", "float", 0), Feature("y", "float", 1)), "tensor")


def _profile(config: MonitorConfig) -> ReferenceProfile:
    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"x": rng.normal(0, 1, 2000), "y": rng.normal(0, 1, 2000)})
    labels = (frame["x"] > 0).astype(int).tolist()
    kinds: dict[str, Any] = {"x": "numeric", "y": "numeric"}
    doc = build_profile(frame, kinds, labels, None, {"accuracy": 0.9}, config)
    return ReferenceProfile.from_json(doc)


def _monitor(ledger: FakeLedger, windows: Sequence[WindowSpec]) -> Monitor:
    config = MonitorConfig(windows=tuple(windows), min_rows=50)
    monitor = Monitor(ledger, FakeRegistry(), page_size=50)  # type: ignore[arg-type]
    monitor.references[(MODEL, VERSION)] = Reference(_profile(config), SCHEMA, config)
    return monitor


def _serve(ledger: FakeLedger, n: int, seed: int, shift: float = 0.0, gap_s: int = 10) -> None:
    """n one-row decisions, `gap_s` seconds apart; x shifted by `shift`."""
    rng = np.random.default_rng(seed)
    for i in range(n):
        x, y = float(rng.normal(shift, 1)), float(rng.normal(0, 1))
        body = {
            "request": {"inputs": {"input": [[x, y]]}},
            "response": {"label": [int(x > 0)]},
        }
        ledger.clock_us += gap_s * S
        rid = f"0190e0d2-0000-7000-8000-{seed:06d}{i:06d}"
        rec = new_record("PREDICTION", body, record_id=rid, model_name=MODEL, model_version=VERSION)
        ledger.add(rec, ledger.clock_us)


def _windows(ledger: FakeLedger) -> list[tuple[str, int, int]]:
    out = []
    for rec in ledger.kinds("DRIFT"):
        w = orjson.loads(rec.body_json)["window"]
        out.append((str(w["spec"]), w["first_leaf"], w["last_leaf"]))
    return out


ROWS = WindowSpec("rows", 100)
HOURLY = WindowSpec("seconds", 3600, step=600)


def test_a_single_window_keeps_the_record_ids_earlier_monitors_wrote() -> None:
    """Pinned from the monitor that judged only the first window: a ledger it wrote
    must dedupe when this one replays it."""
    ledger = FakeLedger()
    monitor = _monitor(ledger, [ROWS])
    _serve(ledger, 100, 1)
    _serve(ledger, 100, 2, shift=2.0)
    drain(monitor)
    drift = ledger.kinds("DRIFT")
    assert [r.record_id for r in drift] == [
        "019b76e9-ea40-7932-b4d1-cb9dccbeab85",
        "019b76f9-2c80-785a-b755-835d9a015370",
    ]
    bodies = {a.record_id: orjson.loads(a.body_json) for a in ledger.kinds("ALERT")}
    alerts = {(b["rule"], b["feature"]): rid for rid, b in bodies.items()}
    assert alerts[("feature_drift", "x")] == "019b76f9-2c80-7389-97be-db7a5400a775"
    assert alerts[("prediction_drift", "")] == "019b76f9-2c80-745f-abb9-a11c5ce310ec"


def test_two_windows_are_judged_independently() -> None:
    ledger = FakeLedger()
    monitor = _monitor(ledger, [ROWS, HOURLY])
    # 10 s apart: 100 rows every 1000 s; the hourly window (step 10 min) first
    # closes at 3600 s, then every 600 s.
    _serve(ledger, 450, 3)
    drain(monitor)
    windows = _windows(ledger)
    rows = [w for w in windows if w[0] == str(ROWS.to_json())]
    hourly = [w for w in windows if w[0] == str(HOURLY.to_json())]
    assert [(f, last) for _, f, last in rows] == [(0, 99), (100, 199), (200, 299), (300, 399)]
    # Decision i is at (i + 1) * 10 s: the one at 3610 s (leaf 360) closes the first
    # hour, leaf 420 (4210 s) the next: each the last hour before it.
    assert [(f, last) for _, f, last in hourly] == [(0, 359), (60, 419)]
    ids = [r.record_id for r in ledger.kinds("DRIFT")]
    assert len(set(ids)) == len(ids) == 6
    assert monitor.evaluated == 6


def test_the_same_leaves_in_two_specs_are_two_records() -> None:
    """Two tumbling windows that both start at leaf 0: the spec is in the id."""
    ledger = FakeLedger()
    monitor = _monitor(ledger, [ROWS, WindowSpec("rows", 200)])
    _serve(ledger, 200, 4)
    drain(monitor)
    windows = _windows(ledger)
    assert sorted(windows) == sorted(
        [
            (str(ROWS.to_json()), 0, 99),
            (str(ROWS.to_json()), 100, 199),
            (str({"rows": 200}), 0, 199),
        ]
    )
    assert len({r.record_id for r in ledger.kinds("DRIFT")}) == 3


def test_reordered_windows_derive_the_same_ids() -> None:
    first, second = FakeLedger(), FakeLedger()
    for ledger, order in ((first, [ROWS, HOURLY]), (second, [HOURLY, ROWS])):
        _serve(ledger, 450, 5, shift=2.0)
        drain(_monitor(ledger, order))
    assert {r.record_id for r in first.kinds("DRIFT")} == {
        r.record_id for r in second.kinds("DRIFT")
    }
    assert {r.record_id for r in first.kinds("ALERT")} == {
        r.record_id for r in second.kinds("ALERT")
    }


def test_a_problem_firing_from_one_window_is_not_raised_by_the_other() -> None:
    ledger = FakeLedger()
    monitor = _monitor(ledger, [ROWS, HOURLY])
    _serve(ledger, 450, 6, shift=2.0)
    drain(monitor)
    alerts = [orjson.loads(a.body_json) for a in ledger.kinds("ALERT")]
    keys = [(a["rule"], a["feature"]) for a in alerts]
    assert ("feature_drift", "x") in keys
    assert len(keys) == len(set(keys))  # six drifted windows, one alert per problem
    # The 100-row window saw every problem first; the hourly ones saw them too.
    assert all(a["window"]["spec"] == ROWS.to_json() for a in alerts)
    hourly = [
        orjson.loads(r.body_json)["report"]
        for r in ledger.kinds("DRIFT")
        if orjson.loads(r.body_json)["window"]["spec"] == HOURLY.to_json()
    ]
    assert len(hourly) == 2
    assert all(
        ("feature_drift", "x") in {(b["rule"], b["feature"]) for b in report["breaches"]}
        for report in hourly
    )


def test_a_restart_resumes_each_window_where_its_latest_record_left_off() -> None:
    ledger = FakeLedger()
    first = _monitor(ledger, [ROWS, HOURLY])
    _serve(ledger, 450, 7)
    drain(first)
    before = _windows(ledger)
    del first

    second = _monitor(ledger, [ROWS, HOURLY])
    second.resume()
    # The rows window needs leaves from 400 on, the hourly one from the first decision
    # of its latest window (60): the least of the two.
    assert second.next_leaf == 60
    _serve(ledger, 400, 8)  # in leaves after the records judged so far
    drain(second)
    decision = {r.leaf_index: i for i, r in enumerate(ledger.kinds("PREDICTION"))}
    after = _windows(ledger)
    assert after[: len(before)] == before
    new = [(s, decision[f], decision[last]) for s, f, last in after[len(before) :]]
    assert [(f, last) for s, f, last in new if s == str(ROWS.to_json())] == [
        (400, 499),
        (500, 599),
        (600, 699),
        (700, 799),
    ]
    # 10 min after the window recorded before the restart, and every 10 min on.
    assert [(f, last) for s, f, last in new if s == str(HOURLY.to_json())] == [
        (120 + 60 * k, 479 + 60 * k) for k in range(7)
    ]

    # Knowing nothing, from leaf 0: the same windows, the same ids, nothing appended.
    leaves = len(ledger.records)
    third = _monitor(ledger, [ROWS, HOURLY])
    drain(third)
    assert third.evaluated == len(after)
    assert len(ledger.records) == leaves


def test_a_drift_record_without_a_spec_is_the_first_window() -> None:
    """Records written before bodies named their spec resume the first window."""
    ledger = FakeLedger()
    monitor = _monitor(ledger, [ROWS])
    _serve(ledger, 150, 9)
    drain(monitor)
    (drift,) = ledger.kinds("DRIFT")
    body = orjson.loads(drift.body_json)
    del body["window"]["spec"]
    drift.body_json = orjson.dumps(body).decode()
    again = _monitor(ledger, [ROWS])
    again.resume()
    assert again.next_leaf == 100


@pytest.mark.parametrize(
    ("spec", "label"),
    [
        (ROWS, "rows=100"),
        (HOURLY, "seconds=3600/step=600"),
        (WindowSpec("rows", 5, 1), "rows=5/step=1"),
    ],
)
def test_window_labels(spec: WindowSpec, label: str) -> None:
    assert spec.label == label
