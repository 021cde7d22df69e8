"""How mrmctl prints: rich text for people, plain JSON on stdout for scripts."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

import click
from google.protobuf.timestamp_pb2 import Timestamp
from rich.console import Console

from mrm.client.ledger import Record
from mrm.tlog.leaf import format_timestamp, kind_name

F = TypeVar("F", bound=Callable[..., Any])


def output_option(f: F) -> F:
    """The --output text|json option every read command takes."""
    return click.option(
        "--output",
        "-o",
        type=click.Choice(["text", "json"]),
        default="text",
        show_default=True,
        help="text for people, json for scripts (on stdout)",
    )(f)


# Rich assumes 80 columns when stdout is not a terminal, which would cut
# record ids and hashes in a pipe or a CI log; those get a wide virtual line.
_PIPE_WIDTH = 200


def console() -> Console:
    # Created per call so that it follows the sys.stdout of the moment (tests
    # swap it).
    out = Console(highlight=False)
    if not out.is_terminal:
        out = Console(highlight=False, width=_PIPE_WIDTH)
    return out


def err_console() -> Console:
    return Console(stderr=True, highlight=False)


def emit_json(value: Any) -> None:
    click.echo(json.dumps(value, indent=2, ensure_ascii=False))


def emit_json_stream(items: Iterable[Any]) -> None:
    """A JSON list written item by item, so a large query is never held in memory."""
    first = True
    for item in items:
        click.echo(("[\n  " if first else ",\n  ") + json.dumps(item, ensure_ascii=False), nl=False)
        first = False
    click.echo("[]" if first else "\n]")


def rfc3339(ts: Timestamp) -> str:
    """A protobuf timestamp in the leaf's spelling (UTC, six fractional digits)."""
    return format_timestamp(ts.seconds * 1_000_000 + ts.nanos // 1000)


def record_to_json(record: Record) -> dict[str, Any]:
    """The stable JSON form of a record in `mrmctl ledger records --output json`."""
    return {
        "record_id": record.record_id,
        "leaf_index": record.leaf_index,
        "kind": kind_name(record.kind),
        "model_name": record.model_name,
        "model_version": record.model_version,
        "subject": record.subject,
        "recorded_at": rfc3339(record.recorded_at),
        "actor": record.actor,
        "trace_id": record.trace_id,
        "span_id": record.span_id,
        "leaf_hash": record.leaf_hash.hex(),
        "body": json.loads(record.body_json) if record.body_json else {},
    }
