"""`mrmctl why`: why did the model decide that, with the evidence to prove it.

    mrmctl why --subject a-1003 --at 2026-11-24
    mrmctl why RECORD_ID --output json

Each decision is explained by the Explain service: the explanation it recorded
in the ledger before, when it has one computed from the artifacts the version
still archives, else a new one it records (`--re-explain` always asks for a new
one, re-running the archived model). The decision's and the explanation's
records are then proven to be in the ledger against this client's trusted
checkpoint, and the explanation shown is checked against its proven record.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import click

from mrm.cli.errors import EXIT_CHECK_FAILED, EXIT_OK, EXIT_UNAVAILABLE, CliError
from mrm.cli.identity import identity_json, identity_lines
from mrm.cli.output import console, emit_json, output_option, rfc3339
from mrm.cli.params import IsoTime, RecordId
from mrm.cli.session import LedgerSession, ledger_session, settings_of
from mrm.client.errors import MrmRpcError, NotFound, Unavailable
from mrm.client.explain import (
    ExplainClient,
    Explanation,
    feature_value,
    format_shap,
    format_value,
    sentence,
)
from mrm.client.reasons import ReasonWording, is_adverse, principal_reasons
from mrm.client.registry import RegistryClient
from mrm.client.trust import TrustedCheckpoint
from mrm.tlog.leaf import leaf_bytes_from_proto
from mrm.tlog.merkle import ProofError, leaf_hash, verify_inclusion

DEFAULT_TRACE_URL = "http://localhost:16686/trace/{trace_id}"


def explain_options(f: Any) -> Any:
    """--explain-addr, shared by the commands that ask the Explain service."""
    return click.option(
        "--explain-addr",
        envvar="MRM_EXPLAIN_ADDR",
        default="localhost:50053",
        show_default=True,
        help="The Explain service's gRPC address (env MRM_EXPLAIN_ADDR).",
    )(f)


@contextlib.contextmanager
def explain_session(ctx: click.Context, addr: str) -> Iterator[ExplainClient]:
    """An Explain client; an unreachable service is exit 3 with a hint."""
    settings = settings_of(ctx)
    client = ExplainClient(addr, timeout=max(settings.timeout, 60.0), auth=settings.client_auth())
    try:
        yield client
    except Unavailable as e:
        raise CliError(
            f"cannot reach the Explain service at {addr}: {e.summary()} "
            "(is it running? point --explain-addr or MRM_EXPLAIN_ADDR at it)",
            EXIT_UNAVAILABLE,
        ) from None
    finally:
        client.close()


def proven(s: LedgerSession, latest: TrustedCheckpoint, exp: Explanation) -> bool:
    """Both records are in the trusted tree, and the explanation shown is the one recorded."""
    for record_id in (exp.prediction_record_id, exp.record_id):
        try:
            resp = s.client.inclusion_proof(record_id=record_id, tree_size=latest.size)
        except NotFound:
            return False
        record = resp.record
        if record.record_id != record_id or resp.tree_size != latest.size:
            return False
        if leaf_hash(leaf_bytes_from_proto(record)) != resp.leaf_hash:
            return False
        try:
            verify_inclusion(
                resp.leaf_hash, resp.leaf_index, latest.size, resp.inclusion_path, latest.root_hash
            )
        except ProofError:
            return False
        if record_id == exp.record_id and not _shows(exp, json.loads(record.body_json)):
            return False
    return True


def _shows(exp: Explanation, body: dict[str, Any]) -> bool:
    """Whether the Explain service's answer is what its proven record says."""
    recorded = [(c["feature"], float(c["shap"])) for c in body.get("contributions", [])]
    return (
        body.get("prediction_record_id") == exp.prediction_record_id
        and body.get("decision") == exp.decision
        and float(body.get("output_value", "nan")) == exp.output_value
        and float(body.get("base_value", "nan")) == exp.base_value
        and recorded == [(c.feature, c.shap) for c in exp.contributions]
    )


def version_facts(
    ctx: click.Context, explained: list[Explanation]
) -> dict[str, tuple[dict[str, Any], ReasonWording | None]]:
    """Per decision's model version: who registered it, as the registry verified it
    (`{}` when the registry cannot tell: recorded before authentication, or the
    registry unreachable), and the wording of its adverse decisions from its
    `explain` fact (None when the registry cannot be read)."""
    settings = settings_of(ctx)
    found: dict[str, tuple[dict[str, Any], ReasonWording | None]] = {}
    with RegistryClient(
        settings.registry_addr, timeout=settings.timeout, auth=settings.client_auth()
    ) as reg:
        for exp in explained:
            key = f"{exp.model_name}@{exp.model_version}"
            if key not in found:
                try:
                    v = reg.get_version(exp.model_name, exp.model_version)
                    found[key] = (
                        identity_json(v.created_by_identity) or {"claimed": v.created_by},
                        ReasonWording.from_facts(v.facts_json),
                    )
                except MrmRpcError:
                    found[key] = ({}, None)
    return found


