"""One validator per RegistryService request: protobuf in, domain values out."""

from __future__ import annotations

import base64
import math
import uuid

from mrm.core.errors import InvalidArgument, parse_field
from mrm.kernel import ids, names
from mrm.registry.entities import (
    LINKED_KINDS,
    ROLES,
    STAGES,
    ArtifactInfo,
    LinkedRecord,
    NewVersion,
)
from mrm.tlog.canonical import CanonicalJSONError, canonicalize_json_object
from mrm.v1 import ledger_pb2, registry_pb2

_MAX_TEXT = 1000
_MAX_FACTS = 64 * 1024
_MAX_PAGE = 1000


def model_name(value: str, field: str) -> str:
    return parse_field(field, names.model_name, value)


def semver(value: str, field: str) -> tuple[int, int, int, str]:
    return parse_field(field, names.semver, value)


def parse_record_id(value: str, field: str) -> uuid.UUID:
    return parse_field(field, ids.parse_record_id, value)


def _text(value: str, field: str) -> str:
    if len(value) > _MAX_TEXT:
        raise InvalidArgument(field, f"is {len(value)} characters (at most {_MAX_TEXT})")
    return value


def page_size(value: int) -> int:
    if not 0 <= value <= _MAX_PAGE:
        raise InvalidArgument("page_size", f"{value} is out of range (want 0 to {_MAX_PAGE})")
    return value or 100


def encode_token(value: str) -> str:
    return base64.urlsafe_b64encode(value.encode()).decode()


def decode_token(token: str) -> str:
    try:
        return base64.urlsafe_b64decode(token.encode()).decode() if token else ""
    except (ValueError, UnicodeDecodeError):
        raise InvalidArgument("page_token", "is not a token this server issued") from None


def offset_token(token: str) -> int:
    """The offset a page token of an offset-paged list carries; 0 for none."""
    value = decode_token(token)
    if value and not value.isdigit():
        raise InvalidArgument("page_token", "is not a token this server issued")
    return int(value or 0)


def validate_create_model(req: registry_pb2.CreateModelRequest) -> tuple[str, str]:
    return model_name(req.model.name, "model.name"), _text(
        req.model.description, "model.description"
    )


_ROLE_NAMES: dict[int, str] = {
    v: n.removeprefix("ARTIFACT_ROLE_") for n, v in registry_pb2.ArtifactRole.items()
}
_KIND_NAMES: dict[int, str] = {
    v: n.removeprefix("RECORD_KIND_") for n, v in ledger_pb2.RecordKind.items()
}
_STAGE_NAMES: dict[int, str] = {v: n.removeprefix("STAGE_") for n, v in registry_pb2.Stage.items()}


def _role(value: int, field: str) -> str:
    role = _ROLE_NAMES.get(value, "")
    if role not in ROLES:
        raise InvalidArgument(
            field, f"{value} is not an artifact role (want one of {', '.join(ROLES)})"
        )
    return role


def validate_register(req: registry_pb2.RegisterVersionRequest) -> NewVersion:
    v = req.version
    name = model_name(v.model_name, "version.model_name")
    parsed = semver(v.version, "version.version")
    arts: list[ArtifactInfo] = []
    for i, a in enumerate(v.artifacts):
        role = _role(a.role, f"version.artifacts[{i}].role")
        if any(x.role == role for x in arts):
            raise InvalidArgument(f"version.artifacts[{i}].role", f"{role} is given twice")
        if len(a.sha256) != 64 or any(c not in "0123456789abcdef" for c in a.sha256):
            raise InvalidArgument(
                f"version.artifacts[{i}].sha256", "is not 64 lowercase hex digits"
            )
        arts.append(ArtifactInfo(role, a.sha256, 0, ""))
    if not any(a.role == "ONNX_MODEL" for a in arts):
        raise InvalidArgument("version.artifacts", "needs the ONNX_MODEL artifact")
    if math.isnan(v.sample_rate) or not 0 <= v.sample_rate <= 1:
        raise InvalidArgument("version.sample_rate", f"{v.sample_rate} is not between 0 and 1")
    if v.strict and v.sample_rate != 1:
        raise InvalidArgument(
            "version.sample_rate",
            f"is {v.sample_rate:g}, but a strict version records every decision: set it to 1",
        )
    facts = v.facts_json or "{}"
    if len(facts) > _MAX_FACTS:
        raise InvalidArgument("version.facts_json", f"is over {_MAX_FACTS} characters")
    try:
        facts = canonicalize_json_object(facts)
    except CanonicalJSONError as e:
        raise InvalidArgument("version.facts_json", f"is not a JSON object: {e}") from None
    output_only = v.HasField("create_time") or v.HasField("created_by_identity")
    if v.stage or v.created_by or v.ingested_record_id or output_only:
        raise InvalidArgument("version", "has output-only fields set (stage, created_by, …)")
    linked: list[LinkedRecord] = []
    for i, r in enumerate(req.linked_records):
        p = f"linked_records[{i}]"
        kind = _KIND_NAMES.get(r.kind, "")
        if kind not in LINKED_KINDS:
            raise InvalidArgument(f"{p}.kind", f"must be one of {', '.join(LINKED_KINDS)}")
        if (r.model_name, r.model_version) != (name, v.version):
            raise InvalidArgument(f"{p}.model_name", f"must be {name} {v.version}, this version")
        linked.append(
            LinkedRecord(str(parse_record_id(r.record_id, f"{p}.record_id")), kind, r.body_json)
        )
    return NewVersion(
        model_name=name,
        version=v.version,
        semver=parsed,
        artifacts=tuple(arts),
        sample_rate=v.sample_rate,
        strict=v.strict,
        facts_json=facts,
        request_id=str(parse_record_id(req.request_id, "request_id")),
        linked=tuple(linked),
    )


def validate_promote(req: registry_pb2.PromoteVersionRequest) -> tuple[str, str, str, str, str]:
    name = model_name(req.model_name, "model_name")
    semver(req.version, "version")
    stage = _STAGE_NAMES.get(req.stage, "")
    if stage not in STAGES or stage == "NONE":
        raise InvalidArgument("stage", "must be STAGING, PRODUCTION or ARCHIVED")
    request_id = str(parse_record_id(req.request_id, "request_id"))
    return name, req.version, stage, _text(req.reason, "reason"), request_id


_MAX_REASONS = 100


def validate_refusal(
    req: registry_pb2.RecordRefusalRequest,
) -> tuple[str, str, list[str], str, str]:
    """(model name, version, reasons, canonical facts, request id)."""
    name = model_name(req.model_name, "model_name")
    semver(req.version, "version")
    if not 0 < len(req.reasons) <= _MAX_REASONS:
        raise InvalidArgument("reasons", f"has {len(req.reasons)} (want 1 to {_MAX_REASONS})")
    reasons = [_text(r, f"reasons[{i}]") for i, r in enumerate(req.reasons)]
    facts = req.facts_json or "{}"
    if len(facts) > _MAX_FACTS:
        raise InvalidArgument("facts_json", f"is over {_MAX_FACTS} characters")
    try:
        facts = canonicalize_json_object(facts)
    except CanonicalJSONError as e:
        raise InvalidArgument("facts_json", f"is not a JSON object: {e}") from None
    request_id = str(parse_record_id(req.request_id, "request_id"))
    return name, req.version, reasons, facts, request_id
