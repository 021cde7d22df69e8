"""Webhook notifications for alerts already written to the ledger.

The ledger is the record; a notification is a courtesy that follows it. So
`Notifier.submit` never blocks the monitor and never raises for a webhook's
trouble: deliveries run on a private asyncio loop in a daemon thread, each with
its own timeout, retried with backoff, and remembered in an `Outbox` once they
succeed so that a restarted monitor re-submitting recent alerts sends nothing
twice.

Webhook URLs are secrets (a Slack URL is its own credential), so logs and
errors name a target by host only.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import random
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal, cast, get_args
from urllib.parse import urlsplit

import aiohttp
from prometheus_client import CollectorRegistry, Counter, Gauge

from mrm.monitor.outbox import Outbox

log = logging.getLogger(__name__)

Format = Literal["slack", "alertmanager"]
FORMATS: tuple[str, ...] = get_args(Format)
ALERTNAME = "MRMDrift"


@dataclass(frozen=True)
class WebhookTarget:
    """One webhook. `url` is kept out of repr: it may be a credential."""

    url: str = field(repr=False)
    format: Format
    timeout: float = 5.0

    def __post_init__(self) -> None:
        parts = urlsplit(self.url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("url: want an http or https URL with a host")
        if self.format not in FORMATS:
            raise ValueError(f"format: {self.format!r} is not one of {', '.join(FORMATS)}")
        if not self.timeout > 0:
            raise ValueError(f"timeout: {self.timeout!r} is not a positive number of seconds")

    @property
    def host(self) -> str:
        return urlsplit(self.url).hostname or "?"

    @property
    def key(self) -> str:
        """What the outbox stores instead of the URL."""
        return hashlib.sha256(self.url.encode()).hexdigest()


def parse_webhooks(text: str, name: str = "MRM_MONITOR_WEBHOOKS") -> list[WebhookTarget]:
    """A JSON list of {"url", "format"[, "timeout"]} objects; "" means none."""
    if not text.strip():
        return []
    try:
        raw = json.loads(text)
    except json.JSONDecodeError as exc:
        # exc.msg only: the document itself holds the secret URLs.
        raise ValueError(f"{name}: not valid JSON ({exc.msg} at column {exc.colno})") from None
    if not isinstance(raw, list):
        raise ValueError(f'{name}: want a JSON list of {{"url": ..., "format": ...}} objects')
    out: list[WebhookTarget] = []
    for i, entry in enumerate(raw):
        where = f"{name}[{i}]"
        if not isinstance(entry, dict):
            raise ValueError(f'{where}: want an object with "url" and "format"')
        unknown = sorted(set(entry) - {"url", "format", "timeout"})
        if unknown:
            raise ValueError(f"{where}: unknown key {unknown[0]!r} (want url, format, timeout)")
        for key in ("url", "format"):
            if not isinstance(entry.get(key), str):
                raise ValueError(f"{where}.{key}: missing or not a string")
        fmt = entry["format"]
        if fmt not in FORMATS:
            raise ValueError(f'{where}.format: "{fmt}" is not one of {", ".join(FORMATS)}')
        timeout = entry.get("timeout", 5.0)
        if isinstance(timeout, bool) or not isinstance(timeout, int | float):
            raise ValueError(f"{where}.timeout: {timeout!r} is not a number of seconds")
        try:
            out.append(WebhookTarget(entry["url"], cast(Format, fmt), float(timeout)))
        except ValueError as exc:
            raise ValueError(f"{where}.{exc}") from None
    return out


# -- payloads ------------------------------------------------------------------


def acknowledgement(alert: dict[str, Any], by: str, at: datetime | None = None) -> dict[str, Any]:
    """The dict to submit when `alert` (a firing ALERT body) is acknowledged by `by`."""
    when = (at or datetime.now(UTC)).isoformat()
    return {**alert, "state": "acknowledged", "acknowledged_by": by, "acknowledged_at": when}


def _state(alert: dict[str, Any]) -> str:
    return "acknowledged" if alert.get("state") == "acknowledged" else "firing"


def _top(alert: dict[str, Any], n: int = 5) -> list[str]:
    out = []
    for f in list(alert.get("top_features") or [])[:n]:
        if isinstance(f, dict):
            metric = next((k for k in f if k != "name"), None)
            out.append(f"{f.get('name')} ({metric} {f.get(metric)})" if metric else str(f))
    return out


def _summary(alert: dict[str, Any]) -> str:
    return str(
        alert.get("summary")
        or f"{alert.get('rule')}: {alert.get('metric')} {alert.get('value')} "
        f"> {alert.get('threshold')} on {alert.get('model')} {alert.get('version')}"
    )


def _breaches(alert: dict[str, Any]) -> list[str]:
    """Each breached metric as `metric = value (threshold t)`, the most severe first; an
    alert recorded before alerts were grouped has only its own metric."""
    listed = alert.get("breaches")
    if not isinstance(listed, list) or not listed:
        listed = [alert]
    return [
        f"{b.get('metric')} = {b.get('value')} (threshold {b.get('threshold')})"
        for b in listed
        if isinstance(b, dict)
    ]


def _starts_at(alert: dict[str, Any]) -> str:
    window = alert.get("window") or {}
    return str(alert.get("raised_at") or window.get("end") or datetime.now(UTC).isoformat())


def alertmanager_payload(alert_id: str, alert: dict[str, Any]) -> list[dict[str, Any]]:
    """Alertmanager API v2 `POST /api/v2/alerts` body; acknowledged → resolved (endsAt).

    The labels are the alert's identity, the monitor's alert key (model, version, rule,
    feature): the breached metrics, which vary from window to window, are in the
    description."""
    window = alert.get("window") or {}
    labels = {
        "alertname": ALERTNAME,
        "model": str(alert.get("model", "")),
        "version": str(alert.get("version", "")),
        "rule": str(alert.get("rule", "")),
        "feature": str(alert.get("feature") or ""),
        "severity": str(alert.get("severity") or "warning"),
    }
    description = (
        f"{'; '.join(_breaches(alert))} over {window.get('rows', '?')} rows "
        f"from {window.get('start', '?')} to {window.get('end', '?')}."
    )
    if top := _top(alert):
        description += " Top features: " + ", ".join(top) + "."
    annotations = {
        "summary": _summary(alert),
        "description": description,
        "mrm_record_id": alert_id,
        "link": str(alert.get("link", "")),
    }
    item: dict[str, Any] = {
        "labels": {k: v for k, v in labels.items() if v},
        "annotations": annotations,
        "startsAt": _starts_at(alert),
    }
    if alert.get("link"):
        item["generatorURL"] = str(alert["link"])
    if _state(alert) == "acknowledged":
        item["endsAt"] = str(alert.get("acknowledged_at") or datetime.now(UTC).isoformat())
        annotations["acknowledged_by"] = str(alert.get("acknowledged_by", ""))
    return [item]


def _esc(text: object) -> str:
    # Slack mrkdwn control characters.
    return str(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def slack_payload(alert_id: str, alert: dict[str, Any]) -> dict[str, Any]:
    """Slack incoming-webhook body: plain `text` fallback plus Block Kit `blocks`."""
    summary = _summary(alert)
    link = str(alert.get("link", ""))
    if _state(alert) == "acknowledged":
        by = alert.get("acknowledged_by", "someone")
        text = f"Acknowledged by {by}: {summary}"
        blocks: list[dict[str, Any]] = [
            {
                "type": "section",
                "text": {"type": "mrkdwn", "text": f":white_check_mark: {_esc(text)}"},
            }
        ]
    else:
        text = f"MRM alert: {summary}"
        fields = [
            {
                "type": "mrkdwn",
                "text": f"*Model*\n{_esc(alert.get('model'))} {_esc(alert.get('version'))}",
            },
            {"type": "mrkdwn", "text": "*Breached*\n" + "\n".join(map(_esc, _breaches(alert)))},
        ]
        blocks = [
            {"type": "section", "text": {"type": "mrkdwn", "text": f":warning: *{_esc(summary)}*"}},
            {"type": "section", "fields": fields},
        ]
        if top := _top(alert):
            lines = "\n".join(f"• {_esc(t)}" for t in top)
            blocks.append(
                {"type": "section", "text": {"type": "mrkdwn", "text": f"*Top features*\n{lines}"}}
            )
    context = f"record {_esc(alert_id)}"
    if link:
        context = f"<{link}|drift report> · " + context
    blocks.append({"type": "context", "elements": [{"type": "mrkdwn", "text": context}]})
    return {"text": text, "blocks": blocks}


def payload(fmt: Format, alert_id: str, alert: dict[str, Any]) -> Any:
    return (
        slack_payload(alert_id, alert) if fmt == "slack" else alertmanager_payload(alert_id, alert)
    )


# -- delivery ------------------------------------------------------------------


class _Metrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.deliveries = Counter(
            "mrm_monitor_webhook_deliveries",
            "Notifications a webhook accepted",
            ["format"],
            registry=registry,
        )
        self.failures = Counter(
            "mrm_monitor_webhook_failures",
            "Failed delivery attempts (each retry counts)",
            ["format"],
            registry=registry,
        )
        self.given_up = Counter(
            "mrm_monitor_webhook_given_up",
            "Notifications dropped after their last attempt",
            ["format"],
            registry=registry,
        )
        self.queue_depth = Gauge(
            "mrm_monitor_webhook_queue_depth",
            "Deliveries submitted and not yet finished",
            registry=registry,
        )


def _retry_after(value: str | None, cap: float) -> float | None:
    """Retry-After in seconds, if given as seconds and no longer than `cap`."""
    try:
        seconds = float(value) if value is not None else None
    except ValueError:
        return None  # an HTTP date: fall back to our own backoff
    return seconds if seconds is not None and 0 <= seconds <= cap else None


class Notifier:
    """Delivers submitted alerts to every target, once each, in the background."""

    def __init__(
        self,
        targets: Sequence[WebhookTarget],
        outbox_path: Path,
        registry: CollectorRegistry,
        max_attempts: int = 8,
        base_delay: float = 0.5,
        max_delay: float = 60.0,
    ) -> None:
        if max_attempts < 1:
            raise ValueError(f"max_attempts: {max_attempts} is less than 1")
        self.targets = list(targets)
        self.max_attempts = max_attempts
        self.base_delay = base_delay
        self.max_delay = max_delay
        self._metrics = _Metrics(registry)
        self._outbox = Outbox(outbox_path)
        self._inflight: set[tuple[str, str, str]] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._closed = False
        self._ready = threading.Event()
        self._loop = asyncio.new_event_loop()
        self._stop: asyncio.Event | None = None
        self._drain_timeout = 0.0
        self._session: aiohttp.ClientSession | None = None
        self._thread = threading.Thread(target=self._run, name="mrm-notify", daemon=True)
        self._thread.start()
        self._ready.wait()

    # The monitor's thread(s) -------------------------------------------------

    def submit(self, alert_id: str, alert: dict[str, Any]) -> None:
        """Queue `alert` for every target; returns at once. Repeats are no-ops."""
        if self._closed or not self.targets:
            if self._closed:
                log.warning("notifier closed: alert %s not sent", alert_id)
            return
        self._metrics.queue_depth.inc(len(self.targets))
        try:
            self._loop.call_soon_threadsafe(self._spawn, alert_id, dict(alert))
        except RuntimeError:  # the loop closed under us
            self._metrics.queue_depth.dec(len(self.targets))

    def close(self, timeout: float = 5.0) -> None:
        """Let deliveries in flight finish for up to `timeout` seconds, then stop."""
        if self._closed:
            return
        self._closed = True
        self._drain_timeout = timeout
        stop = self._stop
        if stop is not None:
            self._loop.call_soon_threadsafe(stop.set)
        self._thread.join(timeout + 5.0)
        self._outbox.close()

    # The worker thread -------------------------------------------------------

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        try:
            self._loop.run_until_complete(self._main())
        finally:
            self._loop.close()

    async def _main(self) -> None:
        self._stop = asyncio.Event()
        self._session = aiohttp.ClientSession()
        self._ready.set()
        try:
            await self._stop.wait()
            if self._tasks:
                _, pending = await asyncio.wait(self._tasks, timeout=self._drain_timeout)
                for task in pending:
                    task.cancel()
                await asyncio.gather(*pending, return_exceptions=True)
        finally:
            await self._session.close()

    def _spawn(self, alert_id: str, alert: dict[str, Any]) -> None:
        state = _state(alert)
        for target in self.targets:
            key = (alert_id, state, target.key)
            if key in self._inflight:
                self._metrics.queue_depth.dec()
                continue
            self._inflight.add(key)
            task = self._loop.create_task(self._deliver(alert_id, alert, target, key))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _deliver(
        self, alert_id: str, alert: dict[str, Any], target: WebhookTarget, key: tuple[str, str, str]
    ) -> None:
        _, state, target_key = key
        try:
            if self._outbox.delivered(alert_id, state, target_key):
                return
            if await self._attempts(alert_id, alert, target, state):
                self._outbox.mark_delivered(alert_id, state, target_key)
        except Exception:
            # Only a bug gets here; the alert itself is safe in the ledger.
            log.exception("notifying %s webhook at %s failed", target.format, target.host)
        finally:
            self._inflight.discard(key)
            self._metrics.queue_depth.dec()

    async def _attempts(
        self, alert_id: str, alert: dict[str, Any], target: WebhookTarget, state: str
    ) -> bool:
        assert self._session is not None
        data = json.dumps(payload(target.format, alert_id, alert)).encode()
        # Firing and acknowledgement are two messages; each is sent once.
        idem = alert_id if state == "firing" else f"{alert_id}:{state}"
        headers = {"Content-Type": "application/json", "Idempotency-Key": idem}
        fmt = target.format
        for attempt in range(1, self.max_attempts + 1):
            wait: float | None = None
            try:
                async with self._session.post(
                    target.url,
                    data=data,
                    headers=headers,
                    timeout=aiohttp.ClientTimeout(total=target.timeout),
                    allow_redirects=False,
                ) as resp:
                    await resp.read()
                    if 200 <= resp.status < 300:
                        self._metrics.deliveries.labels(fmt).inc()
                        log.info(
                            "alert %s (%s) sent to %s at %s", alert_id, state, fmt, target.host
                        )
                        return True
                    retryable = resp.status >= 500 or resp.status == 429
                    wait = _retry_after(resp.headers.get("Retry-After"), self.max_delay)
                    reason = f"HTTP {resp.status}"
            except (aiohttp.ClientError, TimeoutError) as exc:
                # The exception's text may hold the URL: name its type only.
                retryable, reason = True, type(exc).__name__
            self._metrics.failures.labels(fmt).inc()
            if not retryable or attempt == self.max_attempts:
                break
            log.warning(
                "alert %s to %s at %s: attempt %d/%d failed (%s)",
                alert_id, fmt, target.host, attempt, self.max_attempts, reason,
            )  # fmt: skip
            await asyncio.sleep(wait if wait is not None else self._backoff(attempt))
        self._metrics.given_up.labels(fmt).inc()
        log.error(
            "alert %s to %s at %s: giving up after %d attempt(s) (%s)",
            alert_id, fmt, target.host, attempt, reason,
        )  # fmt: skip
        return False

    def _backoff(self, attempt: int) -> float:
        ceiling = min(self.max_delay, self.base_delay * 2 ** (attempt - 1))
        return random.uniform(ceiling / 2, ceiling)  # jitter spreads retries of many alerts
