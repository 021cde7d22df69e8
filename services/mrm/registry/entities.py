"""The registry's domain types."""

from __future__ import annotations

from dataclasses import dataclass, field

STAGES = ("NONE", "STAGING", "PRODUCTION", "ARCHIVED")
ROLES = ("ONNX_MODEL", "BACKGROUND_SAMPLE", "INPUT_SCHEMA", "EVALUATION", "REFERENCE_PROFILE")


@dataclass(frozen=True)
class ModelInfo:
    name: str
    description: str
    created_at_us: int
    production_version: str = ""
    staging_versions: tuple[str, ...] = ()


@dataclass(frozen=True)
class ArtifactInfo:
    role: str
    sha256: str
    size: int
    media_type: str


@dataclass(frozen=True)
class VersionInfo:
    model_name: str
    version: str
    artifacts: tuple[ArtifactInfo, ...]
    stage: str
    sample_rate: float
    facts_json: str
    created_by: str
    created_at_us: int
    ingested_record_id: str
    strict: bool = False
    identity_json: str = ""
    """The verified identity of `created_by` (mrm.core.auth.identity), as JSON."""

    def same_registration(self, other: NewVersion) -> bool:
        """Whether a replayed registration carries what was registered first."""
        mine = {(a.role, a.sha256) for a in self.artifacts}
        theirs = {(a.role, a.sha256) for a in other.artifacts}
        return mine == theirs and (self.sample_rate, self.strict) == (
            other.sample_rate,
            other.strict,
        )


@dataclass(frozen=True)
class NewVersion:
    model_name: str
    version: str
    semver: tuple[int, int, int, str]
    artifacts: tuple[ArtifactInfo, ...]
    sample_rate: float
    facts_json: str
    request_id: str
    linked: tuple[LinkedRecord, ...] = ()
    strict: bool = False


@dataclass(frozen=True)
class LinkedRecord:
    """A fact recorded with a version (lineage, metrics, SHAP baseline)."""

    record_id: str
    kind: str
    body_json: str


LINKED_KINDS = (
    "DATA_LINEAGE",
    "PERFORMANCE_SNAPSHOT",
    "FAIRNESS_SNAPSHOT",
    "EXPLAINABILITY_BASELINE",
)


@dataclass(frozen=True)
class StageEvent:
    model_name: str
    version: str
    stage: str
    reason: str
    actor: str
    record_id: str
    created_at_us: int
    identity_json: str = ""


@dataclass(frozen=True)
class Promotion:
    version: VersionInfo
    demoted_version: str = ""
    events: list[StageEvent] = field(default_factory=list)
