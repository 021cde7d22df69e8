"""A typed client for mrm.v1.ExplainService, and the plain-words answer.

with ExplainClient("localhost:50053") as explain:
    for record in explain.decisions("applicant-7"):
        exp = explain.explain_record(record.record_id)
        print(sentence(exp))
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

from google.protobuf import json_format

from mrm.client.channel import ServiceClient
from mrm.client.credentials import ClientAuth
from mrm.client.ledger import Record
from mrm.client.timestamps import timestamp
from mrm.v1 import explain_pb2, explain_pb2_grpc

Explanation = explain_pb2.Explanation
Baseline = explain_pb2.Baseline
MAIN_FACTORS = 3


class ExplainClient(ServiceClient):
    """ExplainService over one channel. Use as a context manager or call close()."""

    def __init__(
        self, target: str, *, timeout: float = 60.0, auth: ClientAuth | None = None
    ) -> None:
        super().__init__(target, timeout=timeout, auth=auth)
        self._stub = explain_pb2_grpc.ExplainServiceStub(self._channel)

    def compute_baseline(
        self, model_name: str, version: str
    ) -> explain_pb2.ComputeBaselineResponse:
        req = explain_pb2.ComputeBaselineRequest(model_name=model_name, version=version)
        return self._call(self._stub.ComputeBaseline, req)

    def explain_record(
        self, record_id: str, row: int = 0, *, reuse_latest: bool = False
    ) -> Explanation:
        """Explain a recorded decision (and record the explanation in the ledger).

        With `reuse_latest`, the decision's recorded explanation when it has one
        that still stands (see ExplainRecordRequest.reuse_latest); nothing is
        appended then.
        """
        req = explain_pb2.ExplainRecordRequest(
            record_id=record_id, row=row, reuse_latest=reuse_latest
        )
        return self._call(self._stub.ExplainRecord, req).explanation

    def report(self, record_id: str) -> explain_pb2.GetReportResponse:
        """The self-contained HTML report of an EXPLANATION (or a PREDICTION's latest)."""
        return self._call(self._stub.GetReport, explain_pb2.GetReportRequest(record_id=record_id))

    def decisions(
        self,
        subject_id: str,
        *,
        model_name: str = "",
        since: datetime | None = None,
        until: datetime | None = None,
        page_size: int = 100,
    ) -> Iterator[Record]:
        """PREDICTION records about a subject (its raw id), newest first, every page.

        Raises NotFound when no decision about the subject was ever recorded.
        """
        req = explain_pb2.ListDecisionsRequest(
            subject_id=subject_id, model_name=model_name, page_size=page_size
        )
        if since is not None:
            req.start_time.CopyFrom(timestamp(since))
        if until is not None:
            req.end_time.CopyFrom(timestamp(until))
        while True:
            page = self._call(self._stub.ListDecisions, req)
            yield from page.records
            if not page.next_page_token:
                return
            req.page_token = page.next_page_token


def feature_value(c: explain_pb2.Contribution) -> Any:
    """The feature's value in the decision: the typed `value`, or from `value_json`
    when a server older than the typed field sent only that."""
    if c.HasField("value"):
        return json_format.MessageToDict(c.value)
    try:
        return json.loads(c.value_json)
    except ValueError:
        return c.value_json


def format_value(value: Any) -> str:
    """7.0 as 7, 47120.53 as 47120.53, 0.6234567 as 0.6235, strings as they are."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return str(value)
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e15:
        return str(int(value))
    if 1 <= abs(value) < 1e15:
        return f"{value:.2f}".rstrip("0").rstrip(".")
    return f"{value:.4g}"


def format_shap(value: float) -> str:
    return f"{value:+.2f}" if abs(value) >= 0.01 else f"{value:+.2g}"


def decided_at(exp: Explanation) -> str:
    moment = exp.decided_at.ToDatetime(tzinfo=UTC)
    return moment.strftime("%Y-%m-%d %H:%M UTC")


def main_factors(exp: Explanation, n: int = MAIN_FACTORS) -> list[explain_pb2.Contribution]:
    """The n contributions with the largest |SHAP|, largest first."""
    return sorted(exp.contributions, key=lambda c: abs(c.shap), reverse=True)[:n]


def sentence(exp: Explanation, n: int = MAIN_FACTORS) -> str:
    """'Rejected by credit-risk 1.2.4 on 2026-11-24 14:03 UTC (probability of default
    0.83). Main factors: debt_to_income = 0.62 (+0.21), …'"""
    factors = ", ".join(
        f"{c.feature} = {format_value(feature_value(c))} ({format_shap(c.shap)})"
        for c in main_factors(exp, n)
    )
    more = ", …" if len(exp.contributions) > n else ""
    if exp.HasField("probability"):
        output = f"{exp.probability_label} {exp.probability:.2f}"
    else:
        output = f"{exp.output_label} {exp.output_value:.2f}"
    return (
        f"{exp.decision} by {exp.model_name} {exp.model_version} on {decided_at(exp)} "
        f"({output}). Main factors: {factors}{more}"
    )
