"""The self-contained HTML report of a recorded explanation.

Everything shown comes from the ledger and the registry: the EXPLANATION and
PREDICTION records, the version's deploy facts (MODEL_INGESTED, DEPLOYMENT),
its metrics (PERFORMANCE_SNAPSHOT), its global baseline
(EXPLAINABILITY_BASELINE) and the inclusion proofs with their checkpoint. The
page has no external assets (inline CSS and SVG) and every value is escaped by
Jinja2's autoescape.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jinja2

from mrm.client.explain import feature_value, format_shap, format_value, sentence
from mrm.client.identity import identity_json
from mrm.client.ledger import InclusionProof, Record
from mrm.client.reasons import ReasonWording, is_adverse, principal_reasons
from mrm.client.registry import stage_name
from mrm.explain.drift import DriftReader
from mrm.explain.records import explanation_pb
from mrm.explain.service import Explain
from mrm.explain.waterfall import waterfall
from mrm.tlog.leaf import format_timestamp, kind_name

_TEMPLATES = Path(__file__).parent / "templates"
_FACT_KINDS = ("MODEL_INGESTED", "DEPLOYMENT", "PERFORMANCE_SNAPSHOT", "EXPLAINABILITY_BASELINE")
_FACTS_SHOWN = 20


def _when(record: Record) -> str:
    ts = record.recorded_at
    return format_timestamp(ts.seconds * 1_000_000 + ts.nanos // 1000)


def _proof(proof: InclusionProof) -> dict[str, Any]:
    return {
        "record_id": proof.record.record_id,
        "kind": kind_name(proof.record.kind),
        "leaf_index": proof.leaf_index,
        "tree_size": proof.tree_size,
        "leaf_hash": proof.leaf_hash.hex(),
        "path": [h.hex() for h in proof.inclusion_path],
        "root_hash": proof.root_hash.hex(),
    }


def _numbers(body: dict[str, Any]) -> list[tuple[str, str]]:
    return [
        (k, format_value(v))
        for k, v in sorted(body.items())
        if isinstance(v, int | float) and not isinstance(v, bool)
    ]


class ReportRenderer:
    def __init__(self, explain: Explain, trace_url_template: str) -> None:
        self.explain = explain
        self.trace_url_template = trace_url_template
        self.env = jinja2.Environment(
            loader=jinja2.FileSystemLoader(_TEMPLATES),
            autoescape=True,
            undefined=jinja2.StrictUndefined,
        )
        self.env.filters["value"] = format_value
        self.env.filters["shap"] = format_shap
        self.drift = DriftReader(explain.evidence)

    def render(self, record_id: str) -> tuple[str, str]:
        """The report's HTML and the EXPLANATION record it shows."""
        record, prediction = self.explain.explanation(record_id)
        return self.env.get_template("report.html").render(self.context(record, prediction)), (
            record.record_id
        )

    def render_drift(self, model: str, version: str = "") -> str:
        """The drift page of a model (or of one version of it)."""
        view = self.drift.for_model(model, version)
        return self.env.get_template("drift.html").render(d=view)

    def context(self, record: Record, prediction: Record) -> dict[str, Any]:
        evidence = self.explain.evidence
        exp = explanation_pb(record, prediction)
        body = json.loads(record.body_json)
        version = evidence.version(exp.model_name, exp.model_version)
        facts = json.loads(version.facts_json or "{}")
        found = {
            kind: evidence.recent(
                _FACTS_SHOWN, kind=kind, model_name=exp.model_name, model_version=exp.model_version
            )
            for kind in _FACT_KINDS
        }
        baseline = (
            json.loads(found["EXPLAINABILITY_BASELINE"][0].body_json)
            if found["EXPLAINABILITY_BASELINE"]
            else None
        )
        importance = {
            g["feature"]: g["mean_abs_shap"] for g in (baseline or {}).get("global_importance", [])
        }
        ranked = sorted(exp.contributions, key=lambda c: abs(c.shap), reverse=True)
        global_rank = {
            f: i + 1 for i, f in enumerate(sorted(importance, key=lambda f: -importance[f]))
        }
        # Both proofs against the one signed checkpoint the report shows.
        latest = evidence.inclusion(record.record_id)
        proofs = [evidence.inclusion(prediction.record_id, latest.tree_size), latest]
        checkpoint = latest.checkpoint
        perf = found["PERFORMANCE_SNAPSHOT"]
        wording = ReasonWording.from_facts(version.facts_json)
        return {
            "exp": exp,
            "sentence": sentence(exp),
            "recorded_at": _when(record),
            "decided_at": _when(prediction),
            "adverse": is_adverse(exp, wording),
            "reasons": principal_reasons(exp, wording),
            "inputs": [(c.feature, feature_value(c), c.shap) for c in exp.contributions],
            "chart": waterfall(
                [(c.feature, c.shap) for c in exp.contributions], exp.base_value, exp.output_value
            ),
            "comparison": [
                {
                    "feature": c.feature,
                    "shap": c.shap,
                    "rank": i + 1,
                    "mean_abs": importance.get(c.feature),
                    "global_rank": global_rank.get(c.feature),
                    "ratio": (abs(c.shap) / importance[c.feature])
                    if importance.get(c.feature)
                    else None,
                }
                for i, c in enumerate(ranked)
            ],
            "baseline": baseline,
            "baseline_record": found["EXPLAINABILITY_BASELINE"][0]
            if found["EXPLAINABILITY_BASELINE"]
            else None,
            "version": version,
            "stage": stage_name(version.stage),
            "facts": facts,
            "registered_by": identity_json(version.created_by_identity),
            "deploy_records": [
                (kind_name(r.kind), r.record_id, _when(r), r.actor, json.loads(r.body_json))
                for kind in ("MODEL_INGESTED", "DEPLOYMENT")
                for r in found[kind]
            ],
            "metrics": _numbers(json.loads(perf[0].body_json)) if perf else [],
            "metrics_record": perf[0] if perf else None,
            "trace_url": self.trace_url_template.replace("{trace_id}", exp.trace_id)
            if exp.trace_id
            else "",
            "proofs": [_proof(p) for p in proofs],
            "checkpoint": checkpoint,
            "request_json": json.dumps(
                json.loads(prediction.body_json).get("request", {}), indent=2, sort_keys=True
            ),
            "response_json": json.dumps(
                json.loads(prediction.body_json).get("response", {}), indent=2, sort_keys=True
            ),
            "artifacts": body.get("artifacts", {}),
            "shap_version": body.get("shap_version", ""),
            "drift": self.drift.for_decision(prediction),
        }
