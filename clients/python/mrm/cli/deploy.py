"""`mrmctl deploy MODEL --version V --dataset-id ID`: the one command in a CI job."""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click
from rich.table import Table

from mrm.cli.errors import EXIT_OK, EXIT_UNAVAILABLE, CliError
from mrm.cli.output import console, emit_json, err_console, output_option
from mrm.cli.session import Settings, registry_session
from mrm.cli.why import explain_options, explain_session
from mrm.client.ledger import LedgerClient
from mrm.client.registry import role_name, stage_name
from mrm.deploy.config import find_config, load_config
from mrm.deploy.errors import DeployError

if TYPE_CHECKING:
    from mrm.deploy.pipeline import Prepared, Published


def _min_metric(values: tuple[str, ...]) -> dict[str, float]:
    out = {}
    for item in values:
        name, sep, number = item.partition("=")
        try:
            out[name.strip()] = float(number)
        except ValueError:
            raise DeployError(
                f"--min-metric {item!r}: want METRIC=VALUE, e.g. accuracy=0.8"
            ) from None
        if not sep:
            raise DeployError(f"--min-metric {item!r}: want METRIC=VALUE, e.g. accuracy=0.8")
    return out


@click.command()
@click.argument("model", type=click.Path(path_type=Path))
@click.option("--version", "version", required=True, help="The version to register (semver).")
@click.option("--dataset-id", help="The training data's id (else --training-data is hashed).")
@click.option("--name", help="The model's name (default: [model] name in mrm.toml).")
@click.option(
    "--eval-data", type=click.Path(path_type=Path), help="Evaluation CSV with the target."
)
@click.option("--target", help="The target column of the evaluation data.")
@click.option("--training-data", type=click.Path(path_type=Path), help="File or directory to hash.")
@click.option("--source-commit", help="Git SHA (default: from the CI's variables, else git).")
@click.option("--stage", type=click.Choice(["production", "staging"]), help="Where it goes.")
@click.option("--sample-rate", type=click.FloatRange(0, 1), help="The proxy's sampling rate.")
@click.option(
    "--strict/--no-strict",
    default=None,
    help="Strict mode: the proxy records each decision durably before answering.",
)
@click.option("--min-metric", multiple=True, help="Gate: METRIC=VALUE, e.g. accuracy=0.8.")
@click.option("--max-regression", type=float, help="Gate: largest drop of a metric vs production.")
@click.option("--fidelity-tolerance", type=float, help="Gate: ONNX vs original, absolute.")
@click.option("--allow-global", multiple=True, help="Trust one more pickle global, module.Name.")
@click.option("--trust-type", multiple=True, help="Trust one more skops type.")
@click.option("--config", "config", type=click.Path(path_type=Path), help="Default: ./mrm.toml.")
@click.option("--dry-run", is_flag=True, help="Compute and print everything; register nothing.")
@explain_options
@output_option
@click.pass_context
def deploy(
    ctx: click.Context,
    /,
    model: Path,
    version: str,
    output: str,
    dry_run: bool,
    config: Path | None,
    **flags: Any,
) -> int:
    """Version, check, record and deploy a scikit-learn model in one step.

    Loads the model safely, converts it to ONNX and checks the conversion on
    the evaluation data, measures it, records who/when/what/from-which-data in
    the ledger, and promotes it. A failed gate exits 1 and is recorded.
    """
    # Imported here: scikit-learn, ONNX and pandas take seconds to load, and
    # every other mrmctl command should start at once.
    from mrm.deploy.pipeline import (
        check_gates,
        prepare,
        production_metrics,
        publish,
        record_refusal,
        refuse,
    )

    flags["min_metrics"] = _min_metric(flags.pop("min_metric"))
    explain_addr = flags.pop("explain_addr")
    cfg = load_config(model, version, flags, find_config(config, model))
    started = time.perf_counter()

    def progress(step: str, detail: str) -> None:
        if output == "text":
            mark = "[red]✗[/]" if detail.startswith("FAILED") else "[green]✓[/]"
            err_console().print(f"{mark} {step:<10} {detail}", markup=True, highlight=False)

    prepared = prepare(cfg, progress)
    settings = ctx.find_object(Settings)
    assert settings is not None
    production = None
    if not dry_run or cfg.max_regression is not None:
        try:
            with registry_session(ctx) as registry:
                production = production_metrics(registry, cfg.name)
        except Exception:
            if not dry_run:
                raise
    reasons = check_gates(cfg, prepared, production)
    if dry_run:
        return _summary(output, cfg.name, cfg.version, prepared, None, reasons, started)
    if reasons:
        try:
            with registry_session(ctx) as registry:
                record_id = record_refusal(registry, cfg, prepared, reasons)
        except CliError as e:
            if e.exit_code != EXIT_UNAVAILABLE:
                raise
            record_id = None
        raise refuse(reasons, record_id)
    with registry_session(ctx) as registry, explain_session(ctx, explain_addr) as explain:
        published = publish(cfg, prepared, registry, progress, explain)
    return _summary(output, cfg.name, cfg.version, prepared, published, [], started, settings)


def _summary(
    output: str,
    name: str,
    version: str,
    prepared: Prepared,
    published: Published | None,
    reasons: list[str],
    started: float,
    settings: Settings | None = None,
) -> int:
    from mrm.deploy.pipeline import gate_values

    doc: dict[str, Any] = {
        "model": name,
        "version": version,
        "dry_run": published is None,
        "gates_passed": not reasons,
        "refusals": reasons,
        "onnx_sha256": prepared.converted.sha256,
        "metrics": gate_values(prepared.metrics),
        "fidelity": {
            "passed": prepared.fidelity.passed,
            "max_abs_prob_diff": prepared.fidelity.max_abs_prob_diff,
        },
        "fairness": prepared.fairness,
        "training_data_id": prepared.lineage.training_data_id,
        "source_commit": prepared.commit.sha,
        "timings_s": prepared.timings | {"total": round(time.perf_counter() - started, 3)},
    }
    if published is not None and settings is not None:
        final = published.promoted.version if published.promoted else published.version
        doc["stage"] = stage_name(final.stage)
        doc["artifacts"] = {role_name(a.role): a.sha256 for a in final.artifacts}
        doc["records"] = published.records
        doc["leaf_indexes"] = published.leaf_indexes
        doc["already_registered"] = published.already_registered
        with LedgerClient(
            settings.ledger_addr, timeout=settings.timeout, auth=settings.client_auth()
        ) as ledger:
            cp = ledger.checkpoint(refresh=True)
        doc["checkpoint"] = {"origin": cp.origin, "tree_size": cp.tree_size, "note": cp.note}
    if output == "json":
        emit_json(doc)
        return EXIT_OK
    table = Table(
        title=f"{name} {version}" + (" (dry run: nothing registered)" if published is None else "")
    )
    table.add_column("fact")
    table.add_column("value")
    for key, value in doc["metrics"].items():
        table.add_row(key, f"{value:.4f}")
    if prepared.fairness is not None:
        from mrm.deploy.fairness import summary_line

        table.add_row("fairness", summary_line(prepared.fairness))
    table.add_row("onnx sha256", doc["onnx_sha256"])
    table.add_row("training data", doc["training_data_id"])
    table.add_row("source commit", doc["source_commit"])
    for key, value in doc.get("records", {}).items():
        table.add_row(f"record {key}", value)
    if "checkpoint" in doc:
        table.add_row("ledger size", str(doc["checkpoint"]["tree_size"]))
    for reason in reasons:
        table.add_row("would refuse", reason)
    console().print(table)
    return EXIT_OK
