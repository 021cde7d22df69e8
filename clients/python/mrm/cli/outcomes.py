"""`mrmctl outcomes upload FILE`: ground truth for recorded decisions (OUTCOME records).

    mrmctl outcomes upload labels.csv
    mrmctl outcomes upload labels.jsonl --skip-bad --output json

The file (CSV with a header row, or JSON Lines; see mrm.cli.outcomes_file) is
read and checked here first: a row that cannot be read is reported with its
line before anything is sent. Then:

- without --skip-bad the upload is all or nothing: one request of at most
  10,000 outcomes, which the monitor records whole or, naming every bad line,
  not at all. A larger file is refused (split it, or pass --skip-bad);
- with --skip-bad the good rows are recorded, in requests of 10,000, and the
  bad ones reported.

Uploading the same file again records nothing new: every outcome is a duplicate.
A request waits at least a second per 50 outcomes, whatever --timeout says.
Exit 0 when every row was recorded (or already was), 1 when rows were rejected,
2 for a file or usage error.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import click

from mrm.cli.errors import EXIT_CHECK_FAILED, EXIT_OK, EXIT_USAGE, CliError
from mrm.cli.outcomes_file import FileError, Row, RowProblem, parse_file
from mrm.cli.output import emit_json, output_option
from mrm.cli.session import monitor_session
from mrm.client.errors import InvalidArgument
from mrm.client.monitor import MonitorClient, Outcome
from mrm.client.timestamps import timestamp

MAX_BATCH = 10_000
MAX_SOURCE = 200
OUTCOMES_PER_SECOND = 50
"""The slowest rate a request is allowed: 10,000 outcomes get 200 seconds."""
_VIOLATION = re.compile(r"outcomes\[(\d+)\]\.(\w+)")
_LINE = re.compile(r"line \d+: ")


@dataclass
class Upload:
    recorded: int = 0
    duplicates: int = 0
    problems: list[RowProblem] = field(default_factory=list)
    record_ids: list[str] = field(default_factory=list)
    refused: str = ""
    """Why nothing was recorded (without --skip-bad), else empty."""

    def json(self) -> dict[str, object]:
        return {
            "recorded": self.recorded,
            "duplicates": self.duplicates,
            "rejected": len(self.problems),
            "problems": [
                {"line": p.line, "field": p.field, "message": p.message} for p in self.problems
            ],
            "record_ids": self.record_ids,
            "nothing_recorded": bool(self.refused),
        }


def outcome_pb(row: Row) -> Outcome:
    out = Outcome(
        mrm_record_id=row.mrm_record_id, subject_id=row.subject_id, label=row.label, line=row.line
    )
    if row.decided_at is not None:
        out.decided_at.CopyFrom(timestamp(row.decided_at))
    if row.observed_at is not None:
        out.observed_at.CopyFrom(timestamp(row.observed_at))
    return out


def _refused(e: InvalidArgument, batch: Sequence[Row]) -> list[RowProblem] | None:
    """The server's per-outcome violations as problems; None if it refused the request."""
    problems = []
    for name, description in e.field_violations:
        m = _VIOLATION.fullmatch(name)
        if m is None or int(m.group(1)) >= len(batch):
            return None
        line = batch[int(m.group(1))].line
        problems.append(RowProblem(line, m.group(2), _LINE.sub("", description, count=1)))
    return problems or None


def send(monitor: MonitorClient, rows: Sequence[Row], *, skip_bad: bool, source: str) -> Upload:
    """Record `rows` in requests of at most MAX_BATCH (one request without `skip_bad`)."""
    out = Upload()
    base = monitor.timeout
    for start in range(0, len(rows), MAX_BATCH):
        batch = rows[start : start + MAX_BATCH]
        # The monitor looks every outcome's decision up in the ledger before it
        # records anything: a large request gets more than --timeout.
        monitor.timeout = max(base, len(batch) / OUTCOMES_PER_SECOND)
        try:
            done = monitor.record_outcomes(
                [outcome_pb(r) for r in batch], skip_bad=skip_bad, source=source
            )
        except InvalidArgument as e:
            problems = None if skip_bad else _refused(e, batch)
            if problems is None:
                raise
            out.problems.extend(problems)
            out.refused = e.message
            return out
        out.recorded += done.recorded
        out.duplicates += done.duplicates
        out.record_ids.extend(done.record_ids)
        out.problems.extend(
            RowProblem(p.line or batch[p.index].line, p.field, p.message) for p in done.problems
        )
    return out


def _show(result: Upload, output: str) -> int:
    result.problems.sort(key=lambda p: p.line)
    if output == "json":
        emit_json(result.json())
    else:
        click.echo(
            f"recorded {result.recorded}, duplicates {result.duplicates}, "
            f"rejected {len(result.problems)}"
        )
        for p in result.problems:
            click.echo(str(p))
        if result.refused:
            click.echo(f"nothing was recorded: {result.refused}")
    return EXIT_CHECK_FAILED if result.problems else EXIT_OK


@click.group()
def outcomes() -> None:
    """Ground truth for recorded decisions (OUTCOME records)."""


@outcomes.command("upload")
@click.argument("file", type=click.Path(path_type=Path, dir_okay=False))
@click.option(
    "--skip-bad",
    is_flag=True,
    help="Record the good rows and report the bad ones (default: all or nothing, "
    f"at most {MAX_BATCH:,} rows).",
)
@output_option
@click.pass_context
def upload(ctx: click.Context, file: Path, skip_bad: bool, output: str) -> int:
    """Record the outcomes in FILE: CSV with a header row, or JSON Lines.

    Columns: mrm_record_id, or subject_id [with decided_at]; label; optionally
    observed_at (RFC 3339 times, e.g. 2026-05-01T12:00:00Z).
    """
    try:
        parsed = parse_file(file)
    except FileError as e:
        raise CliError(str(e), EXIT_USAGE) from None
    if parsed.problems and not skip_bad:
        why = f"{len(parsed.problems)} rows cannot be read; nothing was sent"
        return _show(Upload(problems=parsed.problems, refused=why), output)
    if len(parsed.rows) > MAX_BATCH and not skip_bad:
        raise CliError(
            f"{file} holds {len(parsed.rows):,} outcomes; an all-or-nothing upload takes at "
            f"most {MAX_BATCH:,}: split the file, or pass --skip-bad",
            EXIT_USAGE,
        )
    result = Upload()
    if parsed.rows:
        with monitor_session(ctx) as monitor:
            result = send(monitor, parsed.rows, skip_bad=skip_bad, source=file.name[:MAX_SOURCE])
    result.problems.extend(parsed.problems)
    return _show(result, output)
