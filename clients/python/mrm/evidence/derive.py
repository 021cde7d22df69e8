"""The model card, the summaries and the manifest, as functions of the records alone.

The exporter writes these and the verifier computes them again from the
records it has checked against the signed tree; the two must agree byte for
byte. So nothing here may depend on anything but its arguments (no clock, no
server, no locale), and every figure carries the record id it comes from.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from mrm.evidence.bundle import FORMAT, MANIFEST, dump_json
from mrm.tlog.leaf import format_timestamp

# Per-decision kinds, which --since limits; every other kind is included whole.
DECISION_KINDS = ("PREDICTION", "EXPLANATION", "OUTCOME")
_TOP_FEATURES = 10


@dataclass(frozen=True)
class Scope:
    """What the bundle is about, as the exporter was asked."""

    model: str
    version: str | None
    since: str | None  # RFC 3339 in the leaf's spelling, or None for all time

    def to_json(self) -> dict[str, Any]:
        return {"model": self.model, "version": self.version, "since": self.since}


@dataclass(frozen=True)
class LogState:
    """The newest signed checkpoint every record is proven against."""

    origin: str
    tree_size: int
    root_hash: str  # lowercase hex

    def to_json(self) -> dict[str, Any]:
        return {"origin": self.origin, "tree_size": self.tree_size, "root_hash": self.root_hash}


@dataclass(frozen=True)
class Leaf:
    """One record as the log hashed it: the parsed leaf JSON and its index."""

    leaf_index: int
    data: Mapping[str, Any]

    @property
    def kind(self) -> str:
        return str(self.data["kind"])

    @property
    def body(self) -> Mapping[str, Any]:
        body = self.data["body"]
        return body if isinstance(body, dict) else {}

    def ref(self) -> dict[str, Any]:
        """Where a figure comes from."""
        return {
            "record_id": self.data["record_id"],
            "leaf_index": self.leaf_index,
            "recorded_at": self.data["recorded_at"],
            "version": self.data["model_version"],
        }


def _get(d: Mapping[str, Any], key: str, default: Any = None) -> Any:
    value = d.get(key, default)
    return default if value is None else value


def _of(leaves: Sequence[Leaf], kind: str) -> list[Leaf]:
    return [r for r in leaves if r.kind == kind]


def _version(r: Leaf) -> dict[str, Any]:
    facts = _get(r.body, "facts", {})
    facts = facts if isinstance(facts, dict) else {}
    return {
        **r.ref(),
        "registered_by": r.data["actor"],
        "identity": _get(r.body, "identity", {}),
        "artifacts": _get(r.body, "artifacts", {}),
        "model_file": _get(facts, "model_file", {}),
        "source_commit": _get(facts, "source_commit", {}),
        "deployed_by_claims": _get(facts, "deployed_by", {}),
        "training_data_id": _get(facts, "training_data_id", ""),
        "fidelity": _get(facts, "fidelity", {}),
        "sample_rate": _get(r.body, "sample_rate"),
        "strict": _get(r.body, "strict"),
        "linked_records": _get(r.body, "linked_records", {}),
    }


def _card_text(ingested: Sequence[Leaf]) -> dict[str, Any]:
    """The [card] of the newest version that has one, with its record."""
    for r in reversed(ingested):
        facts = _get(r.body, "facts", {})
        card = facts.get("card") if isinstance(facts, dict) else None
        if isinstance(card, dict) and card:
            return {**card, "source": r.ref()}
    return {}


def _baseline(r: Leaf) -> dict[str, Any]:
    importance = _get(r.body, "global_importance", [])
    top = sorted(
        (g for g in importance if isinstance(g, dict)),
        key=lambda g: -float(g.get("mean_abs_shap") or 0.0),
    )[:_TOP_FEATURES]
    return {
        **r.ref(),
        "method": _get(r.body, "method", ""),
        "expected_value": _get(r.body, "expected_value"),
        "background_sha256": _get(r.body, "background_sha256", ""),
        "top_features": top,
    }


def _deployment(r: Leaf) -> dict[str, Any]:
    b = r.body
    return {
        **r.ref(),
        "actor": r.data["actor"],
        "action": _get(b, "action", ""),
        "stage": _get(b, "stage", ""),
        "reason": _get(b, "reason", ""),
        "reasons": _get(b, "reasons", []),
        "demoted_version": _get(b, "demoted_version", ""),
        "identity": _get(b, "identity", {}),
    }


def model_card(scope: Scope, log: LogState, leaves: Sequence[Leaf]) -> dict[str, Any]:
    """Purpose, owner, use and limits (from mrm.toml's [card], as recorded at deploy), with
    the versions, data lineage, metrics, explainability, fairness and deploy facts."""
    ingested = _of(leaves, "MODEL_INGESTED")
    return {
        "format": "mrm.model-card.v1",
        "scope": scope.to_json(),
        "log": log.to_json(),
        "card": _card_text(ingested),
        "versions": [_version(r) for r in ingested],
        "data_lineage": [{**r.ref(), **r.body} for r in _of(leaves, "DATA_LINEAGE")],
        "performance": [
            {**r.ref(), "metrics": dict(r.body)} for r in _of(leaves, "PERFORMANCE_SNAPSHOT")
        ],
        "explainability": [_baseline(r) for r in _of(leaves, "EXPLAINABILITY_BASELINE")],
        "fairness": [
            {**r.ref(), "snapshot": dict(r.body)} for r in _of(leaves, "FAIRNESS_SNAPSHOT")
        ],
        "deployments": [_deployment(r) for r in _of(leaves, "DEPLOYMENT")],
    }


def _drift(r: Leaf) -> dict[str, Any]:
    window = _get(r.body, "window", {})
    report = _get(r.body, "report", {})
    report = report if isinstance(report, dict) else {}
    features = [f for f in _get(report, "features", []) if isinstance(f, dict)]
    worst = max(
        (f for f in features if isinstance(f.get("psi"), int | float)),
        key=lambda f: float(f["psi"]),
        default=None,
    )
    breaches = _get(report, "breaches", [])
    window = window if isinstance(window, dict) else {}
    return {
        **r.ref(),
        "rows": _get(window, "rows"),
        "window_start": _when(window.get("first_recorded_at_us")),
        "window_end": _when(window.get("last_recorded_at_us")),
        "breaches": len(breaches) if isinstance(breaches, list) else 0,
        "worst_feature": None
        if worst is None
        else {"name": worst.get("name"), "psi": worst["psi"]},
        "live_metrics": _get(_get(r.body, "metrics", {}), "live", {}),
    }


_FAIRNESS_FIGURES = (
    "demographic_parity_ratio",
    "demographic_parity_difference",
    "equalized_odds_difference",
)
_GROUP_FIGURES = ("count", "selection_rate", "accuracy", "tpr", "fpr", "small")


def _fairness(r: Leaf) -> dict[str, Any]:
    """A FAIRNESS_SNAPSHOT's headline figures per sensitive attribute, with its groups."""
    attributes = _get(r.body, "attributes", {})
    out = []
    for name, a in sorted(attributes.items() if isinstance(attributes, dict) else []):
        if not isinstance(a, dict):
            continue
        ci = _get(a, "ci", {})
        groups = _get(a, "groups", {})
        out.append(
            {
                "attribute": name,
                **{k: a.get(k) for k in _FAIRNESS_FIGURES},
                "demographic_parity_ratio_ci": ci.get("demographic_parity_ratio")
                if isinstance(ci, dict)
                else None,
                "groups": {
                    g: {k: v.get(k) for k in _GROUP_FIGURES}
                    for g, v in sorted(groups.items() if isinstance(groups, dict) else [])
                    if isinstance(v, dict)
                },
            }
        )
    return {
        **r.ref(),
        "passed": r.body.get("passed"),
        "favourable_label": r.body.get("favourable_label"),
        "failures": _get(r.body, "failures", []),
        "attributes": out,
    }


def _when(micros: object) -> str:
    return format_timestamp(micros) if type(micros) is int and micros >= 0 else ""


def _alerts(leaves: Sequence[Leaf]) -> list[dict[str, Any]]:
    records = _of(leaves, "ALERT")
    acks: dict[str, Leaf] = {}
    for r in records:
        if r.body.get("state") == "acknowledged":
            acks.setdefault(str(r.body.get("alert_record_id", "")), r)
    out = []
    for r in records:
        if r.body.get("state") != "firing":
            continue
        ack = acks.get(str(r.data["record_id"]))
        out.append(
            {
                **r.ref(),
                "metric": _get(r.body, "metric", ""),
                "summary": _get(r.body, "summary", ""),
                "drift_record_id": _get(r.body, "drift_record_id", ""),
                "acknowledgement": None
                if ack is None
                else {
                    **ack.ref(),
                    "actor": ack.data["actor"],
                    "by": _get(ack.body, "by", ""),
                    "note": _get(ack.body, "note", ""),
                },
            }
        )
    return out


def summary(scope: Scope, log: LogState, leaves: Sequence[Leaf]) -> dict[str, Any]:
    """Fairness and drift summaries, alerts and their acknowledgements, decision counts."""
    counts = Counter(r.kind for r in leaves)
    drift = [_drift(r) for r in _of(leaves, "DRIFT")]
    fairness = [_fairness(r) for r in _of(leaves, "FAIRNESS_SNAPSHOT")]
    return {
        "format": "mrm.evidence-summary.v1",
        "scope": scope.to_json(),
        "log": log.to_json(),
        "records": {kind: counts[kind] for kind in sorted(counts)},
        "decisions": {
            "since": scope.since,
            **{kind.lower(): counts[kind] for kind in DECISION_KINDS},
        },
        "drift": {
            "windows": len(drift),
            "windows_with_breaches": sum(1 for d in drift if d["breaches"]),
            "records": drift,
        },
        "alerts": _alerts(leaves),
        "fairness": fairness,
        "access": [
            {**r.ref(), "actor": r.data["actor"], "body": dict(r.body)}
            for r in _of(leaves, "ACCESS")
        ],
    }


def missing_references(leaves: Sequence[Leaf]) -> list[tuple[Leaf, str]]:
    """Records a record names that the bundle does not hold: an exporter that left out
    an alert, its drift window or a version's linked records is caught here."""
    present = {str(r.data["record_id"]) for r in leaves}
    out: list[tuple[Leaf, str]] = []
    for r in leaves:
        named: list[str] = []
        if r.kind == "MODEL_INGESTED":
            linked = _get(r.body, "linked_records", {})
            named = [str(v) for v in linked.values()] if isinstance(linked, dict) else []
        elif r.kind == "ALERT" and r.body.get("state") == "acknowledged":
            named = [str(r.body.get("alert_record_id", ""))]
        elif r.kind == "ALERT" and r.body.get("drift_record_id"):
            named = [str(r.body["drift_record_id"])]
        out.extend((r, rid) for rid in named if rid and rid not in present)
    return out


def file_entry(data: bytes) -> dict[str, Any]:
    return {"sha256": hashlib.sha256(data).hexdigest(), "size": len(data)}


def manifest(
    scope: Scope,
    log: LogState,
    newest_checkpoint: str,
    renderer: Mapping[str, str],
    files: Mapping[str, bytes],
) -> bytes:
    """manifest.json: what the bundle is about and every other file's sha256 and size."""
    return dump_json(
        {
            "format": FORMAT,
            "scope": scope.to_json(),
            "log": log.to_json(),
            "newest_checkpoint": newest_checkpoint,
            "renderer": dict(renderer),
            "files": {name: file_entry(files[name]) for name in sorted(files) if name != MANIFEST},
        }
    )
