"""`mrmctl drift` and `mrmctl alerts` as an operator uses them, and MonitorService's
answers to bad requests, against a real stack: a deployed model whose traffic,
sent through the proxy, drifted until the running monitor raised alerts."""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Iterator

import grpc
import orjson
import pytest
from click.testing import CliRunner, Result
from google.protobuf.timestamp_pb2 import Timestamp

from mrm.cli.main import mrmctl
from mrm.client.ids import new_record_id
from mrm.client.monitor import MonitorClient
from mrm.v1 import ledger_pb2, monitor_pb2, monitor_pb2_grpc
from tests.support.auth import TEST_PRINCIPAL, channel
from tests.support.monitor_cli import (
    FEATURES,
    MODEL,
    VERSION,
    WINDOW_ROWS,
    Drifted,
    drifted_stack,
    rpc_error,
)

INVALID = grpc.StatusCode.INVALID_ARGUMENT


@pytest.fixture(scope="module")
def drifted_monitor(
    tmp_path_factory: pytest.TempPathFactory, postgres_server: str
) -> Iterator[Drifted]:
    yield from drifted_stack(tmp_path_factory.mktemp("monitor-cli"))


@pytest.fixture(scope="module")
def judged(tmp_path_factory: pytest.TempPathFactory, postgres_server: str) -> Iterator[Drifted]:
    """Another drifted stack, whose decisions then all turned out "1" (the model
    mostly said "0"): the monitor judges an outcomes window too."""
    for drifted_monitor in drifted_stack(tmp_path_factory.mktemp("monitor-outcomes")):
        outcomes = [
            monitor_pb2.Outcome(mrm_record_id=d, label="1") for d in drifted_monitor.decisions
        ]
        with MonitorClient(drifted_monitor.monitor_addr) as monitor:
            assert monitor.record_outcomes(outcomes).recorded == len(outcomes)
            deadline = time.monotonic() + 90
            while not any(
                orjson.loads(r.body_json)["window"].get("source") == "outcomes"
                for r in monitor.drift(MODEL)
            ):
                assert time.monotonic() < deadline, "no outcomes window was judged"
                time.sleep(0.2)
        yield drifted_monitor


@pytest.fixture
def stub(drifted_monitor: Drifted) -> Iterator[monitor_pb2_grpc.MonitorServiceStub]:
    with channel(drifted_monitor.monitor_addr) as ch:
        yield monitor_pb2_grpc.MonitorServiceStub(ch)


def _one_error(result: Result, code: int, *needles: str) -> str:
    """A failed mrmctl run: `code`, exactly one line on stderr naming `needles`."""
    assert result.exit_code == code, (result.exit_code, result.output)
    assert "Traceback" not in result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


# -- drift -----------------------------------------------------------------------------


def test_drift_json_puts_the_drifted_feature_first(drifted_monitor: Drifted) -> None:
    done = drifted_monitor.run("drift", MODEL, "--output", "json")
    assert done.exit_code == 0, done.output
    (window,) = json.loads(done.stdout)
    assert (window["model"], window["version"]) == (MODEL, VERSION)
    assert window["window"]["decisions"] == WINDOW_ROWS
    assert window["window"]["first_leaf"] <= window["window"]["last_leaf"]
    assert window["judged"] is True
    names = [f["name"] for f in window["features"]]
    assert sorted(names) == sorted(FEATURES)
    income = window["features"][0]
    assert income["name"] == "income"
    assert income["drifted"] is True
    assert income["psi"] > 0.2
    assert income["ks"] is not None
    assert income["wasserstein"] is not None
    assert income["cramers_v"] is None  # a number, not a category
    assert income["p_adjusted"] < 0.01
    assert not any(f["drifted"] for f in window["features"][1:])
    assert {b["feature"] for b in window["breaches"] if b["rule"] == "feature_drift"} == {"income"}
    assert window["prediction"]["labels"]
    # It is the DRIFT record the alerts point at.
    drift_ids = {orjson.loads(a.body_json)["drift_record_id"] for a in drifted_monitor.alerts}
    assert drift_ids == {window["record_id"]}


