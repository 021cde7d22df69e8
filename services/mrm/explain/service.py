"""The Explain service's domain core: baselines, explanations, decisions.

Steps of an explanation (issue 5): fetch the PREDICTION record; load the exact
archived ONNX model, input schema and background sample, each checked by
sha256; re-run the model on the stored input and compare with the logged
output; compute the decision's SHAP values and check that they add up; record
an EXPLANATION leaf and return it. Services never unpickle: everything is
computed from the ONNX model.
"""

from __future__ import annotations

import json
import logging
import math
import threading
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from importlib.metadata import version as package_version
from typing import Any

from mrm.client.ledger import Record, new_record
from mrm.core.errors import FailedPrecondition, InvalidArgument
from mrm.explain.decisions import Decisions
from mrm.explain.engine import ExplainError, Explanation, ModelExplainer
from mrm.explain.evidence import Artifacts, Evidence
from mrm.explain.records import baseline_body, explanation_body
from mrm.explain.reproduce import compare
from mrm.explain.validate import DecisionQuery
from mrm.explain.wording import Wording
from mrm.v1 import ledger_pb2

log = logging.getLogger(__name__)
_SCAN = 200  # EXPLANATION records looked at to find a decision's latest one


def class_probability(exp: Explanation, rerun: Mapping[str, Any], row: int) -> float | None:
    """The explained class's probability, when it is known exactly (see the proto)."""
    if exp.class_label is None:
        return None
    if exp.output_space == "probability":
        return float(exp.output_value)
    probabilities = rerun.get("probabilities")
    if exp.output_space != "margin" or not isinstance(probabilities, list):
        return None
    if row >= len(probabilities) or len(probabilities[row]) != 2:
        return None
    logistic = 1.0 / (1.0 + math.exp(-exp.output_value))
    # Only when the re-run's own probability is the margin's logistic (binary
    # GBT and logistic regression); never a guess for other link functions.
    for value in probabilities[row]:
        if abs(float(value) - logistic) <= 1e-5:
            return float(value)
    return None


def _with_leaf(record: Record, result: ledger_pb2.AppendResult) -> Record:
    stored = Record()
    stored.CopyFrom(record)
    stored.leaf_index = result.leaf_index
    stored.recorded_at.CopyFrom(result.recorded_at)
    stored.leaf_hash = result.leaf_hash
    return stored


