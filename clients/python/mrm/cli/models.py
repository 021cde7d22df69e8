"""`mrmctl models list|show`, `mrmctl promote` and `mrmctl rollback`."""

from __future__ import annotations

import json
from typing import Any

import click
from rich.table import Table

from mrm.cli.errors import EXIT_OK, CliError
from mrm.cli.identity import by_cell, identity_json, identity_lines
from mrm.cli.output import console, emit_json, output_option, rfc3339
from mrm.cli.session import registry_session
from mrm.client.registry import STAGES, role_name, stage_name
from mrm.v1 import registry_pb2


def version_json(v: registry_pb2.ModelVersion) -> dict[str, Any]:
    return {
        "model": v.model_name,
        "version": v.version,
        "stage": stage_name(v.stage),
        "sample_rate": v.sample_rate,
        "strict": v.strict,
        "created_at": rfc3339(v.create_time),
        "created_by": v.created_by,
        "created_by_identity": identity_json(v.created_by_identity),
        "ingested_record_id": v.ingested_record_id,
        "artifacts": {role_name(a.role): {"sha256": a.sha256, "size": a.size} for a in v.artifacts},
        "fairness": json.loads(v.facts_json or "{}").get("fairness"),
    }


def _model_json(m: registry_pb2.Model) -> dict[str, Any]:
    return {
        "name": m.name,
        "description": m.description,
        "created_at": rfc3339(m.create_time),
        "production_version": m.production_version or None,
        "staging_versions": list(m.staging_versions),
    }


@click.group()
def models() -> None:
    """The models in the registry and their versions."""


@models.command("list")
@output_option
@click.pass_context
def list_models(ctx: click.Context, output: str) -> int:
    """Every model, with its production and staging versions."""
    with registry_session(ctx) as reg:
        found = [_model_json(m) for m in reg.list_models()]
    if output == "json":
        emit_json(found)
        return EXIT_OK
    table = Table("model", "production", "staging", "created")
    for m in found:
        table.add_row(
            m["name"], m["production_version"] or "-", ", ".join(m["staging_versions"]) or "-",
            m["created_at"],
        )  # fmt: skip
    console().print(table)
    return EXIT_OK


@models.command("show")
@click.argument("name")
@click.option("--version", "version", default="", help="One version (default: all of them).")
@output_option
@click.pass_context
def show(ctx: click.Context, name: str, version: str, output: str) -> int:
    """A model's versions and its stage history, or one version in detail."""
    with registry_session(ctx) as reg:
        if version:
            one = version_json(reg.get_version(name, version))
            if output == "json":
                emit_json(one)
            else:
                console().print_json(data=one)
            return EXIT_OK
        model = _model_json(reg.get_model(name))
        model["versions"] = [version_json(v) for v in reg.list_versions(name)]
        model["history"] = [
            {
                "version": c.version,
                "stage": stage_name(c.stage),
                "reason": c.reason,
                "actor": c.actor,
                "identity": identity_json(c.identity),
                "record_id": c.record_id,
                "at": rfc3339(c.change_time),
            }
            for c in reg.stage_changes(name)
        ]
    if output == "json":
        emit_json(model)
        return EXIT_OK
    out = console()
    table = Table("version", "stage", "sample rate", "strict", "registered", "by")
    for v in model["versions"]:
        table.add_row(
            v["version"],
            v["stage"],
            f"{v['sample_rate']:g}",
            "yes" if v["strict"] else "no",
            v["created_at"],
            by_cell(v["created_by_identity"], v["created_by"]),
        )
    out.print(table)
    history = Table("when", "version", "stage", "reason", "by", title="stage history")
    for c in model["history"]:
        history.add_row(
            c["at"], c["version"], c["stage"], c["reason"], by_cell(c["identity"], c["actor"])
        )
    out.print(history)
    latest = model["versions"][-1] if model["versions"] else None
    if latest and latest["created_by_identity"]:
        out.print(f"version {latest['version']} registered by:")
        for line in identity_lines(latest["created_by_identity"]):
            out.print(f"  {line}", highlight=False)
    return EXIT_OK


@click.command()
@click.argument("name")
@click.argument("version")
@click.option("--stage", type=click.Choice(sorted(STAGES)), required=True)
@click.option("--reason", default="", help="Why, for the record.")
@output_option
@click.pass_context
def promote(
    ctx: click.Context, name: str, version: str, stage: str, reason: str, output: str
) -> int:
    """Move VERSION of model NAME to a stage; recorded in the ledger as a DEPLOYMENT."""
    with registry_session(ctx) as reg:
        done = reg.promote(name, version, stage, reason=reason or f"mrmctl promote to {stage}")
    return _report(done, output)


@click.command()
@click.argument("name")
@click.option("--reason", default="", help="Why, for the record.")
@output_option
@click.pass_context
def rollback(ctx: click.Context, name: str, reason: str, output: str) -> int:
    """Put back in production the version that served before the current one."""
    with registry_session(ctx) as reg:
        target = reg.rollback_target(name)
        if not target:
            raise CliError(f"{name} has no earlier production version to roll back to")
        done = reg.promote(name, target, "production", reason=reason or "mrmctl rollback")
    return _report(done, output)


def _report(done: registry_pb2.PromoteVersionResponse, output: str) -> int:
    if output == "json":
        emit_json(
            {
                **version_json(done.version),
                "demoted_version": done.demoted_version or None,
                "record_id": done.record_id,
            }
        )
        return EXIT_OK
    v = done.version
    line = f"{v.model_name} {v.version} is now in {stage_name(v.stage)}"
    if done.demoted_version:
        line += f" ({done.demoted_version} moved to staging)"
    console().print(line + f"; ledger record {done.record_id}")
    return EXIT_OK
