"""The ExplainService gRPC adapter: protobuf in, domain call, protobuf out."""

from __future__ import annotations

import asyncio

import grpc

from mrm.client.ledger import Record
from mrm.core.auth import deployer_of
from mrm.explain import validate
from mrm.explain.records import baseline_pb, explanation_pb
from mrm.explain.report import ReportRenderer
from mrm.explain.service import Explain
from mrm.v1 import explain_pb2 as pb
from mrm.v1 import explain_pb2_grpc

Context = grpc.aio.ServicerContext[object, object]


class ExplainServicer(explain_pb2_grpc.ExplainServiceServicer):
    """Thin transport over `Explain`; the work runs in worker threads."""

    def __init__(self, explain: Explain, reports: ReportRenderer) -> None:
        self.explain = explain
        self.reports = reports

    async def ComputeBaseline(
        self, request: pb.ComputeBaselineRequest, context: Context
    ) -> pb.ComputeBaselineResponse:
        name, version = validate.validate_baseline(request)
        deployer_of(name)
        record, existed = await asyncio.to_thread(self.explain.compute_baseline, name, version)
        return pb.ComputeBaselineResponse(baseline=baseline_pb(record), already_recorded=existed)

    async def ExplainRecord(
        self, request: pb.ExplainRecordRequest, context: Context
    ) -> pb.ExplainRecordResponse:
        record_id, row = validate.validate_explain(request)

        def explain() -> tuple[Record, Record, bool]:
            if request.reuse_latest:
                found = self.explain.recorded_explanation(record_id, row)
                if found is not None:
                    return *found, True
            return *self.explain.explain_record(record_id, row), False

        explanation, prediction, reused = await asyncio.to_thread(explain)
        return pb.ExplainRecordResponse(
            explanation=explanation_pb(explanation, prediction), reused=reused
        )

    async def GetReport(
        self, request: pb.GetReportRequest, context: Context
    ) -> pb.GetReportResponse:
        record_id = validate.validate_report(request)
        html, explanation_id = await asyncio.to_thread(self.reports.render, record_id)
        return pb.GetReportResponse(html=html, explanation_record_id=explanation_id)

    async def ListDecisions(
        self, request: pb.ListDecisionsRequest, context: Context
    ) -> pb.ListDecisionsResponse:
        query = validate.validate_list_decisions(request)
        records, token = await asyncio.to_thread(self.explain.list_decisions, query)
        return pb.ListDecisionsResponse(records=records, next_page_token=token)
