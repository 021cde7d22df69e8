"""What `mrmctl deploy` does, from `mrm.toml` next to the model code and the flags.

A flag given on the command line wins over the file; the file wins over the
defaults. Every setting is checked here, before any slow step runs, and a bad
one is one line naming the setting (and the file) to fix.

    [model]
    name = "credit-risk"               # a lowercase identifier
    allowed_globals = []               # extra pickle globals to trust, "module.Name"
    trusted_types = []                 # extra skops types to trust

    [card]
    purpose = "Score consumer credit applications for default risk"  # recorded at deploy
    owner = "Credit Risk Analytics <risk@example.com>"
    intended_use = "Pre-screening; a person decides every rejection"
    limitations = ["Not validated for business loans"]  # or one string
    risk_tier = "high"                 # low, medium or high
    notes = ""                         # free text

    [data]
    eval = "data/eval.csv"             # evaluation data, with the target column
    target = "default"
    training = "data/train.csv"        # hashed for the lineage record ...
    dataset_id = ""                    # ... unless the id is given

    [deploy]
    stage = "production"               # or "staging"
    sample_rate = 1.0                  # the proxy's sampling rate, 0..1
    strict = false                     # record each decision before answering (rate 1)

    [gates]
    fidelity_tolerance = 1e-5          # ONNX vs scikit-learn, absolute
    min = { accuracy = 0.8 }           # minimum metrics
    max_regression = 0.02              # largest drop of any gated metric vs production
    min_demographic_parity_ratio = 0.8 # fairness: the four-fifths rule, per attribute
    max_equalized_odds_difference = 0.1  # fairness: largest TPR or FPR gap between groups

    [fairness]
    sensitive = ["sex", "age_band"]    # columns of the evaluation data; model inputs or not
    favourable_label = "0"             # the label that is good for the subject
    bootstrap = 1000                   # resamples for the 95% intervals (seed 0), 100..10000
    min_group_size = 30                # smaller groups are reported, flagged, not gated

    [explain]
    positive_label = "1"               # the class whose probability explanations explain
    labels = { "1" = "Rejected", "0" = "Approved" }  # each label's decision in plain words
    output_name = "probability of default"  # the explained output in plain words
    favourable_label = "0"             # default: the label in `labels` that is not positive_label
    reasons = { debt_to_income = "Debt is high relative to income" }  # adverse-action wording
    max_reasons = 4                    # principal reasons given for an adverse decision
"""

from __future__ import annotations

import math
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mrm.client.reasons import favourable_label
from mrm.deploy.errors import DeployError
from mrm.deploy.fairness import FairnessConfig
from mrm.drift.config import MonitorConfig
from mrm.kernel.names import MODEL_NAME, MODEL_NAME_HELP, SEMVER

GATEABLE = ("accuracy", "f1", "precision", "recall", "roc_auc", "r2", "mae", "rmse")
LOWER_IS_BETTER = ("mae", "rmse")


@dataclass(frozen=True)
class DeployConfig:
    model_path: Path
    version: str
    name: str
    eval_data: Path
    target: str
    dataset_id: str | None
    training_data: Path | None
    source_commit: str | None
    stage: str
    sample_rate: float
    fidelity_tolerance: float
    min_metrics: dict[str, float] = field(default_factory=dict)
    max_regression: float | None = None
    allowed_globals: tuple[str, ...] = ()
    trusted_types: tuple[str, ...] = ()
    background_rows: int = 100
    config_file: Path | None = None
    explain: dict[str, Any] = field(default_factory=dict)
    """The [explain] table, stored in the version's facts for `mrmctl why`'s wording."""
    strict: bool = False
    monitor: MonitorConfig = field(default_factory=lambda: MonitorConfig.from_table({}))
    """The [monitor] table: windows and thresholds, stored in the reference profile."""
    fairness: FairnessConfig | None = None
    """The [fairness] table and the fairness gates; None: no fairness snapshot."""
    card: dict[str, Any] = field(default_factory=dict)
    """The [card] table, stored in the version's facts (hashed into MODEL_INGESTED)."""


def find_config(explicit: Path | None, model_path: Path) -> Path | None:
    """--config, else mrm.toml in the working directory, else next to the model."""
    if explicit is not None:
        if not explicit.is_file():
            raise DeployError(f"--config {explicit}: no such file")
        return explicit
    for candidate in (Path("mrm.toml"), model_path.parent / "mrm.toml"):
        if candidate.is_file():
            return candidate
    return None


def _table(doc: dict[str, Any], name: str, where: str) -> dict[str, Any]:
    value = doc.get(name, {})
    if not isinstance(value, dict):
        raise DeployError(f"{where}: [{name}] must be a table")
    return value


