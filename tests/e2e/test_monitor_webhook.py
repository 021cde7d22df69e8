"""The monitor service's webhooks, end to end: a real stack (PostgreSQL) started
with `monitor_webhooks`, a deployed model whose decisions drift, and a local
HTTP receiver. Alerts reach a flaky receiver once each and only after the
ledger has them; a hanging receiver does not stop monitoring; an
acknowledgement resolves the Alertmanager alert; a monitor restarted after an
alert was recorded but never sent sends it exactly once."""

from __future__ import annotations

import json
import re
import threading
import time
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from mrm.client.channel import ServiceClient
from mrm.client.ledger import LedgerClient
from mrm.v1 import ledger_pb2, monitor_pb2, monitor_pb2_grpc
from tests.conftest import RunningLedger, start_ledger
from tests.support.credit import deploy, project, tree_model
from tests.support.monitored import MONITOR_TOML, World, applications


@dataclass(frozen=True)
class Delivery:
    path: str
    key: str
    body: Any
    status: int
    in_ledger: bool


class Receiver:
    """A webhook on 127.0.0.1 that answers 503 to its first `fail_first` requests
    and, when `hang` is set, never answers in time."""

    def __init__(self, fail_first: int = 0, hang: bool = False) -> None:
        self.fail_left = fail_first
        self.hang = hang
        self.release = threading.Event()
        self.ledger: LedgerClient | None = None
        self.deliveries: list[Delivery] = []
        self.arrived = 0
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                data = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                receiver.handle(self, data)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}{path}"

    def handle(self, request: BaseHTTPRequestHandler, data: bytes) -> None:
        key = request.headers.get("Idempotency-Key", "")
        with self.lock:
            self.arrived += 1
        # Is the alert this notification is about already a ledger record?
        in_ledger = False
        if self.ledger is not None:
            try:
                rec = self.ledger.get_record(key.split(":")[0])
                in_ledger = rec.kind == ledger_pb2.RECORD_KIND_ALERT
            except Exception:
                in_ledger = False
        if self.hang:
            self.release.wait(60)
        with self.lock:
            status = 200
            if self.fail_left > 0:
                self.fail_left -= 1
                status = 503
            self.deliveries.append(Delivery(request.path, key, json.loads(data), status, in_ledger))
        try:
            request.send_response(status)
            request.send_header("Content-Length", "0")
            request.end_headers()
        except OSError:
            pass  # the notifier gave up waiting

    def delivered(self, path: str) -> list[Delivery]:
        with self.lock:
            return [d for d in self.deliveries if d.path == path and d.status == 200]

    def close(self) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()


class MonitorApi(ServiceClient):
    def __init__(self, target: str) -> None:
        super().__init__(target)
        self._stub = monitor_pb2_grpc.MonitorServiceStub(self._channel)

    def acknowledge(self, alert_id: str) -> monitor_pb2.AcknowledgeAlertResponse:
        req = monitor_pb2.AcknowledgeAlertRequest(alert_record_id=alert_id, note="on it")
        return self._call(self._stub.AcknowledgeAlert, req)


def _until(what: str, ok: Callable[[], bool], timeout: float = 90.0) -> None:
    deadline = time.monotonic() + timeout
    while not ok():
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up waiting for {what}")
        time.sleep(0.1)


def _metric(stack: RunningLedger, name: str, labels: str = "") -> float:
    port = stack.stack.stack.monitor_metrics_port
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
    pattern = re.escape(name) + (r"\{" + re.escape(labels) + r"\}" if labels else "") + r" (\S+)"
    match = re.search("^" + pattern + "$", text, re.M)
    return float(match.group(1)) if match else 0.0


def _hooks(receiver: Receiver, timeout: float) -> str:
    return json.dumps(
        [
            {"url": receiver.url("/am"), "format": "alertmanager", "timeout": timeout},
            {"url": receiver.url("/slack"), "format": "slack", "timeout": timeout},
        ]
    )


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.close()


