"""The bodies of EXPLANATION and EXPLAINABILITY_BASELINE records, and back.

The recorded body is the explanation: the report and every later answer are
rendered from it, so what legal is shown is exactly what is on the audit trail.
"""

from __future__ import annotations

import json
import math
from typing import Any

from google.protobuf.struct_pb2 import NULL_VALUE, Struct, Value
from google.protobuf.timestamp_pb2 import Timestamp

from mrm.client.ledger import Record
from mrm.explain.engine import Baseline, Explanation
from mrm.explain.reproduce import Reproduction
from mrm.v1 import explain_pb2 as pb


def plain(value: Any) -> Any:
    """A feature value as JSON can carry it (numpy scalars become Python ones)."""
    if hasattr(value, "item") and not isinstance(value, str | bytes):
        value = value.item()
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)  # JSON cannot carry it exactly; say what it was
    return value


def explanation_body(
    exp: Explanation,
    *,
    prediction: Record,
    row: int,
    decision: str,
    output_label: str,
    reproduction: Reproduction,
    artifacts: dict[str, str],
    shap_version: str,
    probability: float | None,
    probability_label: str,
) -> dict[str, Any]:
    extra: dict[str, Any] = {}
    if probability is not None:
        extra = {"probability": probability, "probability_label": probability_label}
    return extra | {
        "prediction_record_id": prediction.record_id,
        "prediction_leaf_index": prediction.leaf_index,
        "row": row,
        "decision": decision,
        "predicted_label": exp.predicted_label or "",
        "class_label": exp.class_label or "",
        "method": exp.method,
        "exact": exp.exact,
        "output_space": exp.output_space,
        "output_label": output_label,
        "base_value": float(exp.base_value),
        "output_value": float(exp.output_value),
        "contributions": [
            {"feature": c.feature, "value": plain(c.value), "shap": float(c.shap)}
            for c in exp.contributions
        ],
        "additivity_error": float(exp.additivity_error),
        "tolerance": float(exp.tolerance),
        "parameters": exp.parameters,
        "fallback_reason": exp.fallback_reason or "",
        "reproduction": reproduction.to_json(),
        "artifacts": artifacts,
        "shap_version": shap_version,
    }


def explanation_pb(record: Record, prediction: Record) -> pb.Explanation:
    """The protobuf form of a recorded EXPLANATION and the decision it explains."""
    body = json.loads(record.body_json)
    rep = body.get("reproduction", {})
    decided = Timestamp()
    decided.CopyFrom(prediction.recorded_at)
    return pb.Explanation(
        record_id=record.record_id,
        leaf_index=record.leaf_index,
        prediction_record_id=body["prediction_record_id"],
        row=int(body.get("row", 0)),
        model_name=record.model_name,
        model_version=record.model_version,
        decided_at=decided,
        decision=body.get("decision", ""),
        predicted_label=body.get("predicted_label", ""),
        class_label=body.get("class_label", ""),
        method=body.get("method", ""),
        exact=bool(body.get("exact")),
        output_space=body.get("output_space", ""),
        output_label=body.get("output_label", ""),
        base_value=float(body.get("base_value", 0.0)),
        output_value=float(body.get("output_value", 0.0)),
        contributions=[
            pb.Contribution(
                feature=c["feature"],
                value_json=json.dumps(c["value"]),
                shap=float(c["shap"]),
                value=_value(c["value"]),
            )
            for c in body.get("contributions", [])
        ],
        additivity_error=float(body.get("additivity_error", 0.0)),
        tolerance=float(body.get("tolerance", 0.0)),
        parameters_json=json.dumps(body.get("parameters", {}), sort_keys=True),
        parameters=_struct(body.get("parameters", {})),
        fallback_reason=body.get("fallback_reason", ""),
        reproduction=pb.Reproduction(
            matches=bool(rep.get("matches")),
            detail=rep.get("detail", ""),
            tolerance=float(rep.get("tolerance", 0.0)),
            onnx_sha256=rep.get("onnx_sha256", ""),
        ),
        trace_id=prediction.trace_id,
        report_path=f"/reports/{record.record_id}",
        probability=body.get("probability"),
        probability_label=body.get("probability_label", ""),
    )


def _value(value: Any) -> Value:
    """A recorded feature value (a JSON scalar) as a google.protobuf.Value."""
    out = Value()
    if isinstance(value, bool):
        out.bool_value = value
    elif isinstance(value, int | float):
        out.number_value = float(value)
    elif value is None:
        out.null_value = NULL_VALUE
    else:
        out.string_value = str(value)
    return out


def _struct(parameters: Any) -> Struct:
    out = Struct()
    if isinstance(parameters, dict):
        out.update(parameters)
    return out


def baseline_body(base: Baseline, artifacts: dict[str, str]) -> dict[str, Any]:
    """The EXPLAINABILITY_BASELINE body; importances in schema order, as the engine gives them."""
    return {
        "method": base.method,
        "exact": base.exact,
        "output_space": base.output_space,
        "class_label": base.class_label or "",
        "expected_value": float(base.expected_value),
        "global_importance": [
            {"feature": f, "mean_abs_shap": float(v)} for f, v in base.global_importance.items()
        ],
        "parameters": base.parameters,
        "background_sha256": base.background_sha256,
        "shap_version": base.shap_version,
        "fallback_reason": base.fallback_reason or "",
        "artifacts": artifacts,
    }


def baseline_pb(record: Record) -> pb.Baseline:
    body = json.loads(record.body_json)
    return pb.Baseline(
        model_name=record.model_name,
        version=record.model_version,
        method=body.get("method", ""),
        exact=bool(body.get("exact")),
        output_space=body.get("output_space", ""),
        class_label=body.get("class_label", ""),
        expected_value=float(body.get("expected_value", 0.0)),
        global_importance=[
            pb.FeatureImportance(feature=g["feature"], mean_abs_shap=float(g["mean_abs_shap"]))
            for g in body.get("global_importance", [])
        ],
        parameters_json=json.dumps(body.get("parameters", {}), sort_keys=True),
        parameters=_struct(body.get("parameters", {})),
        background_sha256=body.get("background_sha256", ""),
        shap_version=body.get("shap_version", ""),
        fallback_reason=body.get("fallback_reason", ""),
        record_id=record.record_id,
        leaf_index=record.leaf_index,
    )