def test_drift_table_lists_the_drifted_feature_first_and_the_breaches(
    drifted_monitor: Drifted,
) -> None:
    done = drifted_monitor.run("drift", MODEL, "--since", "7d")
    assert done.exit_code == 0, done.output
    out = done.stdout
    assert f"window of {WINDOW_ROWS} decisions" in out
    rows = [ln for ln in out.splitlines() if any(f" {f} " in f" {ln} " for f in FEATURES)]
    feature_rows = [ln for ln in rows if "│" in ln]
    assert feature_rows, out
    assert "income" in feature_rows[0]
    assert "DRIFTED" in feature_rows[0]
    assert not any("DRIFTED" in ln for ln in feature_rows[1:])
    breached = out.split("breached thresholds:", 1)[1]
    assert "feature drift: income psi" in breached
    assert "predictions: PSI" in out


def test_drift_without_windows_is_a_friendly_line(drifted_monitor: Drifted) -> None:
    none_yet = drifted_monitor.run("drift", MODEL, "--version", "9.9.9")
    assert none_yet.exit_code == 0, none_yet.output
    assert "no window of credit-risk 9.9.9 has been evaluated yet" in none_yet.stdout
    assert (
        json.loads(drifted_monitor.run("drift", MODEL, "--version", "9.9.9", "-o", "json").stdout)
        == []
    )
    future = drifted_monitor.run("drift", MODEL, "--since", "2999-01-01T00:00:00Z")
    assert future.exit_code == 0, future.output
    assert "no window" in future.stdout


def test_drift_shows_live_metrics_against_the_deploy_time_ones(judged: Drifted) -> None:
    windows = json.loads(judged.run("drift", MODEL, "-o", "json").stdout)
    assert sorted(w["source"] for w in windows) == ["decisions", "outcomes"]
    (outcomes,) = [w for w in windows if w["source"] == "outcomes"]
    assert outcomes["features"] == []
    live, deploy = outcomes["metrics"]["live"], outcomes["metrics"]["deploy"]
    assert set(live) >= {"accuracy", "precision", "recall", "f1"}
    # Every outcome is "1": no false positive, and accuracy is the share predicted "1".
    assert live["precision"] == 1.0
    assert live["accuracy"] == pytest.approx(live["recall"])
    assert deploy["accuracy"] - live["accuracy"] > 0.3
    assert any(
        b["rule"] == "performance" and b["metric"] == "accuracy" for b in outcomes["breaches"]
    )
    (decisions,) = [w for w in windows if w["source"] == "decisions"]
    assert decisions["features"][0]["name"] == "income"

    text = judged.run("drift", MODEL)
    assert text.exit_code == 0, text.output
    assert "joined to their decisions" in text.stdout
    assert "live metrics" in text.stdout
    metric_rows = [ln for ln in text.stdout.splitlines() if "│ accuracy" in ln]
    assert len(metric_rows) == 1
    assert "performance: live accuracy fell by" in text.stdout
    assert "DRIFTED" in text.stdout  # the decisions window is shown beside it
    alerts = json.loads(judged.run("alerts", "list", "-o", "json").stdout)
    # One performance alert, whichever metrics fell, each of them in its body; the
    # single metric MonitorService returns is the most severe.
    (performance,) = [a for a in alerts if a["rule"] == "performance"]
    fell = {b["metric"] for b in outcomes["breaches"]}
    assert {b["metric"] for b in performance["body"]["breaches"]} == fell
    assert performance["metric"] in fell
    assert performance["summary"].startswith("live performance fell: ")
    assert "accuracy" in performance["summary"]


