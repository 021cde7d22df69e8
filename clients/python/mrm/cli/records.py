"""`mrmctl ledger records` and `mrmctl ledger append`."""

from __future__ import annotations

import itertools
from datetime import datetime

import click
from rich.table import Table

from mrm.cli.errors import EXIT_OK, CliError
from mrm.cli.ledger import ledger
from mrm.cli.output import (
    console,
    emit_json,
    emit_json_stream,
    output_option,
    record_to_json,
    rfc3339,
)
from mrm.cli.params import IsoTime, JsonObject, RecordId, kind_choice
from mrm.cli.session import ledger_session
from mrm.client.ledger import new_record
from mrm.tlog.leaf import kind_name


@ledger.command()
@click.option("--model", "model_name", default="", help="Only records about this model.")
@click.option("--version", "model_version", default="", help="Only this model version.")
@click.option("--kind", type=kind_choice(), help="Only records of this kind.")
@click.option("--subject", default="", help="Only records with this subject reference.")
@click.option("--trace-id", default="", help="Only records of this W3C trace id.")
@click.option("--since", type=IsoTime(), help="Recorded at or after (ISO 8601; naive is UTC).")
@click.option("--until", type=IsoTime(end_of_day=True), help="Recorded before (a date: its end).")
@click.option("--limit", type=click.IntRange(min=1), help="Print at most N records.")
@click.option("--newest-first", is_flag=True, help="Newest records first.")
@output_option
@click.pass_context
def records(
    ctx: click.Context,
    model_name: str,
    model_version: str,
    kind: str | None,
    subject: str,
    trace_id: str,
    since: datetime | None,
    until: datetime | None,
    limit: int | None,
    newest_first: bool,
    output: str,
) -> int:
    """List audit records in leaf order, filtered by every option given."""
    if since is not None and until is not None and since >= until:
        raise CliError(f"--since {since.isoformat()} is not before --until {until.isoformat()}")
    with ledger_session(ctx) as s:
        s.trusted()
        found = s.client.query(
            kind=kind or 0,
            model_name=model_name,
            model_version=model_version,
            subject=subject,
            trace_id=trace_id,
            since=since,
            until=until,
            page_size=min(limit or 1000, 1000),
            newest_first=newest_first,
        )
        if limit is not None:
            found = itertools.islice(found, limit)
        if output == "json":
            emit_json_stream(record_to_json(r) for r in found)
            return EXIT_OK
        table = Table("leaf", "recorded at", "kind", "model", "record id", "subject")
        for r in found:
            model = f"{r.model_name}@{r.model_version}" if r.model_version else r.model_name
            table.add_row(
                str(r.leaf_index),
                rfc3339(r.recorded_at),
                kind_name(r.kind),
                model,
                r.record_id,
                r.subject,
            )
    console().print(table)
    return EXIT_OK


@ledger.command()
@click.option("--kind", type=kind_choice(), required=True, help="What the record attests.")
@click.option("--body", type=JsonObject(), required=True, help="The record's JSON object.")
@click.option("--model", "model_name", default="", help="The model it is about.")
@click.option("--model-version", default="", help="The model version (semver).")
@click.option("--subject", default="", help="A reference to the decision's subject.")
@click.option("--trace-id", default="", help="W3C trace id (32 hex digits).")
@click.option("--span-id", default="", help="W3C span id (16 hex digits).")
@click.option(
    "--record-id",
    type=RecordId(),
    help="Default: a new UUIDv7. Reuse one to retry an append safely.",
)
@output_option
@click.pass_context
def append(
    ctx: click.Context,
    kind: str,
    body: dict[str, object],
    model_name: str,
    model_version: str,
    subject: str,
    trace_id: str,
    span_id: str,
    record_id: str | None,
    output: str,
) -> int:
    """Append one record (BODY is JSON text, or @FILE)."""
    record = new_record(
        kind,
        body,
        record_id=record_id,
        model_name=model_name,
        model_version=model_version,
        subject=subject,
        trace_id=trace_id,
        span_id=span_id,
    )
    with ledger_session(ctx) as s:
        s.trusted()
        (result,) = s.client.append([record])
    if output == "json":
        emit_json(
            {
                "record_id": result.record_id,
                "leaf_index": result.leaf_index,
                "leaf_hash": result.leaf_hash.hex(),
                "recorded_at": rfc3339(result.recorded_at),
                "duplicate": result.duplicate,
            }
        )
    elif result.duplicate:
        console().print(
            f"record {result.record_id} was already leaf {result.leaf_index}; nothing was added"
        )
    else:
        console().print(f"appended record {result.record_id} as leaf {result.leaf_index}")
    return EXIT_OK