def as_json(
    exp: Explanation,
    report_url: str,
    trace_url: str,
    verified: bool,
    deployed_by: dict[str, Any] | None = None,
    wording: ReasonWording | None = None,
) -> dict[str, Any]:
    """`adverse` is null, with no reasons, when the version's wording could not be read."""
    return {
        "record_id": exp.prediction_record_id,
        "model": exp.model_name,
        "version": exp.model_version,
        "recorded_at": rfc3339(exp.decided_at),
        "decision": exp.decision,
        "output_value": exp.output_value,
        "base_value": exp.base_value,
        "output_space": exp.output_space,
        "contributions": [
            {"feature": c.feature, "value": feature_value(c), "shap": c.shap}
            for c in exp.contributions
        ],
        "report_url": report_url,
        "trace_url": trace_url,
        "proof_verified": verified,
        "registered_by": deployed_by or {},
        "adverse": None if wording is None else is_adverse(exp, wording),
        "reasons": []
        if wording is None
        else [r.as_json() for r in principal_reasons(exp, wording)],
    }


def _print_reasons(doc: dict[str, Any]) -> None:
    """The principal reasons of an adverse decision, as an adverse-action notice states them."""
    out = console()
    if doc["adverse"] is None:
        out.print(
            "  Principal reasons: unknown (the registry could not give the version's wording)",
            markup=False,
        )
    if not doc["adverse"]:
        return
    if not doc["reasons"]:
        out.print("  Principal reasons: none (no factor pushed towards this outcome)", markup=False)
        return
    out.print("  Principal reasons:", markup=False)
    for r in doc["reasons"]:
        out.print(
            f"    {r['rank']}. {r['text']} ({r['feature']} = {format_value(r['value'])}, "
            f"{format_shap(r['contribution'])})",
            markup=False,
        )


def _print_registered_by(doc: dict[str, Any]) -> None:
    out = console()
    if "principal" in doc:
        first, *rest = identity_lines(doc)
        out.print(f"  model version registered by {first}", markup=False)
        for line in rest:
            out.print(f"  {line}", markup=False)
    elif doc.get("claimed"):
        out.print(
            f"  model version registered by {doc['claimed']} (unverified: recorded before "
            "authentication)",
            markup=False,
        )


def _http_base() -> str:
    """The report server the local stack runs: MRM_HTTP_ADDR, as `mrm up` binds it."""
    host, _, port = os.environ.get("MRM_HTTP_ADDR", "localhost:8000").rpartition(":")
    if host in ("", "[::]", "::", "0.0.0.0"):  # noqa: S104 (recognizing it, not binding)
        host = "localhost"
    return f"http://{host}:{port}"


def _window(
    at: datetime | None, since: datetime | None, until: datetime | None
) -> tuple[datetime | None, datetime | None]:
    if at is not None:
        if since is not None or until is not None:
            raise CliError("give --at DATE or --since/--until, not both")
        return at, at + timedelta(days=1)
    if since is not None and until is not None and since >= until:
        raise CliError(f"--since {since.isoformat()} is not before --until {until.isoformat()}")
    return since, until


