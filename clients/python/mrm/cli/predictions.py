"""`mrmctl predictions`: the recorded decisions, with their exact request and response."""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterable, Iterator
from datetime import datetime
from typing import Any

import click
from rich.table import Table

from mrm.cli.errors import EXIT_OK, CliError
from mrm.cli.output import console, emit_json_stream, output_option, rfc3339
from mrm.cli.params import IsoTime
from mrm.cli.session import ledger_session
from mrm.cli.why import explain_options, explain_session
from mrm.client.errors import NotFound
from mrm.client.ledger import Record


def prediction_json(record: Record) -> dict[str, Any]:
    """The stable JSON form of a decision in `mrmctl predictions --output json`."""
    body = json.loads(record.body_json) if record.body_json else {}
    return {
        "record_id": record.record_id,
        "leaf_index": record.leaf_index,
        "model": record.model_name,
        "version": record.model_version,
        "recorded_at": rfc3339(record.recorded_at),
        "subject": record.subject,
        "trace_id": record.trace_id,
        "span_id": record.span_id,
        "onnx_sha256": body.get("onnx_sha256", ""),
        "request": body.get("request", {}),
        "response": body.get("response", {}),
    }


def _summary(response: dict[str, Any]) -> str:
    label = response.get("label", response.get("value", ""))
    text = json.dumps(label, ensure_ascii=False)
    return text if len(text) <= 40 else text[:39] + "…"


@click.command()
@click.option("--subject", help="Only decisions about this subject (its raw id).")
@click.option("--model", "model_name", default="", help="Only decisions of this model.")
@click.option("--since", type=IsoTime(), help="Recorded at or after (ISO 8601; naive is UTC).")
@click.option("--until", type=IsoTime(end_of_day=True), help="Recorded before (a date: its end).")
@click.option(
    "--limit", type=click.IntRange(min=1), default=100, show_default=True, help="Most decisions."
)
@explain_options
@output_option
@click.pass_context
def predictions(
    ctx: click.Context,
    subject: str | None,
    model_name: str,
    since: datetime | None,
    until: datetime | None,
    limit: int,
    explain_addr: str,
    output: str,
) -> int:
    """List recorded decisions (PREDICTION records), newest first, with the exact
    request and response payloads. --subject takes the raw id the caller sent to
    the proxy; the Explain service hashes it as the proxy does."""
    if since is not None and until is not None and since >= until:
        raise CliError(f"--since {since.isoformat()} is not before --until {until.isoformat()}")
    with ledger_session(ctx) as s:
        s.trusted()
        if subject is not None:
            with explain_session(ctx, explain_addr) as ex:
                try:
                    found: Iterable[Record] = list(
                        itertools.islice(
                            ex.decisions(
                                subject,
                                model_name=model_name,
                                since=since,
                                until=until,
                                page_size=min(limit, 1000),
                            ),
                            limit,
                        )
                    )
                except NotFound:
                    found = []
        else:
            found = itertools.islice(
                s.client.query(
                    kind="PREDICTION",
                    model_name=model_name,
                    since=since,
                    until=until,
                    page_size=min(limit, 1000),
                    newest_first=True,
                ),
                limit,
            )
        docs: Iterator[dict[str, Any]] = (prediction_json(r) for r in found)
        if output == "json":
            emit_json_stream(docs)
            return EXIT_OK
        table = Table("recorded at", "model", "record id", "trace id", "answer")
        for doc in docs:
            table.add_row(
                doc["recorded_at"],
                f"{doc['model']}@{doc['version']}",
                doc["record_id"],
                doc["trace_id"],
                _summary(doc["response"]),
            )
    console().print(table)
    return EXIT_OK
