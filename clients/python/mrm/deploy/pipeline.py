"""The steps of `mrmctl deploy`: check everything locally, then publish and record.

`prepare` runs in the user's CI on the original estimator (load safely, convert,
check fidelity, measure, describe lineage) and talks to no service, so
`--dry-run` stops after it. `publish` uploads the artifacts, registers the
version with its lineage and metrics records in one ledger batch, and promotes
it. A deploy that a gate refuses is itself recorded, as a DEPLOYMENT record
whose action is "refused".
"""

from __future__ import annotations

import io
import json
import os
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from mrm.client.explain import ExplainClient
from mrm.client.ledger import new_record
from mrm.client.registry import RegistryClient
from mrm.deploy.config import GATEABLE, LOWER_IS_BETTER, DeployConfig, check_reason_features
from mrm.deploy.convert import Converted, convert
from mrm.deploy.errors import GateFailed
from mrm.deploy.evaldata import load_eval
from mrm.deploy.fairness import fairness_snapshot, fairness_summary, summary_line
from mrm.deploy.fidelity import FidelityReport, check_fidelity
from mrm.deploy.loading import LoadedModel, load_model
from mrm.deploy.metrics import snapshot
from mrm.deploy.provenance import (
    Actor,
    Lineage,
    SourceCommit,
    actor,
    source_commit,
    training_data_id,
)
from mrm.deploy.reference import reference_profile
from mrm.deploy.schema import infer_schema
from mrm.kernel.ids import new_record_id
from mrm.kernel.schema import InputSchema
from mrm.v1 import ledger_pb2, registry_pb2

Progress = Callable[[str, str], None]
"""(step, detail) once each step is done."""


@dataclass
class Prepared:
    loaded: LoadedModel
    schema: InputSchema
    converted: Converted
    fidelity: FidelityReport
    metrics: dict[str, Any]
    lineage: Lineage
    commit: SourceCommit
    who: Actor
    background: bytes
    profile: bytes
    timings: dict[str, float] = field(default_factory=dict)
    fairness: dict[str, Any] | None = None
    """The FAIRNESS_SNAPSHOT body, with [fairness] in mrm.toml."""


@contextmanager
def _step(timings: dict[str, float], name: str) -> Iterator[None]:
    start = time.perf_counter()
    yield
    timings[name] = round(time.perf_counter() - start, 4)


def prepare(
    cfg: DeployConfig, progress: Progress, env: Mapping[str, str] | None = None
) -> Prepared:
    env = os.environ if env is None else env
    t: dict[str, float] = {}
    with _step(t, "load"):
        loaded = load_model(cfg.model_path, extra_allowed=cfg.allowed_globals + cfg.trusted_types)
    progress("load", f"{type(loaded.estimator).__name__} from {cfg.model_path} ({loaded.format})")
    with _step(t, "eval_data"):
        sensitive = cfg.fairness.sensitive if cfg.fairness else ()
        data = load_eval(cfg.eval_data, cfg.target, loaded.estimator, sensitive)
        X, y, eval_sha = data.X, data.y, data.sha256
    progress("eval data", f"{len(y)} rows from {cfg.eval_data}")
    with _step(t, "convert"):
        schema = infer_schema(loaded.estimator, X)
        check_reason_features(cfg, schema.names)
        converted = convert(loaded.estimator, schema)
    progress("convert", f"ONNX {converted.sha256[:12]}, {len(schema.features)} features")
    with _step(t, "fidelity"):
        fidelity = check_fidelity(loaded.estimator, converted, X, atol=cfg.fidelity_tolerance)
    progress("fidelity", "passed" if fidelity.passed else "FAILED")
    with _step(t, "metrics"):
        metrics = snapshot(loaded.estimator, X, y, eval_sha256=eval_sha)
    progress("metrics", ", ".join(f"{k} {v:.4f}" for k, v in gate_values(metrics).items()))
    fairness = None
    if cfg.fairness is not None:
        with _step(t, "fairness"):
            fairness = _fairness(cfg, loaded.estimator, X, y, data.sensitive, metrics)
        line = summary_line(fairness)
        progress("fairness", line if fairness["passed"] else f"FAILED {line}")
    with _step(t, "lineage"):
        lineage = training_data_id(cfg.dataset_id, cfg.training_data)
        commit = source_commit(cfg.source_commit, env, Path.cwd())
        who = actor(env, Path.cwd())
    progress("lineage", f"{lineage.training_data_id} ({lineage.method}), commit {commit.sha[:12]}")
    with _step(t, "background"):
        background = _background_sample(X, cfg.background_rows)
    with _step(t, "reference_profile"):
        fair = None
        if cfg.fairness is not None and fairness is not None:
            fair = (fairness, cfg.fairness.min_group_size)
        profile = reference_profile(loaded.estimator, X, schema, metrics, cfg.monitor, fair)
    progress("reference profile", f"{len(schema.features)} features, {len(y)} rows")
    return Prepared(
        loaded,
        schema,
        converted,
        fidelity,
        metrics,
        lineage,
        commit,
        who,
        background,
        profile,
        t,
        fairness,
    )


