"""The ledger's domain types: what is appended, what is stored, what is signed."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from mrm.tlog.leaf import leaf_bytes

RECORD_KINDS = (
    "MODEL_INGESTED",
    "DATA_LINEAGE",
    "PERFORMANCE_SNAPSHOT",
    "FAIRNESS_SNAPSHOT",
    "EXPLAINABILITY_BASELINE",
    "DEPLOYMENT",
    "PREDICTION",
    "EXPLANATION",
    "GAP",
    "ACCESS",
    "OUTCOME",
    "DRIFT",
    "ALERT",
)


@dataclass(slots=True)
class NewRecord:
    """A validated record, ready to append. `body` is canonical JSON text.

    Not frozen: these are made once per record on the append hot path, and a
    frozen dataclass's __init__ costs several times more. Nothing mutates them.
    """

    record_id: uuid.UUID
    kind: str
    model_name: str
    model_version: str
    subject: str
    trace_id: str
    span_id: str
    body: str
    record_id_text: str = ""
    """record_id as the client spelled it (canonical, validated); saves a str() per record."""


@dataclass(slots=True)
class StoredRecord:
    """A record as the ledger holds it."""

    leaf_index: int
    record_id: uuid.UUID
    kind: str
    model_name: str
    model_version: str
    subject: str
    trace_id: str
    span_id: str
    body: str
    recorded_at_us: int
    actor: str
    leaf_hash: bytes

    def leaf_bytes(self) -> bytes:
        """The canonical leaf (see mrm.tlog.leaf)."""
        return leaf_bytes(
            record_id=str(self.record_id),
            kind=self.kind,
            model_name=self.model_name,
            model_version=self.model_version,
            subject=self.subject,
            trace_id=self.trace_id,
            span_id=self.span_id,
            body_canonical=self.body,
            recorded_at_us=self.recorded_at_us,
            actor=self.actor,
        )


@dataclass(slots=True)
class Appended:
    record: StoredRecord
    duplicate: bool


@dataclass(frozen=True, slots=True)
class RecordFilter:
    kind: str = ""
    model_name: str = ""
    model_version: str = ""
    subject: str = ""
    trace_id: str = ""
    start_us: int | None = None
    end_us: int | None = None
    start_leaf: int = 0

    def fingerprint(self) -> str:
        return "|".join(
            str(v)
            for v in (
                self.kind,
                self.model_name,
                self.model_version,
                self.subject,
                self.trace_id,
                self.start_us,
                self.end_us,
                self.start_leaf,
            )
        )


@dataclass(frozen=True, slots=True)
class SignedCheckpoint:
    tree_size: int
    root_hash: bytes
    note: str
    signed_at_us: int