class Explain:
    """Explains recorded decisions from archived ONNX models; records what it gives out."""

    def __init__(self, evidence: Evidence, decisions: Decisions, *, cache_size: int = 8) -> None:
        self.evidence = evidence
        self.decisions = decisions
        self._cache: OrderedDict[tuple[str, str, str], ModelExplainer] = OrderedDict()
        self._cache_size = cache_size
        self._lock = threading.Lock()
        self.shap_version = package_version("shap")

    def _explainer(self, artifacts: Artifacts) -> ModelExplainer:
        """Built once per exact set of artifact bytes (which were just hash-checked)."""
        with self._lock:
            found = self._cache.get(artifacts.key)
            if found is not None:
                self._cache.move_to_end(artifacts.key)
                return found
        try:
            built = ModelExplainer.from_onnx(
                artifacts.onnx, artifacts.schema_json, artifacts.background
            )
        except ExplainError as e:
            raise FailedPrecondition(f"cannot explain this model: {e}") from None
        with self._lock:
            self._cache[artifacts.key] = built
            while len(self._cache) > self._cache_size:
                self._cache.popitem(last=False)
        return built

    def compute_baseline(self, model_name: str, version: str) -> tuple[Record, bool]:
        """The version's EXPLAINABILITY_BASELINE record, and whether it existed already."""
        mv = self.evidence.version(model_name, version)
        existing = self.evidence.latest(
            kind="EXPLAINABILITY_BASELINE", model_name=model_name, model_version=version
        )
        if existing is not None:
            return existing, True
        artifacts = self.evidence.artifacts(mv)
        explainer = self._explainer(artifacts)
        try:
            base = explainer.baseline(class_label=Wording.from_facts(mv.facts_json).positive_label)
        except ExplainError as e:
            raise FailedPrecondition(f"cannot compute the baseline: {e}") from None
        record = new_record(
            "EXPLAINABILITY_BASELINE",
            baseline_body(base, artifacts.hashes()),
            model_name=model_name,
            model_version=version,
        )
        return _with_leaf(record, self.evidence.append(record)), False

    def explain_record(self, record_id: str, row: int = 0) -> tuple[Record, Record]:
        """Steps 1 to 5; returns the appended EXPLANATION record and the PREDICTION."""
        prediction = self.evidence.prediction(record_id)
        try:
            body = json.loads(prediction.body_json)
            inputs, logged = body["request"]["inputs"], body["response"]
        except (ValueError, KeyError, TypeError):
            raise FailedPrecondition(
                f"PREDICTION {record_id} has no request inputs and response to re-run"
            ) from None
        mv = self.evidence.version(prediction.model_name, prediction.model_version)
        artifacts = self.evidence.artifacts(mv, str(body.get("onnx_sha256", "")))
        explainer = self._explainer(artifacts)
        wording = Wording.from_facts(mv.facts_json)
        try:
            rows = explainer.rows_from_request(inputs)
            if not 0 <= row < len(rows):
                raise InvalidArgument(
                    "row", f"{row} is out of range: the request carried {len(rows)} row(s)"
                )
            rerun = explainer.predict(inputs)
            reproduction = compare(logged, rerun, artifacts.onnx_sha256)
            exp = explainer.explain(rows[row], class_label=wording.positive_label)
        except ExplainError as e:
            raise FailedPrecondition(f"cannot explain {record_id}: {e}") from None
        if not reproduction.matches:
            log.error(
                "REPRODUCIBILITY FAILURE: %s %s does not reproduce decision %s: %s",
                prediction.model_name,
                prediction.model_version,
                record_id,
                reproduction.detail,
            )
        record = new_record(
            "EXPLANATION",
            explanation_body(
                exp,
                prediction=prediction,
                row=row,
                decision=wording.decision(exp.predicted_label, exp.output_value),
                output_label=wording.output_label(exp.output_space, exp.output_label),
                reproduction=reproduction,
                artifacts=artifacts.hashes(),
                shap_version=self.shap_version,
                probability=class_probability(exp, rerun, row),
                probability_label=wording.probability_label(exp.class_label),
            ),
            model_name=prediction.model_name,
            model_version=prediction.model_version,
            subject=prediction.subject,
            trace_id=prediction.trace_id,
        )
        return _with_leaf(record, self.evidence.append(record)), prediction

    def recorded_explanation(self, record_id: str, row: int = 0) -> tuple[Record, Record] | None:
        """The row's most recent EXPLANATION and the PREDICTION, if it still stands.

        The record is in the ledger, so its bytes are what was given out then
        (a client proves it by inclusion). It stands for the decision when it
        names the decision and row, and was computed from the artifacts the
        registry archives for the version now, the decision's own ONNX model
        among them: registered artifacts never change, so an explanation of
        those bytes is the explanation they give. None otherwise, and the
        caller explains anew, which re-checks every byte and reports tampering.
        """
        prediction = self.evidence.prediction(record_id)
        found = self._latest_explanation(prediction, row)
        if found is None:
            return None
        mv = self.evidence.version(prediction.model_name, prediction.model_version)
        archived = self.evidence.archived_hashes(mv)
        try:
            served = json.loads(prediction.body_json).get("onnx_sha256")
        except (ValueError, AttributeError):
            return None
        recorded = json.loads(found.body_json).get("artifacts")
        if recorded != archived or (served and served != archived.get("onnx_sha256")):
            return None
        return found, prediction

    def explanation(self, record_id: str) -> tuple[Record, Record]:
        """An EXPLANATION and its PREDICTION, from either record's id.

        For a PREDICTION, its most recent explanation; when it has none, it is
        explained now (which records one).
        """
        record = self.evidence.record(record_id)
        if record.kind == ledger_pb2.RECORD_KIND_EXPLANATION:
            body = json.loads(record.body_json)
            return record, self.evidence.record(body["prediction_record_id"])
        if record.kind != ledger_pb2.RECORD_KIND_PREDICTION:
            self.evidence.prediction(record_id)  # raises INVALID_ARGUMENT, naming the kind
        found = self._latest_explanation(record)
        return (found, record) if found is not None else self.explain_record(record_id)

    def _latest_explanation(self, prediction: Record, row: int | None = None) -> Record | None:
        """The decision's (`row`'s, when given) most recent EXPLANATION."""
        recent = self.evidence.recent(
            _SCAN,
            kind="EXPLANATION",
            model_name=prediction.model_name,
            model_version=prediction.model_version,
            subject=prediction.subject,
            trace_id=prediction.trace_id,
        )
        for record in recent:
            body = json.loads(record.body_json)
            if body.get("prediction_record_id") != prediction.record_id:
                continue
            if row is None or body.get("row", 0) == row:
                return record
        return None

    def list_decisions(self, q: DecisionQuery) -> tuple[Sequence[Record], str]:
        return self.decisions.list(q)