def _fairness(
    cfg: DeployConfig,
    estimator: Any,
    X: Any,
    y: Any,
    sensitive: dict[str, Any],
    metrics: Mapping[str, Any],
) -> dict[str, Any]:
    """The fairness snapshot of the original estimator's decisions (as the metrics)."""
    from mrm.deploy.errors import DeployError

    assert cfg.fairness is not None
    if metrics.get("task") != "classification":
        raise DeployError(
            f"[fairness] in {cfg.config_file or 'flags'}: fairness needs a classifier's "
            "decisions; this model is a regressor"
        )
    return fairness_snapshot(
        cfg.fairness,
        y,
        estimator.predict(X),
        sensitive,
        classes=metrics["classes"],
        rows=len(y),
        eval_sha256=metrics["eval_sha256"],
    )


def _background_sample(X: Any, rows: int) -> bytes:
    """Up to `rows` evaluation rows, drawn with a fixed seed, as CSV: SHAP's background."""
    import pandas as pd  # type: ignore[import-untyped,unused-ignore]

    frame = X if isinstance(X, pd.DataFrame) else pd.DataFrame(X)
    sample = frame.sample(n=min(rows, len(frame)), random_state=0) if len(frame) else frame
    out = io.StringIO()
    sample.to_csv(out, index=False)
    return out.getvalue().encode()


def gate_values(metrics: Mapping[str, Any]) -> dict[str, float]:
    """The gateable numbers: top level, or the macro averages for multiclass."""
    flat = {
        k: v
        for k, v in metrics.items()
        if isinstance(v, int | float) and not isinstance(v, bool) and k in GATEABLE
    }
    macro = metrics.get("average", {}).get("macro", {})
    flat.update({k: v for k, v in macro.items() if isinstance(v, int | float)})
    return {k: float(v) for k, v in flat.items()}


def check_gates(
    cfg: DeployConfig, prepared: Prepared, production: Mapping[str, Any] | None
) -> list[str]:
    """Why the deploy must be refused (empty: it may go ahead)."""
    reasons = []
    if not prepared.fidelity.passed:
        first = prepared.fidelity.first_mismatches[:1]
        reasons.append(
            f"the ONNX model disagrees with the original on {prepared.fidelity.label_mismatches} "
            f"label(s) or beyond tolerance {cfg.fidelity_tolerance} (first: {first})"
        )
    if prepared.fairness is not None:
        reasons += prepared.fairness["failures"]
    values = gate_values(prepared.metrics)
    for metric, minimum in cfg.min_metrics.items():
        got = values.get(metric)
        worse = got is None or (got > minimum if metric in LOWER_IS_BETTER else got < minimum)
        if worse:
            bound = "at most" if metric in LOWER_IS_BETTER else "at least"
            reasons.append(f"{metric} is {got}, the gate wants {bound} {minimum}")
    if cfg.max_regression is not None and production:
        before = gate_values(production)
        for metric, old in before.items():
            new = values.get(metric)
            if new is None:
                continue
            drop = (new - old) if metric in LOWER_IS_BETTER else (old - new)
            if drop > cfg.max_regression:
                reasons.append(
                    f"{metric} fell from {old:.4f} (production) to {new:.4f}, more than "
                    f"max_regression {cfg.max_regression}"
                )
    return reasons


@dataclass
class Published:
    version: registry_pb2.ModelVersion
    already_registered: bool
    records: dict[str, str]
    leaf_indexes: dict[str, int]
    promoted: registry_pb2.PromoteVersionResponse | None


def production_metrics(registry: RegistryClient, name: str) -> dict[str, Any] | None:
    """The metrics recorded with the version now in production, if there is one."""
    from mrm.client.errors import NotFound

    try:
        current = registry.get_version(name)
    except NotFound:
        return None
    facts = json.loads(current.facts_json or "{}")
    metrics = facts.get("performance")
    return metrics if isinstance(metrics, dict) else None