@pytest.mark.parametrize(
    ("args", "code", "needles"),
    [
        (("drift", "no-such-model"), 2, ("no record of model", "no-such-model")),
        (("drift", ""), 2, ("model_name",)),
        (("drift", MODEL, "--since", "last tuesday"), 2, ("--since", "duration")),
        (("drift", MODEL, "--windows", "5000"), 2, ("--windows",)),
        (("alerts", "list", "--state", "snoozed"), 2, ("--state",)),
        (("alerts", "list", "--limit", "0"), 2, ("--limit",)),
        (("alerts", "ack", "not-a-uuid"), 2, ("alert_record_id", "not a record id")),
        (("alerts", "ack", "0190c2a4-0000-7000-8000-000000000000"), 2, ("no alert",)),
    ],
    ids=[
        "unknown model",
        "empty model",
        "bad since",
        "too many windows",
        "bad state",
        "zero limit",
        "not a uuid",
        "unknown alert",
    ],
)
def test_bad_input_is_one_line_and_exit_2(
    drifted_monitor: Drifted, args: tuple[str, ...], code: int, needles: tuple[str, ...]
) -> None:
    _one_error(drifted_monitor.run(*args), code, *needles)


def test_an_unreachable_monitor_is_exit_3() -> None:
    done = CliRunner().invoke(
        mrmctl, ["--monitor-addr", "127.0.0.1:9", "--timeout", "2", "alerts", "list"]
    )
    _one_error(done, 3, "cannot reach the monitor", "127.0.0.1:9")


# -- alerts ----------------------------------------------------------------------------


def test_list_acknowledge_and_list_again(drifted_monitor: Drifted) -> None:
    listed = drifted_monitor.run("alerts", "list", "--model", MODEL, "-o", "json")
    assert listed.exit_code == 0, listed.output
    firing = json.loads(listed.stdout)
    assert firing
    assert all(a["state"] == "firing" for a in firing)
    assert {a["feature"] for a in firing if a["rule"] == "feature_drift"} == {"income"}
    assert all(a["acknowledged_by"] is None for a in firing)
    table = drifted_monitor.run("alerts", "list")
    assert table.exit_code == 0, table.output
    assert "FIRING" in table.stdout
    target = firing[-1]["record_id"]
    assert target in table.stdout

    # The auditor reads but may not acknowledge; nor may a deployer of other models.
    assert (
        drifted_monitor.run("alerts", "list", token=drifted_monitor.tokens["auditor"]).exit_code
        == 0
    )
    before = drifted_monitor.tree_size()
    _one_error(
        drifted_monitor.run("alerts", "ack", target, token=drifted_monitor.tokens["auditor"]), 5
    )
    _one_error(
        drifted_monitor.run("alerts", "ack", target, token=drifted_monitor.tokens["fraud-ops"]),
        5,
        MODEL,
    )
    assert drifted_monitor.tree_size() == before

    acked = drifted_monitor.run(
        "alerts", "ack", target, "--note", "new income source", token=drifted_monitor.tokens["ops"]
    )
    assert acked.exit_code == 0, acked.output
    assert "acknowledged alert" in acked.stdout
    acks = [
        r
        for r in drifted_monitor.records("ALERT")
        if orjson.loads(r.body_json).get("alert_record_id") == target
    ]
    assert len(acks) == 1
    (ack,) = acks
    assert ack.record_id in acked.stdout
    body = orjson.loads(ack.body_json)
    assert body["alert_record_id"] == target
    assert body["note"] == "new income source"
    assert ack.actor == "ops@bank.example"  # the caller's principal, not the monitor's
    assert ack.model_name == MODEL
    assert ack.model_version == VERSION
    size = drifted_monitor.tree_size()

    again = drifted_monitor.run(
        "alerts", "ack", target, "--note", "twice", token=drifted_monitor.tokens["ops"]
    )
    assert again.exit_code == 0, again.output
    assert "already acknowledged by ops@bank.example" in again.stdout
    assert ack.record_id in again.stdout
    assert drifted_monitor.tree_size() == size  # nothing appended
    again_json = json.loads(drifted_monitor.run("alerts", "ack", target, "-o", "json").stdout)
    assert again_json["already_acknowledged"] is True
    assert again_json["acknowledgement_record_id"] == ack.record_id
    assert again_json["alert"]["note"] == "new income source"

    done = json.loads(
        drifted_monitor.run("alerts", "list", "--state", "acknowledged", "-o", "json").stdout
    )
    assert [a["record_id"] for a in done] == [target]
    assert done[0]["state"] == "acknowledged"
    assert done[0]["acknowledged_by"] == "ops@bank.example"
    assert done[0]["note"] == "new income source"
    still = json.loads(drifted_monitor.run("alerts", "list", "-o", "json").stdout)
    assert target not in {a["record_id"] for a in still}
    assert len(still) == len(firing) - 1
    every = json.loads(drifted_monitor.run("alerts", "list", "--state", "all", "-o", "json").stdout)
    assert {a["record_id"] for a in every} >= {a["record_id"] for a in firing}
    text = drifted_monitor.run("alerts", "list", "--state", "acknowledged")
    assert "ACKNOWLEDGED" in text.stdout
    assert "ops@bank.example" in text.stdout
    limited = json.loads(
        drifted_monitor.run("alerts", "list", "--state", "all", "--limit", "1", "-o", "json").stdout
    )
    assert len(limited) == 1


