"""One validator per ExplainService request: protobuf in, domain values out."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from google.protobuf.timestamp_pb2 import Timestamp

from mrm.core.errors import InvalidArgument, parse_field
from mrm.kernel import names
from mrm.kernel.ids import parse_record_id
from mrm.v1 import explain_pb2 as pb

MAX_SUBJECT = 1024
MAX_PAGE = 1000
MAX_ROW = 1_000_000
_MIN_SECONDS = -62_135_596_800  # 0001-01-01T00:00:00Z
_MAX_SECONDS = 253_402_300_799  # 9999-12-31T23:59:59Z


def validate_baseline(req: pb.ComputeBaselineRequest) -> tuple[str, str]:
    name = parse_field("model_name", names.model_name, req.model_name)
    parse_field("version", names.semver, req.version)
    return name, req.version


def validate_explain(req: pb.ExplainRecordRequest) -> tuple[str, int]:
    parse_field("record_id", parse_record_id, req.record_id)
    if req.row > MAX_ROW:
        raise InvalidArgument("row", f"{req.row} is out of range (want 0 to {MAX_ROW})")
    return req.record_id, req.row


def validate_report(req: pb.GetReportRequest) -> str:
    parse_field("record_id", parse_record_id, req.record_id)
    return req.record_id


@dataclass(frozen=True)
class DecisionQuery:
    subject_id: str
    model_name: str
    start_us: int | None
    end_us: int | None
    page_size: int
    page_token: str


def _time(req: pb.ListDecisionsRequest, field: Literal["start_time", "end_time"]) -> int | None:
    if not req.HasField(field):
        return None
    ts: Timestamp = getattr(req, field)
    if not _MIN_SECONDS <= ts.seconds <= _MAX_SECONDS or not 0 <= ts.nanos < 1_000_000_000:
        raise InvalidArgument(field, "is outside 0001-01-01..9999-12-31 (a valid Timestamp)")
    return ts.seconds * 1_000_000 + ts.nanos // 1000


def validate_list_decisions(req: pb.ListDecisionsRequest) -> DecisionQuery:
    if not req.subject_id:
        raise InvalidArgument("subject_id", "is required (the id the caller sent to the proxy)")
    if len(req.subject_id) > MAX_SUBJECT:
        raise InvalidArgument(
            "subject_id", f"is {len(req.subject_id)} characters (at most {MAX_SUBJECT})"
        )
    name = parse_field("model_name", names.model_name, req.model_name) if req.model_name else ""
    if not 0 <= req.page_size <= MAX_PAGE:
        raise InvalidArgument(
            "page_size", f"{req.page_size} is out of range (want 0 to {MAX_PAGE})"
        )
    start, end = _time(req, "start_time"), _time(req, "end_time")
    if start is not None and end is not None and end < start:
        raise InvalidArgument("end_time", "is before start_time")
    return DecisionQuery(
        subject_id=req.subject_id,
        model_name=name,
        start_us=start,
        end_us=end,
        page_size=req.page_size or 100,
        page_token=req.page_token,
    )
