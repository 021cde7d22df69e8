"""Notifier against real local HTTP servers: retries, timeouts, restart, payloads."""

from __future__ import annotations

import json
import re
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from mrm.monitor.notify import (
    Notifier,
    WebhookTarget,
    acknowledgement,
    alertmanager_payload,
    parse_webhooks,
    slack_payload,
)

ALERT: dict[str, Any] = {
    "alert_id": "0190e0d2-0000-7000-8000-000000000001",
    "state": "firing",
    "rule": "feature_drift",
    "metric": "psi",
    "feature": "income",
    "value": 0.41,
    "threshold": 0.2,
    "breaches": [
        {"metric": "psi", "value": 0.41, "threshold": 0.2},
        {"metric": "ks", "value": 0.17, "threshold": 0.1},
    ],
    "model": "credit",
    "version": "1.2.4",
    "window": {
        "start": "2024-05-01T00:00:00+00:00",
        "end": "2024-05-01T01:00:00+00:00",
        "rows": 500,
    },
    "top_features": [{"name": "income", "psi": 0.41}, {"name": "age", "psi": 0.1}],
    "examples": ["0190e0d2-0000-7000-8000-0000000000aa"],
    "summary": "psi of income on credit 1.2.4 is 0.41 (> 0.2)",
    "link": "http://mrm.example/drift/credit/1.2.4",
}
AID = ALERT["alert_id"]