def test_list_alerts_pages_walk_every_alert(
    drifted_monitor: Drifted, stub: monitor_pb2_grpc.MonitorServiceStub
) -> None:
    whole = stub.ListAlerts(monitor_pb2.ListAlertsRequest(model_name=MODEL, page_size=1000))
    assert not whole.next_page_token
    assert len(whole.alerts) >= 2, "a 1.8x income shift should breach several metrics"
    walked: list[str] = []
    request = monitor_pb2.ListAlertsRequest(model_name=MODEL, page_size=1)
    for _ in range(len(whole.alerts) + 1):
        page = stub.ListAlerts(request)
        assert len(page.alerts) <= 1
        walked.extend(a.record_id for a in page.alerts)
        if not page.next_page_token:
            break
        request.page_token = page.next_page_token
    assert walked == [a.record_id for a in whole.alerts]  # same order, none twice
    assert request.page_token, "page_size 1 over several alerts gave a single page"
    # Newest first: raised_at never increases down the list.
    times = [(a.raised_at.seconds, a.raised_at.nanos) for a in whole.alerts]
    assert times == sorted(times, reverse=True)


# -- MonitorService's answers to bad requests -----------------------------------------


def _violation(error: grpc.RpcError, code: grpc.StatusCode, field: str) -> str:
    assert error.code() is code, (error.code(), error.details())
    details = error.details() or ""
    assert field in details, details
    return details


def test_get_drift_rejects_bad_requests(
    drifted_monitor: Drifted, stub: monitor_pb2_grpc.MonitorServiceStub
) -> None:
    def get(**kw: object) -> object:
        return lambda: stub.GetDrift(monitor_pb2.GetDriftRequest(**kw))  # type: ignore[arg-type]

    _violation(rpc_error(get()), INVALID, "model_name")
    _violation(rpc_error(get(model_name="x" * 201)), INVALID, "model_name")
    _violation(rpc_error(get(model_name=MODEL, model_version="1\n0")), INVALID, "model_version")
    assert rpc_error(get(model_name="no-such-model")).code() is grpc.StatusCode.NOT_FOUND
    for size in (5000, -1, 1001):
        _violation(rpc_error(get(model_name=MODEL, page_size=size)), INVALID, "page_size")
    far = Timestamp(seconds=2**62)
    _violation(rpc_error(get(model_name=MODEL, start_time=far)), INVALID, "start_time")
    # the edges that are fine
    assert len(stub.GetDrift(monitor_pb2.GetDriftRequest(model_name=MODEL, page_size=1000)).windows)
    later = Timestamp(seconds=32503680000)  # year 3000: no window yet
    empty = stub.GetDrift(monitor_pb2.GetDriftRequest(model_name=MODEL, start_time=later))
    assert list(empty.windows) == []