def load_config(
    model_path: Path, version: str, flags: dict[str, Any], path: Path | None
) -> DeployConfig:
    """Merge flags (None = not given) over mrm.toml over defaults, and check everything."""
    doc: dict[str, Any] = {}
    where = "flags"
    if path is not None:
        where = str(path)
        try:
            doc = tomllib.loads(path.read_text())
        except (OSError, UnicodeDecodeError) as e:
            raise DeployError(f"{path}: cannot read it ({e})") from None
        except tomllib.TOMLDecodeError as e:
            raise DeployError(f"{path}: not valid TOML ({e})") from None
    model, data = _table(doc, "model", where), _table(doc, "data", where)
    deploy, gates = _table(doc, "deploy", where), _table(doc, "gates", where)

    def pick(flag: str, table: dict[str, Any], key: str, default: Any = None) -> Any:
        return flags[flag] if flags.get(flag) is not None else table.get(key, default)

    name = pick("name", model, "name") or model_path.stem.replace("_", "-").lower()
    if not isinstance(name, str) or not MODEL_NAME.fullmatch(name):
        raise DeployError(f"model name {name!r} is not valid (want {MODEL_NAME_HELP}); set --name")
    if not SEMVER.fullmatch(version) or len(version) > 64:
        raise DeployError(
            f"--version {version!r} is not semver (want MAJOR.MINOR.PATCH, e.g. 1.2.4)"
        )
    eval_data = pick("eval_data", data, "eval")
    target = pick("target", data, "target")
    if not eval_data:
        raise DeployError(f"no evaluation data: pass --eval-data CSV or set [data] eval in {where}")
    if not target:
        raise DeployError(f"no target column: pass --target COLUMN or set [data] target in {where}")
    training = pick("training_data", data, "training")
    stage = str(pick("stage", deploy, "stage", "production"))
    if stage not in ("production", "staging"):
        raise DeployError(f"stage {stage!r}: want production or staging")
    rate = _number(pick("sample_rate", deploy, "sample_rate", 1.0), "sample_rate", where)
    if not 0 <= rate <= 1:
        raise DeployError(f"sample_rate {rate} is not between 0 and 1")
    strict = pick("strict", deploy, "strict", False)
    if not isinstance(strict, bool):
        raise DeployError(f"strict = {strict!r} in {where}: want true or false")
    if strict and rate != 1:
        raise DeployError(
            f"sample_rate {rate:g} with strict mode: a strict version records every decision "
            "(set sample_rate to 1 or leave it out)"
        )
    tolerance = _number(
        pick("fidelity_tolerance", gates, "fidelity_tolerance", 1e-5), "fidelity_tolerance", where
    )
    if not tolerance > 0:
        raise DeployError(f"fidelity_tolerance {tolerance} must be positive")
    minimums = dict(gates.get("min", {}))
    minimums.update(flags.get("min_metrics") or {})
    for metric, value in minimums.items():
        if metric not in GATEABLE:
            raise DeployError(f"gate on {metric!r}: want one of {', '.join(GATEABLE)}")
        minimums[metric] = _number(value, f"min {metric}", where)
    regression = pick("max_regression", gates, "max_regression")
    base = path.parent if path is not None else Path()
    return DeployConfig(
        model_path=model_path,
        version=version,
        name=name,
        eval_data=_relative(eval_data, flags.get("eval_data"), base),
        target=str(target),
        dataset_id=pick("dataset_id", data, "dataset_id") or None,
        training_data=_relative(training, flags.get("training_data"), base) if training else None,
        source_commit=flags.get("source_commit"),
        stage=stage,
        sample_rate=rate,
        fidelity_tolerance=tolerance,
        min_metrics=minimums,
        max_regression=None if regression is None else _number(regression, "max_regression", where),
        allowed_globals=tuple(model.get("allowed_globals", ()))
        + tuple(flags.get("allow_global") or ()),
        trusted_types=tuple(model.get("trusted_types", ())) + tuple(flags.get("trust_type") or ()),
        config_file=path,
        explain=_explain(_table(doc, "explain", where), where),
        strict=strict,
        monitor=_monitor(_table(doc, "monitor", where), where),
        fairness=FairnessConfig.from_tables(_table(doc, "fairness", where), gates, where),
        card=_card(_table(doc, "card", where), where),
    )


def _monitor(table: dict[str, Any], where: str) -> MonitorConfig:
    try:
        return MonitorConfig.from_table(table)
    except ValueError as exc:
        raise DeployError(f"{exc} (in {where})") from None


_CARD_TEXT = ("purpose", "owner", "intended_use", "notes")
_RISK_TIERS = ("low", "medium", "high")