def publish(
    cfg: DeployConfig,
    prepared: Prepared,
    registry: RegistryClient,
    progress: Progress,
    explain: ExplainClient | None = None,
) -> Published:
    from mrm.client.errors import NotFound

    try:
        registry.get_model(cfg.name)
    except NotFound:
        registry.create_model(cfg.name)
    evaluation = json.dumps(
        {"metrics": prepared.metrics, "fidelity": asdict(prepared.fidelity)}, sort_keys=True
    ).encode()
    artifacts = {
        registry_pb2.ARTIFACT_ROLE_ONNX_MODEL: (prepared.converted.onnx_bytes, "application/onnx"),
        registry_pb2.ARTIFACT_ROLE_INPUT_SCHEMA: (
            prepared.schema.to_json().encode(),
            "application/json",
        ),
        registry_pb2.ARTIFACT_ROLE_EVALUATION: (evaluation, "application/json"),
        registry_pb2.ARTIFACT_ROLE_BACKGROUND_SAMPLE: (prepared.background, "text/csv"),
        registry_pb2.ARTIFACT_ROLE_REFERENCE_PROFILE: (prepared.profile, "application/json"),
    }
    refs = []
    for role, (data, media) in artifacts.items():
        stored = registry.upload(data, media).artifact
        refs.append(registry_pb2.ArtifactRef(role=role, sha256=stored.sha256, size=stored.size))
    progress("upload", f"{len(refs)} artifacts")
    lineage_id, perf_id, ingest_id = new_record_id(), new_record_id(), new_record_id()
    facts = {
        "model_file": {"sha256": prepared.loaded.sha256, "format": prepared.loaded.format},
        "source_commit": asdict(prepared.commit),
        "deployed_by": asdict(prepared.who),
        "training_data_id": prepared.lineage.training_data_id,
        "performance": prepared.metrics,
        "fidelity": {"passed": prepared.fidelity.passed, "tolerance": cfg.fidelity_tolerance},
    }
    if cfg.explain:
        facts["explain"] = cfg.explain
    if cfg.card:
        facts["card"] = cfg.card
    linked = [
        new_record(
            "DATA_LINEAGE",
            asdict(prepared.lineage),
            record_id=lineage_id,
            model_name=cfg.name,
            model_version=cfg.version,
        ),
        new_record(
            "PERFORMANCE_SNAPSHOT",
            prepared.metrics,
            record_id=perf_id,
            model_name=cfg.name,
            model_version=cfg.version,
        ),
    ]
    fair_id = new_record_id()
    if prepared.fairness is not None:
        facts["fairness"] = fairness_summary(prepared.fairness)
        linked.append(
            new_record(
                "FAIRNESS_SNAPSHOT",
                prepared.fairness,
                record_id=fair_id,
                model_name=cfg.name,
                model_version=cfg.version,
            )
        )
    done = registry.register(
        registry_pb2.ModelVersion(
            model_name=cfg.name,
            version=cfg.version,
            artifacts=refs,
            sample_rate=cfg.sample_rate,
            strict=cfg.strict,
            facts_json=json.dumps(facts),
        ),
        linked_records=linked,
        request_id=ingest_id,
    )
    records = {"model_ingested": done.version.ingested_record_id}
    leafs = {"model_ingested": int(done.leaf_index)}
    # Where the registry says each linked record landed (on a replay: the
    # original registration's records, read back from the ledger).
    for linked_leaf in done.linked_records:
        kind = ledger_pb2.RecordKind.Name(linked_leaf.kind).removeprefix("RECORD_KIND_").lower()
        records[kind] = linked_leaf.record_id
        leafs[kind] = int(linked_leaf.leaf_index)
    progress(
        "register",
        f"{cfg.name} {cfg.version}" + (" (already registered)" if done.already_registered else ""),
    )
    if explain is not None:  # the SHAP baseline, recorded before the version serves
        baseline = explain.compute_baseline(cfg.name, cfg.version).baseline
        records["explainability_baseline"] = baseline.record_id
        leafs["explainability_baseline"] = int(baseline.leaf_index)
        progress("baseline", f"{baseline.method}, expected value {baseline.expected_value:.4g}")
    promoted = None
    if done.version.stage != registry_pb2.STAGE_PRODUCTION or cfg.stage != "production":
        promoted = registry.promote(cfg.name, cfg.version, cfg.stage, reason="mrmctl deploy")
        records["deployment"] = promoted.record_id
        progress(
            "promote",
            f"{cfg.stage}"
            + (f", {promoted.demoted_version} to staging" if promoted.demoted_version else ""),
        )
    return Published(done.version, done.already_registered, records, leafs, promoted)


def record_refusal(
    registry: RegistryClient, cfg: DeployConfig, prepared: Prepared, reasons: list[str]
) -> str:
    """Have the registry record the refused deployment (with our verified identity);
    its record id."""
    facts = {
        "onnx_sha256": prepared.converted.sha256,
        "model_file_sha256": prepared.loaded.sha256,
        "fidelity": asdict(prepared.fidelity),
        "performance": prepared.metrics,
        "source_commit": asdict(prepared.commit),
        "deployed_by": asdict(prepared.who),
    }
    if prepared.fairness is not None:
        facts["fairness"] = prepared.fairness
    return registry.record_refusal(cfg.name, cfg.version, reasons, facts).record_id


def refuse(reasons: list[str], record_id: str | None) -> GateFailed:
    where = f" (recorded as {record_id})" if record_id else ""
    return GateFailed("deploy refused" + where + ": " + "; ".join(reasons))
