"""Typed clients for mrm.v1.MonitorService and mrm.v1.OutcomeService.

with MonitorClient("localhost:50054") as monitor:
    for alert in monitor.alerts(model_name="credit-risk"):
        print(alert.summary)
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from datetime import datetime

from mrm.client.channel import ServiceClient
from mrm.client.credentials import ClientAuth
from mrm.client.timestamps import timestamp
from mrm.v1 import ledger_pb2, monitor_pb2, monitor_pb2_grpc

Alert = monitor_pb2.Alert
Outcome = monitor_pb2.Outcome
AlertState = monitor_pb2.AlertState


class MonitorClient(ServiceClient):
    """MonitorService and OutcomeService over one channel (they share a server)."""

    def __init__(
        self, target: str, *, timeout: float = 30.0, auth: ClientAuth | None = None
    ) -> None:
        super().__init__(target, timeout=timeout, auth=auth)
        self._monitor = monitor_pb2_grpc.MonitorServiceStub(self._channel)
        self._outcomes = monitor_pb2_grpc.OutcomeServiceStub(self._channel)

    def drift(
        self,
        model_name: str,
        *,
        model_version: str = "",
        since: datetime | None = None,
        page_size: int = 0,
    ) -> list[ledger_pb2.Record]:
        """The model's evaluated windows (DRIFT records), newest first."""
        req = monitor_pb2.GetDriftRequest(
            model_name=model_name, model_version=model_version, page_size=page_size
        )
        if since is not None:
            req.start_time.CopyFrom(timestamp(since))
        return list(self._call(self._monitor.GetDrift, req).windows)

    def alerts(
        self,
        *,
        model_name: str = "",
        state: monitor_pb2.AlertState.ValueType = monitor_pb2.ALERT_STATE_UNSPECIFIED,
        page_size: int = 0,
    ) -> Iterator[Alert]:
        """Alerts, newest first, every page."""
        req = monitor_pb2.ListAlertsRequest(model_name=model_name, state=state, page_size=page_size)
        while True:
            page = self._call(self._monitor.ListAlerts, req)
            yield from page.alerts
            if not page.next_page_token:
                return
            req.page_token = page.next_page_token

    def acknowledge(
        self, alert_record_id: str, note: str = ""
    ) -> monitor_pb2.AcknowledgeAlertResponse:
        req = monitor_pb2.AcknowledgeAlertRequest(alert_record_id=alert_record_id, note=note)
        return self._call(self._monitor.AcknowledgeAlert, req)

    def record_outcomes(
        self,
        outcomes: Sequence[Outcome],
        *,
        skip_bad: bool = False,
        source: str = "",
        validate_only: bool = False,
    ) -> monitor_pb2.RecordOutcomesResponse:
        """Records outcomes in one request (1 to 10,000; batch larger uploads).

        With `validate_only`, checks them and records nothing: the answer lists
        every bad outcome and what the good ones would be."""
        req = monitor_pb2.RecordOutcomesRequest(
            outcomes=outcomes, skip_bad=skip_bad, source=source, validate_only=validate_only
        )
        return self._call(self._outcomes.RecordOutcomes, req)
