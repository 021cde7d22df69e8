"""Stamping decisions for the audit trail: record ids, sampling, subject references.

The stamp (record id, sampling decision) is made on the inference path and is
cheap. The PREDICTION record itself (the subject's keyed hash, the canonical
JSON of the exact request and response) is built later, in the shipper's
thread: the request path hands over a `PendingPrediction` holding the arrays,
which nobody writes to once the response is built.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mrm.client.ids import new_record_id
from mrm.client.ledger import new_record
from mrm.core.keyfile import read_or_create
from mrm.v1 import ledger_pb2

_RANDOM_BITS = (1 << 62) - 1


def load_or_create_subject_key(path: Path) -> bytes:
    """The server secret subject ids are hashed with; created once with mode 0600."""
    key, _ = read_or_create(
        path, "subject key file", lambda: secrets.token_bytes(32).hex(), _subject_key
    )
    return key


def _subject_key(text: str) -> bytes:
    key = bytes.fromhex(text)
    if len(key) < 16:
        raise ValueError(f"a subject key needs at least 16 bytes, not {len(key)}")
    return key


class Stamper:
    """Decides, per request, the record id, whether it is sampled, and the subject ref."""

    def __init__(self, subject_key: bytes) -> None:
        self._key = subject_key

    def subject_ref(self, subject_id: str) -> str:
        """A keyed hash: equal subjects give equal refs; the raw id is never stored."""
        if not subject_id:
            return ""
        digest = hmac.new(self._key, subject_id.encode(), hashlib.sha256).hexdigest()
        return "hmac-sha256:" + digest

    @staticmethod
    def new_record_id() -> str:
        return new_record_id()

    @staticmethod
    def sampled(record_id: str, rate: float) -> bool:
        """Deterministic from the record id's random bits, so a replay decides the same."""
        if rate >= 1.0:
            return True
        if rate <= 0.0:
            return False
        return (uuid.UUID(record_id).int & _RANDOM_BITS) / (1 << 62) < rate


def _plain(array: np.ndarray[Any, Any]) -> Any:
    if array.dtype == object:
        return [v.decode() if isinstance(v, bytes) else v for v in array.reshape(-1).tolist()]
    return array.tolist()


def prediction_record(
    *,
    record_id: str,
    model_name: str,
    model_version: str,
    onnx_sha256: str,
    subject: str,
    trace_id: str,
    span_id: str,
    inputs: Mapping[str, np.ndarray[Any, Any]],
    outputs: Mapping[str, np.ndarray[Any, Any]],
    request_id: str,
) -> ledger_pb2.Record:
    """The PREDICTION record: the exact request and response, and where it was served."""
    body = {
        "request": {"id": request_id, "inputs": {k: _plain(v) for k, v in inputs.items()}},
        "response": {k: _plain(v) for k, v in outputs.items()},
        "onnx_sha256": onnx_sha256,
    }
    return new_record(
        "PREDICTION",
        body,
        record_id=record_id,
        model_name=model_name,
        model_version=model_version,
        subject=subject,
        trace_id=trace_id,
        span_id=span_id,
    )


@dataclass(frozen=True, slots=True)
class PendingPrediction:
    """A sampled decision whose record is built off the request path (`record()`)."""

    stamper: Stamper
    record_id: str
    model_name: str
    model_version: str
    onnx_sha256: str
    subject_id: str  # raw: hashed in record(), never stored
    trace_id: str
    span_id: str
    inputs: Mapping[str, np.ndarray[Any, Any]]
    outputs: Mapping[str, np.ndarray[Any, Any]]
    request_id: str

    def record(self) -> ledger_pb2.Record:
        return prediction_record(
            record_id=self.record_id,
            model_name=self.model_name,
            model_version=self.model_version,
            onnx_sha256=self.onnx_sha256,
            subject=self.stamper.subject_ref(self.subject_id),
            trace_id=self.trace_id,
            span_id=self.span_id,
            inputs=self.inputs,
            outputs=self.outputs,
            request_id=self.request_id,
        )
