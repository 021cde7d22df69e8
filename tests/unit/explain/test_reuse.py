"""When a decision's recorded explanation still stands (ExplainRecordRequest.reuse_latest):
only an explanation of this decision and row, computed from the artifacts the registry
archives for the version now, and only when the decision names that ONNX model."""

from __future__ import annotations

import json
from typing import Any

import pytest

from mrm.client.ledger import Record
from mrm.explain.evidence import Evidence
from mrm.explain.service import Explain
from mrm.v1 import ledger_pb2, registry_pb2

DECISION = "01900000-0000-7000-8000-000000000001"
ARCHIVED = {"onnx_model": "a" * 64, "input_schema": "b" * 64, "background_sample": "c" * 64}
HASHES = {
    "onnx_sha256": "a" * 64,
    "input_schema_sha256": "b" * 64,
    "background_sha256": "c" * 64,
}


class FakeEvidence:
    """The ledger and registry as the Explain service reads them, in memory."""

    def __init__(self, explanations: list[dict[str, Any]], served: str = "a" * 64) -> None:
        self.explanations = explanations
        self.served = served

    def prediction(self, record_id: str) -> Record:
        body = {"onnx_sha256": self.served, "request": {}, "response": {}}
        return Record(
            record_id=record_id,
            kind=ledger_pb2.RECORD_KIND_PREDICTION,
            model_name="credit-risk",
            model_version="1.2.4",
            body_json=json.dumps(body),
        )

    def recent(self, limit: int, **_: Any) -> list[Record]:
        """Newest first, as the ledger answers."""
        return [
            Record(record_id=f"explanation-{i}", body_json=json.dumps(body))
            for i, body in reversed(list(enumerate(self.explanations)))
        ][:limit]

    def version(self, model_name: str, version: str) -> registry_pb2.ModelVersion:
        roles = {
            "onnx_model": registry_pb2.ARTIFACT_ROLE_ONNX_MODEL,
            "input_schema": registry_pb2.ARTIFACT_ROLE_INPUT_SCHEMA,
            "background_sample": registry_pb2.ARTIFACT_ROLE_BACKGROUND_SAMPLE,
        }
        return registry_pb2.ModelVersion(
            model_name=model_name,
            version=version,
            artifacts=[
                registry_pb2.ArtifactRef(role=roles[k], sha256=v) for k, v in ARCHIVED.items()
            ],
        )

    def archived_hashes(self, version: registry_pb2.ModelVersion) -> dict[str, str]:
        return Evidence.archived_hashes(self, version)  # type: ignore[arg-type]


def explanation(row: int = 0, changed: dict[str, str] | None = None) -> dict[str, Any]:
    return {"prediction_record_id": DECISION, "row": row, "artifacts": HASHES | (changed or {})}


def found(evidence: FakeEvidence, row: int = 0) -> str | None:
    service = Explain(evidence, decisions=None)  # type: ignore[arg-type]
    got = service.recorded_explanation(DECISION, row)
    return None if got is None else got[0].record_id


def test_the_latest_explanation_of_the_row_is_reused() -> None:
    evidence = FakeEvidence([explanation(), explanation(row=1), explanation()])
    assert found(evidence) == "explanation-2"
    assert found(evidence, row=1) == "explanation-1"
    assert found(evidence, row=2) is None  # never explained: explain it


def test_another_decisions_explanation_is_not_reused() -> None:
    other = explanation() | {"prediction_record_id": "01900000-0000-7000-8000-000000000002"}
    assert found(FakeEvidence([other])) is None


@pytest.mark.parametrize("role", sorted(HASHES))
def test_an_explanation_of_other_artifacts_is_not_reused(role: str) -> None:
    # Only the latest counts: an older one of the archived bytes does not stand in.
    evidence = FakeEvidence([explanation(), explanation(changed={role: "f" * 64})])
    assert found(evidence) is None


def test_a_decision_served_by_another_model_is_explained_anew() -> None:
    # Explaining anew is what reports it (POSSIBLE TAMPERING): reuse must not hide it.
    assert found(FakeEvidence([explanation()], served="e" * 64)) is None