def _stack(
    home: Path, pg_url: str, receiver: Receiver | None, timeout: float = 5.0
) -> RunningLedger:
    hooks = {"monitor_webhooks": _hooks(receiver, timeout)} if receiver is not None else {}
    return start_ledger(home, pg_url, monitor_poll_interval=0.05, **hooks)


def _deployed(
    stack: RunningLedger, tmp: Path, monkeypatch: pytest.MonkeyPatch, receiver: Receiver | None
) -> World:
    project(tmp, tree_model)
    (tmp / "mrm.toml").write_text((tmp / "mrm.toml").read_text() + MONITOR_TOML)
    result = deploy(stack, tmp, "model.pkl", "--version", "1.0.0", monkeypatch=monkeypatch)
    assert result.exit_code == 0, result.output
    world = World(stack, tmp)
    if receiver is not None:
        receiver.ledger = world.reader
    return world


def _alert_ids(world: World) -> list[str]:
    return [
        r.record_id
        for r in world.kinds("ALERT")
        if json.loads(r.body_json).get("state") == "firing"
    ]


def test_a_flaky_webhook_gets_each_alert_once_after_the_ledger_has_it(
    tmp_path: Path, pg_url: str, monkeypatch: pytest.MonkeyPatch, receiver: Receiver
) -> None:
    receiver.fail_left = 2
    stack = _stack(tmp_path / "mrm-home", pg_url, receiver)
    try:
        world = _deployed(stack, tmp_path, monkeypatch, receiver)
        world.serve(applications(300, 61))
        world.serve(applications(300, 62, income_factor=1.8))
        _until("an alert", lambda: bool(_alert_ids(world)))
        alerts = _alert_ids(world)
        _until(
            "every alert at both webhooks",
            lambda: all(
                {d.key for d in receiver.delivered(p)} >= set(alerts) for p in ("/am", "/slack")
            ),
        )
        time.sleep(1.0)  # room for a duplicate to show up, were one on its way
        with receiver.lock:
            everything = list(receiver.deliveries)
        assert [d.status for d in everything].count(503) == 2
        assert all(d.in_ledger for d in everything), "a webhook heard of an alert first"
        for path in ("/am", "/slack"):
            ok = receiver.delivered(path)
            assert Counter(d.key for d in ok) == Counter(alerts)  # once each, by key
            contents = [json.dumps(d.body, sort_keys=True) for d in ok]
            assert len(set(contents)) == len(contents)  # and by content
        (am,) = [d.body for d in receiver.delivered("/am") if d.key == alerts[0]]
        assert am[0]["annotations"]["mrm_record_id"] == alerts[0]
        assert "endsAt" not in am[0]
        # One Alertmanager alert per problem: labelled by its rule and feature, every
        # breached metric of it in the description.
        sent = [d.body[0] for d in receiver.delivered("/am")]
        by_problem = {(a["labels"]["rule"], a["labels"].get("feature", "")): a for a in sent}
        assert len(by_problem) == len(sent)
        income = by_problem["feature_drift", "income"]
        assert income["labels"]["alertname"] == "MRMDrift"
        assert "metric" not in income["labels"]
        body = json.loads(world.reader.get_record(income["annotations"]["mrm_record_id"]).body_json)
        assert len(body["breaches"]) >= 2
        for b in body["breaches"]:
            assert (
                f"{b['metric']} = {b['value']} (threshold {b['threshold']})"
                in (income["annotations"]["description"])
            )
        assert (
            _metric(stack, "mrm_monitor_webhook_failures_total", 'format="alertmanager"')
            + (_metric(stack, "mrm_monitor_webhook_failures_total", 'format="slack"'))
            == 2
        )

        # Acknowledged: Alertmanager hears it resolved (endsAt), once.
        with MonitorApi(stack.stack.stack.monitor_addr) as api:
            api.acknowledge(alerts[0])
        ack_key = f"{alerts[0]}:acknowledged"
        _until("the acknowledgement", lambda: ack_key in {d.key for d in receiver.delivered("/am")})
        resolved = [d.body for d in receiver.delivered("/am") if d.key == ack_key]
        assert len(resolved) == 1
        assert resolved[0][0]["endsAt"]
        assert resolved[0][0]["annotations"]["mrm_record_id"] == alerts[0]
        _until(
            "the Slack acknowledgement",
            lambda: ack_key in {d.key for d in receiver.delivered("/slack")},
        )
    finally:
        stack.stack.stop()