def _card(table: dict[str, Any], where: str) -> dict[str, Any]:
    """The [card] table, checked: text fields are strings, limitations one string or a
    list of them (stored as a list), risk_tier one of low, medium, high."""
    unknown = set(table) - {*_CARD_TEXT, "limitations", "risk_tier"}
    if unknown:
        raise DeployError(
            f"[card] {', '.join(sorted(unknown))} in {where}: want purpose, owner, "
            "intended_use, limitations, risk_tier or notes"
        )
    out: dict[str, Any] = {}
    for key in _CARD_TEXT:
        if key in table:
            if not isinstance(table[key], str):
                raise DeployError(f"[card] {key} = {table[key]!r} in {where}: want text")
            out[key] = table[key]
    if "limitations" in table:
        lim = table["limitations"]
        lim = [lim] if isinstance(lim, str) else lim
        if not isinstance(lim, list) or not all(isinstance(x, str) for x in lim):
            raise DeployError(f"[card] limitations in {where}: want text or a list of texts")
        out["limitations"] = lim
    if "risk_tier" in table:
        tier = table["risk_tier"]
        if tier not in _RISK_TIERS:
            raise DeployError(f"[card] risk_tier = {tier!r} in {where}: want low, medium or high")
        out["risk_tier"] = tier
    return out


def _explain(table: dict[str, Any], where: str) -> dict[str, Any]:
    """The [explain] table, checked: labels are strings, as ONNX labels are compared."""
    unknown = set(table) - set(_EXPLAIN_KEYS)
    if unknown:
        raise DeployError(
            f"[explain] {', '.join(sorted(unknown))} in {where}: want one of "
            + ", ".join(_EXPLAIN_KEYS)
        )
    out: dict[str, Any] = {}
    if "positive_label" in table:
        label = table["positive_label"]
        if isinstance(label, bool) or not isinstance(label, str | int):
            raise DeployError(f"[explain] positive_label = {label!r} in {where}: want a label")
        out["positive_label"] = str(label)
    if "labels" in table:
        labels = table["labels"]
        if not isinstance(labels, dict) or not all(isinstance(v, str) for v in labels.values()):
            raise DeployError(
                f'[explain] labels in {where}: want a table of words, e.g. {{ "1" = "Rejected" }}'
            )
        out["labels"] = {str(k): v for k, v in labels.items()}
    if "output_name" in table:
        name = table["output_name"]
        if not isinstance(name, str) or not name.strip():
            raise DeployError(f"[explain] output_name in {where}: want words, e.g. 'probability'")
        out["output_name"] = name
    out.update(_adverse(table, out, where))
    return out


_EXPLAIN_KEYS = (
    "positive_label",
    "labels",
    "output_name",
    "favourable_label",
    "reasons",
    "max_reasons",
)


def _adverse(table: dict[str, Any], checked: dict[str, Any], where: str) -> dict[str, Any]:
    """favourable_label (stored resolved, so the facts say which label was favourable),
    reasons and max_reasons; reasons' feature names are checked against the schema
    at deploy (check_reason_features)."""
    out: dict[str, Any] = {}
    if "favourable_label" in table:
        label = table["favourable_label"]
        if isinstance(label, bool) or not isinstance(label, str | int):
            raise DeployError(f"[explain] favourable_label = {label!r} in {where}: want a label")
        labels = checked.get("labels")
        if labels is not None and str(label) not in labels:
            raise DeployError(
                f"[explain] favourable_label = {str(label)!r} in {where}: not one of labels "
                f"({', '.join(map(repr, labels))})"
            )
        out["favourable_label"] = str(label)
    else:
        derived = favourable_label(checked)
        if derived is not None:
            out["favourable_label"] = derived
    if "reasons" in table:
        reasons = table["reasons"]
        if not isinstance(reasons, dict):
            raise DeployError(
                f"[explain] reasons in {where}: want a table of feature = words, e.g. "
                '{ debt_to_income = "Debt is high relative to income" }'
            )
        for feature, words in reasons.items():
            if not isinstance(words, str) or not words.strip():
                raise DeployError(f"[explain] reasons.{feature} in {where}: want words")
        out["reasons"] = dict(reasons)
    if "max_reasons" in table:
        most = table["max_reasons"]
        if isinstance(most, bool) or not isinstance(most, int) or not 1 <= most <= 10:
            raise DeployError(f"[explain] max_reasons = {most!r} in {where}: want 1 to 10")
        out["max_reasons"] = most
    return out


def check_reason_features(cfg: DeployConfig, features: list[str]) -> None:
    """Every feature worded in [explain] reasons is an input of the model."""
    for feature in cfg.explain.get("reasons", {}):
        if feature not in features:
            raise DeployError(
                f"[explain] reasons.{feature} in {cfg.config_file or 'flags'}: the model has no "
                f"input {feature!r} (its inputs: {', '.join(features)})"
            )


def _number(value: Any, name: str, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or math.isnan(value):
        raise DeployError(f"{name} = {value!r} in {where}: want a number")
    return float(value)


def _relative(value: Any, from_flag: Any, base: Path) -> Path:
    """Paths in mrm.toml are relative to the file; flags to the working directory."""
    path = Path(str(value))
    return path if from_flag is not None or path.is_absolute() else base / path
