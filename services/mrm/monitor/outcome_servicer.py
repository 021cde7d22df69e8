"""The OutcomeService gRPC adapter: protobuf in, mrm.monitor.outcomes, protobuf out."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from datetime import UTC, datetime

import grpc
from google.protobuf.timestamp_pb2 import Timestamp

from mrm.core.auth import caller, deployer_of
from mrm.core.errors import InvalidArgument
from mrm.monitor.outcomes import MAX_OUTCOMES, MAX_SOURCE, OutcomeIn, Outcomes
from mrm.v1 import monitor_pb2 as pb
from mrm.v1 import monitor_pb2_grpc

Context = grpc.aio.ServicerContext[object, object]


def _time(o: pb.Outcome, name: str, index: int) -> datetime | None:
    if not o.HasField(name):  # type: ignore[arg-type]
        return None
    ts: Timestamp = getattr(o, name)
    try:
        return ts.ToDatetime(tzinfo=UTC)
    except (ValueError, OverflowError):
        raise InvalidArgument(f"outcomes[{index}].{name}", "is not a valid Timestamp") from None


def outcomes_in(request: pb.RecordOutcomesRequest) -> list[OutcomeIn]:
    """The request's own limits (a malformed one is refused whole, even with skip_bad)."""
    n = len(request.outcomes)
    if not 1 <= n <= MAX_OUTCOMES:
        raise InvalidArgument(
            "outcomes", f"has {n} outcomes (1 to {MAX_OUTCOMES}; split larger uploads)"
        )
    if len(request.source) > MAX_SOURCE or not request.source.isprintable():
        raise InvalidArgument("source", f"is not printable text of at most {MAX_SOURCE} characters")
    return [
        OutcomeIn(
            mrm_record_id=o.mrm_record_id,
            subject_id=o.subject_id,
            decided_at=_time(o, "decided_at", i),
            label=o.label,
            observed_at=_time(o, "observed_at", i),
            line=o.line,
        )
        for i, o in enumerate(request.outcomes)
    ]


def _authorize(models: Iterable[str]) -> str:
    for model in models:
        deployer_of(model)
    return caller().name


class OutcomeServicer(monitor_pb2_grpc.OutcomeServiceServicer):
    """Thin transport over `Outcomes`; the ledger calls run in a worker thread."""

    SERVICE_NAME = pb.DESCRIPTOR.services_by_name["OutcomeService"].full_name

    def __init__(self, outcomes: Outcomes) -> None:
        self.outcomes = outcomes

    async def RecordOutcomes(
        self, request: pb.RecordOutcomesRequest, context: Context
    ) -> pb.RecordOutcomesResponse:
        batch = outcomes_in(request)
        done = await asyncio.to_thread(
            self.outcomes.record,
            batch,
            source=request.source,
            skip_bad=request.skip_bad,
            authorize=_authorize,
            validate_only=request.validate_only,
        )
        return pb.RecordOutcomesResponse(
            recorded=done.recorded,
            duplicates=done.duplicates,
            problems=[
                pb.OutcomeProblem(index=p.index, line=p.line, field=p.field, message=p.message)
                for p in done.problems
            ],
            record_ids=done.record_ids,
        )