def test_a_hanging_webhook_does_not_stop_monitoring(
    tmp_path: Path, pg_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    receiver = Receiver(hang=True)
    stack = _stack(tmp_path / "mrm-home", pg_url, receiver, timeout=1.0)
    try:
        world = _deployed(stack, tmp_path, monkeypatch, receiver)
        world.serve(applications(300, 71))
        world.serve(applications(300, 72, income_factor=1.8))
        _until("an alert", lambda: bool(_alert_ids(world)))
        _until("the webhook called", lambda: receiver.arrived > 0)
        # The webhook hangs; later windows are judged all the same.
        world.serve(applications(300, 73))
        world.serve(applications(300, 74))
        _until("two more windows", lambda: len(world.kinds("DRIFT")) == 4)
        _until(
            "the webhook's failure counted",
            lambda: (
                _metric(stack, "mrm_monitor_webhook_failures_total", 'format="alertmanager"') >= 1
            ),
        )
        assert not receiver.delivered("/am")
    finally:
        receiver.close()
        stack.stack.stop()


def test_an_alert_recorded_but_never_sent_is_sent_once_after_a_restart(
    tmp_path: Path, pg_url: str, monkeypatch: pytest.MonkeyPatch, receiver: Receiver
) -> None:
    home = tmp_path / "mrm-home"
    # A monitor that records alerts and tells no one: as one killed between the
    # ledger append and the notification.
    first = _stack(home, pg_url, None)
    try:
        world = _deployed(first, tmp_path, monkeypatch, None)
        world.serve(applications(300, 81))
        world.serve(applications(300, 82, income_factor=1.8))
        _until("an alert", lambda: bool(_alert_ids(world)))
        alerts = _alert_ids(world)
    finally:
        first.stack.stop()

    for seed in (83, 84):  # restarted with webhooks, then restarted again
        _restart(home, pg_url, receiver, world, alerts, seed)
    for path in ("/am", "/slack"):
        assert Counter(d.key for d in receiver.delivered(path)) == Counter(alerts)
    assert all(d.in_ledger for d in receiver.deliveries)


def _alert_ids_of(ledger: LedgerClient) -> list[str]:
    return [
        r.record_id
        for r in ledger.query(kind="ALERT")
        if json.loads(r.body_json).get("state") == "firing"
    ]


def _restart(
    home: Path, pg_url: str, receiver: Receiver, world: World, alerts: list[str], seed: int
) -> None:
    stack = _stack(home, pg_url, receiver)
    try:
        ledger = LedgerClient(stack.addr, auth=world.monitor_auth)
        receiver.ledger = ledger
        _until(
            "the recorded alerts sent",
            lambda: {d.key for d in receiver.delivered("/am")} >= set(alerts),
        )
        # Another window (still drifted: no new alert) shows this run has resumed,
        # and so re-submitted every firing alert; the outbox keeps them unsent.
        before = len(list(ledger.query(kind="DRIFT")))
        world.proxy = LedgerClient(stack.addr, auth=world.proxy.auth)
        world.serve(applications(300, seed, income_factor=1.8))
        _until("a window", lambda: len(list(ledger.query(kind="DRIFT"))) == before + 1)
        _until("the notifier idle", lambda: _metric(stack, "mrm_monitor_webhook_queue_depth") == 0)
        assert len(_alert_ids_of(ledger)) == len(alerts)
    finally:
        stack.stack.stop()
