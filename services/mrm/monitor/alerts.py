"""What the monitor has found, read back from the ledger: windows and alerts.

Nothing here is kept anywhere but in the ledger: an alert's state is whether
an acknowledgement record names it, so any monitor replica answers alike.
"""

from __future__ import annotations

import base64
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson

from mrm.client.errors import NotFound as ClientNotFound
from mrm.client.ledger import LedgerClient, new_record
from mrm.core.errors import InvalidArgument, NotFound
from mrm.v1 import ledger_pb2
from mrm.v1.ledger_pb2 import Record


@dataclass(frozen=True)
class AlertView:
    record: Record
    body: dict[str, Any]
    acknowledgement: Record | None

    @property
    def firing(self) -> bool:
        return self.acknowledgement is None


class Alerts:
    """Alerts and windows over a ledger client (the monitor's own credential)."""

    def __init__(self, ledger: LedgerClient) -> None:
        self.ledger = ledger

    def drift(self, model: str, version: str, since: datetime | None, limit: int) -> list[Record]:
        out: list[Record] = []
        for rec in self.ledger.query(
            kind="DRIFT", model_name=model, model_version=version, since=since, newest_first=True
        ):
            out.append(rec)
            if len(out) >= limit:
                break
        if not out and next(self.ledger.query(model_name=model, page_size=1), None) is None:
            raise NotFound(f"the ledger has no record of model {model!r}")
        return out

    def _acks(self) -> dict[str, Record]:
        acks: dict[str, Record] = {}
        for rec in self.ledger.query(kind="ALERT"):
            body = orjson.loads(rec.body_json)
            if body.get("state") == "acknowledged":
                acks.setdefault(str(body.get("alert_record_id")), rec)
        return acks

    def list(
        self, model: str, firing: bool | None, page_size: int, page_token: str
    ) -> tuple[list[AlertView], str]:
        skip = _offset(page_token)
        acks = self._acks()
        views: Iterator[AlertView] = (
            AlertView(rec, body, acks.get(rec.record_id))
            for rec in self.ledger.query(kind="ALERT", model_name=model, newest_first=True)
            if (body := orjson.loads(rec.body_json)).get("state") == "firing"
        )
        page: list[AlertView] = []
        seen = 0
        for view in views:
            if firing is not None and view.firing != firing:
                continue
            seen += 1
            if seen <= skip:
                continue
            if len(page) == page_size:
                return page, _token(skip + page_size)
            page.append(view)
        return page, ""

    def get(self, alert_id: str) -> AlertView:
        try:
            rec = self.ledger.get_record(alert_id)
        except ClientNotFound:
            raise NotFound(f"no alert has record id {alert_id}") from None
        body = orjson.loads(rec.body_json)
        if rec.kind != ledger_pb2.RECORD_KIND_ALERT or body.get("state") != "firing":
            raise InvalidArgument("alert_record_id", f"{alert_id} is not a raised ALERT record")
        return AlertView(rec, body, self._acks().get(alert_id))

    def acknowledge(self, alert_id: str, note: str, by: str) -> tuple[AlertView, str, bool]:
        view = self.get(alert_id)
        if view.acknowledgement is not None:
            return view, view.acknowledgement.record_id, True
        record = new_record(
            "ALERT",
            {"state": "acknowledged", "alert_record_id": alert_id, "note": note, "by": by},
            model_name=view.record.model_name,
            model_version=view.record.model_version,
        )
        (result,) = self.ledger.append([record], on_behalf_of=by)
        acked = self.ledger.get_record(result.record_id)
        return AlertView(view.record, view.body, acked), result.record_id, False


def _token(offset: int) -> str:
    return base64.urlsafe_b64encode(f"alerts:{offset}".encode()).decode().rstrip("=")


def _offset(token: str) -> int:
    if not token:
        return 0
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode()
        prefix, value = raw.split(":")
        if prefix != "alerts" or int(value) < 0:
            raise ValueError
        return int(value)
    except ValueError:
        raise InvalidArgument("page_token", "is not a token this server issued") from None