class Receiver:
    """A webhook: fails the first `fail_first` requests, or hangs until released."""

    def __init__(self, fail_first: int = 0, hang: bool = False) -> None:
        self.fail_first = fail_first
        self.hang = hang
        self.release = threading.Event()
        self.requests = 0
        self.receipts: Counter[str] = Counter()  # successful receipts by Idempotency-Key
        self.bodies: list[Any] = []
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                if receiver.hang:
                    receiver.release.wait(30)
                    return
                with receiver.lock:
                    receiver.requests += 1
                    fail = receiver.requests <= receiver.fail_first
                    if not fail:
                        key = self.headers["Idempotency-Key"]
                        if receiver.receipts[key] == 0:
                            receiver.bodies.append(json.loads(body))
                        receiver.receipts[key] += 1
                self.send_response(500 if fail else 200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/hook"

    def stop(self) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receivers() -> Iterator[Callable[..., Receiver]]:
    made: list[Receiver] = []

    def make(**kw: Any) -> Receiver:
        made.append(Receiver(**kw))
        return made[-1]

    yield make
    for r in made:
        r.stop()


def notifier(
    targets: list[WebhookTarget], tmp_path: Path, **kw: Any
) -> tuple[Notifier, CollectorRegistry]:
    registry = CollectorRegistry()
    n = Notifier(
        targets, tmp_path / "outbox.sqlite", registry, base_delay=0.01, max_delay=0.05, **kw
    )
    return n, registry


def metric(registry: CollectorRegistry, name: str, fmt: str | None = None) -> float:
    labels = {"format": fmt} if fmt else {}
    return registry.get_sample_value(name, labels) or 0.0


def until(cond: Callable[[], bool], deadline: float = 10.0) -> None:
    end = time.monotonic() + deadline
    while not cond():
        assert time.monotonic() < end, "condition not reached before the deadline"
        time.sleep(0.01)


def test_retries_5xx_then_delivers_once(tmp_path: Path, receivers: Callable[..., Receiver]) -> None:
    hook = receivers(fail_first=2)
    n, reg = notifier([WebhookTarget(hook.url, "alertmanager")], tmp_path)
    try:
        n.submit(AID, ALERT)
        n.submit(AID, ALERT)  # a repeat while in flight is a no-op
        until(lambda: metric(reg, "mrm_monitor_webhook_deliveries_total", "alertmanager") == 1)
        until(lambda: metric(reg, "mrm_monitor_webhook_queue_depth") == 0)
        n.submit(AID, ALERT)  # and so is one after delivery
        until(lambda: metric(reg, "mrm_monitor_webhook_queue_depth") == 0)
    finally:
        n.close()
    assert hook.receipts == {AID: 1}
    assert hook.requests == 3
    assert metric(reg, "mrm_monitor_webhook_failures_total", "alertmanager") == 2
    assert metric(reg, "mrm_monitor_webhook_given_up_total", "alertmanager") == 0
    assert hook.bodies[0][0]["annotations"]["mrm_record_id"] == AID


def test_hanging_target_does_not_block_others(
    tmp_path: Path, receivers: Callable[..., Receiver]
) -> None:
    hanging, healthy = receivers(hang=True), receivers()
    targets = [
        WebhookTarget(hanging.url, "slack", timeout=0.2),
        WebhookTarget(healthy.url, "alertmanager"),
    ]
    n, reg = notifier(targets, tmp_path, max_attempts=2)
    try:
        n.submit(AID, ALERT)  # returns at once: nothing here waits on a webhook
        until(lambda: healthy.receipts[AID] == 1)
        until(lambda: metric(reg, "mrm_monitor_webhook_given_up_total", "slack") == 1)
    finally:
        n.close(timeout=0.5)
    assert metric(reg, "mrm_monitor_webhook_failures_total", "slack") == 2
    assert metric(reg, "mrm_monitor_webhook_deliveries_total", "slack") == 0
    assert metric(reg, "mrm_monitor_webhook_deliveries_total", "alertmanager") == 1


def test_restart_does_not_redeliver(tmp_path: Path, receivers: Callable[..., Receiver]) -> None:
    hook = receivers()
    target = WebhookTarget(hook.url, "slack")
    first, reg = notifier([target], tmp_path)
    first.submit(AID, ALERT)
    until(lambda: metric(reg, "mrm_monitor_webhook_deliveries_total", "slack") == 1)
    first.close()

    second, reg2 = notifier([target], tmp_path)
    try:
        second.submit(AID, ALERT)
        until(lambda: metric(reg2, "mrm_monitor_webhook_queue_depth") == 0)
        # The acknowledgement is a different message and is sent.
        second.submit(AID, acknowledgement(ALERT, by="alice"))
        until(lambda: hook.receipts[f"{AID}:acknowledged"] == 1)
    finally:
        second.close()
    assert hook.receipts[AID] == 1
    assert metric(reg2, "mrm_monitor_webhook_deliveries_total", "slack") == 1
    assert "acknowledged by alice" in hook.bodies[1]["text"].lower()


def test_submit_after_close_is_ignored(tmp_path: Path) -> None:
    n, reg = notifier([WebhookTarget("http://127.0.0.1:9/x", "slack")], tmp_path)
    n.close()
    n.submit(AID, ALERT)
    assert metric(reg, "mrm_monitor_webhook_queue_depth") == 0


def test_alertmanager_payload_shape() -> None:
    (item,) = alertmanager_payload(AID, ALERT)
    assert item["labels"] == {
        "alertname": "MRMDrift",
        "model": "credit",
        "version": "1.2.4",
        "rule": "feature_drift",
        "feature": "income",
        "severity": "warning",
    }
    assert item["annotations"]["summary"] == ALERT["summary"]
    assert item["annotations"]["mrm_record_id"] == AID
    assert item["annotations"]["link"] == ALERT["link"]
    description = item["annotations"]["description"]
    assert "psi = 0.41 (threshold 0.2); ks = 0.17 (threshold 0.1) over 500 rows" in description
    assert "income" in description
    # The labels are the alert's key: another metric leading the same problem is the same alert.
    (again,) = alertmanager_payload(AID, {**ALERT, "metric": "ks", "value": 0.17})
    assert again["labels"] == item["labels"]
    assert item["startsAt"] == ALERT["window"]["end"]
    assert item["generatorURL"] == ALERT["link"]
    assert "endsAt" not in item

    (resolved,) = alertmanager_payload(AID, acknowledgement(ALERT, by="alice"))
    assert resolved["labels"] == item["labels"]  # the same alert, so Alertmanager resolves it
    assert resolved["startsAt"] == item["startsAt"]
    assert resolved["endsAt"]


def test_slack_payload_shape() -> None:
    body = slack_payload(AID, ALERT)
    assert ALERT["summary"] in body["text"]
    rendered = json.dumps(body["blocks"])
    for needle in ("credit", "1.2.4", "0.41", "0.2", "income", "age", ALERT["link"], AID):
        assert needle in rendered
    assert "psi = 0.41 (threshold 0.2)\\nks = 0.17 (threshold 0.1)" in rendered
    # An alert recorded before alerts were grouped names its one metric.
    single = {k: v for k, v in ALERT.items() if k != "breaches"}
    assert "psi = 0.41 (threshold 0.2)" in json.dumps(slack_payload(AID, single)["blocks"])
    ack = slack_payload(AID, acknowledgement(ALERT, by="alice"))
    assert ack["text"].startswith("Acknowledged by alice")


def test_slack_escapes_control_characters() -> None:
    body = slack_payload(AID, {**ALERT, "summary": "a <b> & c"})
    assert "a &lt;b&gt; &amp; c" in json.dumps(body["blocks"])


def test_parse_webhooks() -> None:
    text = json.dumps(
        [
            {"url": "https://hooks.slack.com/services/T/B/secret", "format": "slack"},
            {"url": "http://am:9093/api/v2/alerts", "format": "alertmanager", "timeout": 2},
        ]
    )
    slack, am = parse_webhooks(text)
    assert (slack.format, slack.timeout, slack.host) == ("slack", 5.0, "hooks.slack.com")
    assert (am.format, am.timeout) == ("alertmanager", 2.0)
    assert "secret" not in repr(slack)
    assert parse_webhooks("") == []


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (
            '[{"url": "http://a/x", "format": "slack"}, {"url": "http://b/x", "format": "teams"}]',
            'MRM_MONITOR_WEBHOOKS[1].format: "teams" is not one of slack, alertmanager',
        ),
        ('[{"url": "ftp://a/x", "format": "slack"}]', "MRM_MONITOR_WEBHOOKS[0].url: want an http"),
        ('[{"format": "slack"}]', "MRM_MONITOR_WEBHOOKS[0].url: missing or not a string"),
        (
            '[{"url": "http://a", "format": "slack", "x": 1}]',
            "MRM_MONITOR_WEBHOOKS[0]: unknown key 'x'",
        ),
        (
            '[{"url": "http://a", "format": "slack", "timeout": 0}]',
            "MRM_MONITOR_WEBHOOKS[0].timeout",
        ),
        ('["http://a"]', "MRM_MONITOR_WEBHOOKS[0]: want an object"),
        ('{"url": "http://a"}', "MRM_MONITOR_WEBHOOKS: want a JSON list"),
        ("[{", "MRM_MONITOR_WEBHOOKS: not valid JSON"),
    ],
)
def test_parse_webhooks_errors(value: str, message: str) -> None:
    with pytest.raises(ValueError, match="^" + re.escape(message)) as info:
        parse_webhooks(value)
    assert "\n" not in str(info.value)