def test_list_alerts_rejects_bad_requests(
    drifted_monitor: Drifted, stub: monitor_pb2_grpc.MonitorServiceStub
) -> None:
    def list_(**kw: object) -> object:
        return lambda: stub.ListAlerts(monitor_pb2.ListAlertsRequest(**kw))  # type: ignore[arg-type]

    _violation(rpc_error(list_(state=7)), INVALID, "state")
    _violation(rpc_error(list_(page_size=-1)), INVALID, "page_size")
    _violation(rpc_error(list_(page_size=5000)), INVALID, "page_size")
    for forged in (
        "not a token!",
        base64.urlsafe_b64encode(b"alerts:-3").decode(),
        base64.urlsafe_b64encode(b"records:1").decode(),
        base64.urlsafe_b64encode(b"\xff\xfe").decode(),
    ):
        _violation(rpc_error(list_(page_token=forged)), INVALID, "page_token")
    assert not stub.ListAlerts(monitor_pb2.ListAlertsRequest(model_name="nobody")).alerts


def test_acknowledge_alert_rejects_bad_requests(
    drifted_monitor: Drifted, stub: monitor_pb2_grpc.MonitorServiceStub
) -> None:
    def ack(alert_id: str, note: str = "") -> object:
        return lambda: stub.AcknowledgeAlert(
            monitor_pb2.AcknowledgeAlertRequest(alert_record_id=alert_id, note=note)
        )

    before = drifted_monitor.tree_size()
    _violation(rpc_error(ack("")), INVALID, "alert_record_id")
    _violation(rpc_error(ack("not-a-uuid")), INVALID, "alert_record_id")
    upper = drifted_monitor.alerts[0].record_id.upper()  # not the canonical spelling of a record id
    _violation(rpc_error(ack(upper)), INVALID, "alert_record_id")
    unknown = rpc_error(ack(new_record_id()))
    assert unknown.code() is grpc.StatusCode.NOT_FOUND, unknown.details()
    # a record that is not a raised alert: a decision, and the window's DRIFT record
    drift_id = orjson.loads(drifted_monitor.alerts[0].body_json)["drift_record_id"]
    for not_alert in (drifted_monitor.decisions[0], drift_id):
        _violation(rpc_error(ack(not_alert)), INVALID, "alert_record_id")
    _violation(rpc_error(ack(drifted_monitor.alerts[0].record_id, "x" * 1001)), INVALID, "note")
    assert drifted_monitor.tree_size() == before  # nothing refused was recorded


def test_an_acknowledgement_record_is_not_an_alert(drifted_monitor: Drifted) -> None:
    """Acknowledging the acknowledgement (an ALERT record too) is refused."""
    alert = drifted_monitor.alerts[0].record_id
    done = json.loads(drifted_monitor.run("alerts", "ack", alert, "-o", "json").stdout)
    ack_id = done["acknowledgement_record_id"]
    if not done["already_acknowledged"]:
        assert done["alert"]["acknowledged_by"] == TEST_PRINCIPAL
    with channel(drifted_monitor.monitor_addr) as ch:
        error = rpc_error(
            lambda: monitor_pb2_grpc.MonitorServiceStub(ch).AcknowledgeAlert(
                monitor_pb2.AcknowledgeAlertRequest(alert_record_id=ack_id)
            )
        )
    _violation(error, INVALID, "alert_record_id")
    kinds = {r.record_id: r.kind for r in drifted_monitor.records("ALERT")}
    assert kinds[ack_id] == ledger_pb2.RECORD_KIND_ALERT


def test_a_note_over_1000_characters_is_refused_by_the_cli(drifted_monitor: Drifted) -> None:
    alert = drifted_monitor.alerts[0].record_id
    _one_error(drifted_monitor.run("alerts", "ack", alert, "--note", "n" * 1001), 2, "note", "1001")


def test_an_unknown_model_in_the_cli_is_not_a_traceback(drifted_monitor: Drifted) -> None:
    _one_error(drifted_monitor.run("drift", "ghost", "-o", "json"), 2, "ghost")
