"""The MonitorService gRPC adapter: protobuf in, domain call, protobuf out."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from datetime import UTC, datetime

import grpc
import orjson
from google.protobuf.timestamp_pb2 import Timestamp

from mrm.core.auth import deployer_of
from mrm.core.errors import InvalidArgument
from mrm.monitor.alerts import Alerts, AlertView
from mrm.v1 import monitor_pb2 as pb
from mrm.v1 import monitor_pb2_grpc

Context = grpc.aio.ServicerContext[object, object]


def _size(value: int, default: int, field: str) -> int:
    if value < 0 or value > 1000:
        raise InvalidArgument(field, f"{value} is outside 0..1000 (0 means {default})")
    return value or default


def _name(value: str, field: str, *, required: bool) -> str:
    if required and not value:
        raise InvalidArgument(field, "is required")
    if len(value) > 200 or any(not c.isprintable() for c in value):
        raise InvalidArgument(field, "is not a model name (printable, at most 200 characters)")
    return value


def alert_pb(view: AlertView) -> pb.Alert:
    b = view.body
    out = pb.Alert(
        record_id=view.record.record_id,
        model_name=view.record.model_name,
        model_version=view.record.model_version,
        rule=str(b.get("rule", "")),
        metric=str(b.get("metric", "")),
        feature=str(b.get("feature", "")),
        value=float(b.get("value", 0.0)),
        threshold=float(b.get("threshold", 0.0)),
        summary=str(b.get("summary", "")),
        state=pb.ALERT_STATE_FIRING if view.firing else pb.ALERT_STATE_ACKNOWLEDGED,
        body_json=view.record.body_json,
    )
    out.raised_at.CopyFrom(view.record.recorded_at)
    if view.acknowledgement is not None:
        ack = orjson.loads(view.acknowledgement.body_json)
        out.acknowledged_by = view.acknowledgement.actor
        out.acknowledged_at.CopyFrom(view.acknowledgement.recorded_at)
        out.note = str(ack.get("note", ""))
    return out


class MonitorServicer(monitor_pb2_grpc.MonitorServiceServicer):
    """Thin transport over `Alerts`; the ledger calls run in worker threads."""

    def __init__(
        self, alerts: Alerts, on_acknowledged: Callable[[str], None] | None = None
    ) -> None:
        self.alerts = alerts
        self.on_acknowledged = on_acknowledged

    async def GetDrift(self, request: pb.GetDriftRequest, context: Context) -> pb.GetDriftResponse:
        model = _name(request.model_name, "model_name", required=True)
        version = _name(request.model_version, "model_version", required=False)
        size = _size(request.page_size, 20, "page_size")
        since = _time(request.start_time) if request.HasField("start_time") else None
        records = await asyncio.to_thread(self.alerts.drift, model, version, since, size)
        return pb.GetDriftResponse(windows=records)

    async def ListAlerts(
        self, request: pb.ListAlertsRequest, context: Context
    ) -> pb.ListAlertsResponse:
        model = _name(request.model_name, "model_name", required=False)
        if request.state not in pb.AlertState.values():
            raise InvalidArgument("state", f"{request.state} is not an alert state")
        firing = None if request.state == 0 else request.state == pb.ALERT_STATE_FIRING
        size = _size(request.page_size, 100, "page_size")
        views, token = await asyncio.to_thread(
            self.alerts.list, model, firing, size, request.page_token
        )
        return pb.ListAlertsResponse(alerts=[alert_pb(v) for v in views], next_page_token=token)

    async def AcknowledgeAlert(
        self, request: pb.AcknowledgeAlertRequest, context: Context
    ) -> pb.AcknowledgeAlertResponse:
        alert_id = request.alert_record_id
        try:
            if not alert_id or str(uuid.UUID(alert_id)) != alert_id:
                raise ValueError
        except ValueError:
            raise InvalidArgument(
                "alert_record_id", f"{alert_id[:60]!r} is not a record id (a UUID)"
            ) from None
        if len(request.note) > 1000:
            raise InvalidArgument("note", f"is {len(request.note)} characters (at most 1000)")
        view = await asyncio.to_thread(self.alerts.get, alert_id)
        who = deployer_of(view.record.model_name)
        acked, ack_id, existed = await asyncio.to_thread(
            self.alerts.acknowledge, alert_id, request.note, who.name
        )
        if self.on_acknowledged is not None:
            self.on_acknowledged(alert_id)
        return pb.AcknowledgeAlertResponse(
            alert=alert_pb(acked), acknowledgement_record_id=ack_id, already_acknowledged=existed
        )


def _time(ts: Timestamp) -> datetime:
    try:
        return ts.ToDatetime(tzinfo=UTC)
    except (ValueError, OverflowError):
        raise InvalidArgument("start_time", "is not a valid Timestamp") from None