@click.command()
@click.argument("record_id", type=RecordId(), required=False)
@click.option("--subject", help="The subject's id, as sent to the proxy (subject_id).")
@click.option("--at", type=IsoTime(), help="Decisions on this day (a date, UTC).")
@click.option("--since", type=IsoTime(), help="Decided at or after (ISO 8601; naive is UTC).")
@click.option("--until", type=IsoTime(end_of_day=True), help="Decided before (a date: its end).")
@click.option("--model", "model_name", default="", help="Only decisions of this model.")
@click.option(
    "--limit", type=click.IntRange(min=1), default=10, show_default=True, help="Most decisions."
)
@click.option(
    "--report-file",
    type=click.Path(dir_okay=False, writable=True, path_type=Path),
    help="Also save the (newest) decision's HTML report to this file.",
)
@click.option(
    "--re-explain",
    is_flag=True,
    help="Explain anew (re-running the archived model) and record it, rather than read "
    "the decision's recorded explanation.",
)
@explain_options
@click.option(
    "--report-base-url",
    envvar="MRM_REPORT_BASE_URL",
    help="Where the reports are served over HTTP; default http://$MRM_HTTP_ADDR, else "
    "http://localhost:8000 (env MRM_REPORT_BASE_URL).",
)
@click.option(
    "--trace-url-template",
    envvar="MRM_TRACE_URL_TEMPLATE",
    default=DEFAULT_TRACE_URL,
    show_default=True,
    help="The trace link; {trace_id} is replaced (env MRM_TRACE_URL_TEMPLATE).",
)
@output_option
@click.pass_context
def why(
    ctx: click.Context,
    record_id: str | None,
    subject: str | None,
    at: datetime | None,
    since: datetime | None,
    until: datetime | None,
    model_name: str,
    limit: int,
    report_file: Path | None,
    re_explain: bool,
    explain_addr: str,
    report_base_url: str | None,
    trace_url_template: str,
    output: str,
) -> int:
    """Explain a recorded decision: RECORD_ID, or every decision about --subject.

    Prints the decision and its main factors, an adverse decision's principal
    reasons (from the model's `[explain]` wording), the report and trace links,
    and whether the records are proven to be in the ledger. Exit 1 when no decision
    matches, a proof fails, or the archived model no longer reproduces the
    logged output.
    """
    if (record_id is None) == (subject is None):
        raise CliError("give a RECORD_ID or --subject ID (one of them)")
    if record_id is not None and (at or since or until or model_name):
        raise CliError("--at, --since, --until and --model filter --subject; not a RECORD_ID")
    since, until = _window(at, since, until)
    with explain_session(ctx, explain_addr) as ex:
        if subject is not None:
            try:
                found = itertools.islice(
                    ex.decisions(subject, model_name=model_name, since=since, until=until), limit
                )
                ids = [r.record_id for r in found]
            except NotFound:
                ids = []
            if not ids:
                raise CliError(
                    "no recorded decision matches: subject "
                    + repr(subject)
                    + (f", model {model_name}" if model_name else "")
                    + (f", since {since.isoformat()}" if since else "")
                    + (f", until {until.isoformat()}" if until else ""),
                    EXIT_CHECK_FAILED,
                )
        else:
            ids = [record_id or ""]
        explained = [ex.explain_record(rid, reuse_latest=not re_explain) for rid in ids]
        # Proven after any explanation was appended, against a fresh checkpoint.
        with ledger_session(ctx) as s:
            latest = s.trusted(refresh=True)
            checks = [proven(s, latest, exp) for exp in explained]
        if report_file is not None:
            report_file.write_text(ex.report(explained[0].record_id).html, encoding="utf-8")
    base = (report_base_url or _http_base()).rstrip("/")
    who = version_facts(ctx, explained)
    rows = []
    for exp, ok in zip(explained, checks, strict=True):
        trace = trace_url_template.replace("{trace_id}", exp.trace_id) if exp.trace_id else ""
        by, wording = who[f"{exp.model_name}@{exp.model_version}"]
        rows.append((exp, as_json(exp, base + exp.report_path, trace, ok, by, wording)))
    failed = not all(checks) or any(not exp.reproduction.matches for exp in explained)
    if output == "json":
        emit_json(rows[0][1] if record_id is not None else [doc for _, doc in rows])
        return EXIT_CHECK_FAILED if failed else EXIT_OK
    out = console()
    for i, (exp, doc) in enumerate(rows):
        if i:
            out.print()
        out.print(sentence(exp), markup=False)
        if not exp.reproduction.matches:
            out.print(
                "[bold red]! REPRODUCIBILITY FAILURE:[/] the archived model does not reproduce "
                "the logged output: ",
                end="",
            )
            out.print(exp.reproduction.detail, markup=False)
        if exp.fallback_reason:
            out.print(f"  note: approximate explainer ({exp.method}): ", end="", markup=False)
            out.print(exp.fallback_reason, markup=False)
        _print_reasons(doc)
        _print_registered_by(doc["registered_by"])
        out.print(f"  report: {doc['report_url']}", markup=False)
        out.print(f"  trace:  {doc['trace_url'] or '(none recorded)'}", markup=False)
        if doc["proof_verified"]:
            out.print(
                f"  proof:  [green]✓[/] decision and explanation are in the ledger's signed "
                f"{latest.size}-leaf tree ({latest.origin})"
            )
        else:
            out.print("  proof:  [bold red]✗ NOT VERIFIED[/] against the trusted checkpoint")
    if report_file is not None:
        out.print(f"report saved to {report_file}", markup=False)
    return EXIT_CHECK_FAILED if failed else EXIT_OK
