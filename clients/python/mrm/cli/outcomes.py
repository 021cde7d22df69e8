"""`mrmctl outcomes upload FILE`: ground truth for recorded decisions (OUTCOME records).

    mrmctl outcomes upload labels.csv
    mrmctl outcomes upload labels.jsonl --skip-bad --output json

The file (CSV with a header row, or JSON Lines; see mrm.cli.outcomes_file) is
read and checked here first: a row that cannot be read is reported with its
line before anything is sent. Then:

- without --skip-bad the upload is all or nothing, whatever the file's size:
  every request's worth of rows (10,000) is first checked by the monitor
  (validate_only, which records nothing), together with two rows in different
  requests naming the same decision. If any row is bad, every problem is
  reported with its line and nothing is recorded; else the rows are recorded
  in requests of 10,000;
- with --skip-bad the good rows are recorded, in requests of 10,000, and the
  bad ones reported.

Should the monitor fail, or an outcome be recorded by someone else meanwhile,
between requests (or within one of more than 4,096 new outcomes), the rows
sent before stay recorded: uploading the same file again completes it, and
records nothing new once complete (every outcome is then a duplicate).
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
from mrm.v1 import monitor_pb2

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
    """Why the upload stopped (without --skip-bad), else empty."""

    def json(self) -> dict[str, object]:
        return {
            "recorded": self.recorded,
            "duplicates": self.duplicates,
            "rejected": len(self.problems),
            "problems": [
                {"line": p.line, "field": p.field, "message": p.message} for p in self.problems
            ],
            "record_ids": self.record_ids,
            "nothing_recorded": bool(self.refused) and not self.recorded,
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


def _batches(rows: Sequence[Row]) -> list[Sequence[Row]]:
    return [rows[start : start + MAX_BATCH] for start in range(0, len(rows), MAX_BATCH)]


def _call(
    monitor: MonitorClient,
    batch: Sequence[Row],
    *,
    source: str,
    skip_bad: bool = False,
    validate_only: bool = False,
) -> monitor_pb2.RecordOutcomesResponse:
    # The monitor looks every outcome's decision up in the ledger before it
    # answers: a large request gets more than --timeout.
    base = monitor.timeout
    monitor.timeout = max(base, len(batch) / OUTCOMES_PER_SECOND)
    try:
        return monitor.record_outcomes(
            [outcome_pb(r) for r in batch],
            skip_bad=skip_bad,
            source=source,
            validate_only=validate_only,
        )
    finally:
        monitor.timeout = base


def _problems(done: monitor_pb2.RecordOutcomesResponse, batch: Sequence[Row]) -> list[RowProblem]:
    return [RowProblem(p.line or batch[p.index].line, p.field, p.message) for p in done.problems]


def check(monitor: MonitorClient, rows: Sequence[Row], *, source: str) -> list[RowProblem]:
    """Every problem the monitor finds in `rows`, checked request by request with
    validate_only (nothing is recorded); and rows in different requests naming
    the same decision, which no one request sees. An OUTCOME's record id is
    derived from its decision's, so the same would-be id means the same decision."""
    problems: list[RowProblem] = []
    first: dict[str, int] = {}
    for batch in _batches(rows):
        done = _call(monitor, batch, source=source, validate_only=True)
        problems.extend(_problems(done, batch))
        bad = {p.index for p in done.problems}
        good = [r for i, r in enumerate(batch) if i not in bad]
        for r, record_id in zip(good, done.record_ids, strict=True):
            if (line := first.setdefault(record_id, r.line)) != r.line:
                name = "mrm_record_id" if r.mrm_record_id else "subject_id"
                msg = f"names the same decision as line {line} (one outcome per decision)"
                problems.append(RowProblem(r.line, name, msg))
    return problems


def send(monitor: MonitorClient, rows: Sequence[Row], *, skip_bad: bool, source: str) -> Upload:
    """Record `rows` in requests of at most MAX_BATCH. Without `skip_bad` a request
    the monitor refuses stops the upload (the requests before stay recorded)."""
    out = Upload()
    for batch in _batches(rows):
        try:
            done = _call(monitor, batch, skip_bad=skip_bad, source=source)
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
        out.problems.extend(_problems(done, batch))
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
        if result.refused and not result.recorded:
            click.echo(f"nothing was recorded: {result.refused}")
        elif result.refused:
            click.echo(
                f"stopped: {result.refused}; the {result.recorded} outcomes recorded before "
                "stay recorded (upload the file again once fixed: they are duplicates then)"
            )
    return EXIT_CHECK_FAILED if result.problems else EXIT_OK


@click.group()
def outcomes() -> None:
    """Ground truth for recorded decisions (OUTCOME records)."""


@outcomes.command("upload")
@click.argument("file", type=click.Path(path_type=Path, dir_okay=False))
@click.option(
    "--skip-bad",
    is_flag=True,
    help="Record the good rows and report the bad ones (default: all or nothing: "
    "every row is checked first, and if one is bad, nothing is recorded).",
)
@output_option
@click.pass_context
def upload(ctx: click.Context, file: Path, skip_bad: bool, output: str) -> int:
    """Record the outcomes in FILE: CSV with a header row, or JSON Lines.

    Columns: mrm_record_id, or subject_id [with decided_at]; label; optionally
    observed_at (RFC 3339 times, e.g. 2026-05-01T12:00:00Z).

    Without --skip-bad the monitor checks every row first, records nothing and
    names every bad row's line if one is bad, and else records them all (in
    requests of 10,000 rows). Should it fail midway, the rows sent before stay
    recorded; uploading the file again completes it.
    """
    try:
        parsed = parse_file(file)
    except FileError as e:
        raise CliError(str(e), EXIT_USAGE) from None
    if parsed.problems and not skip_bad:
        why = f"{len(parsed.problems)} rows cannot be read; nothing was sent"
        return _show(Upload(problems=parsed.problems, refused=why), output)
    result = Upload()
    source = file.name[:MAX_SOURCE]
    if parsed.rows:
        with monitor_session(ctx) as monitor:
            bad = [] if skip_bad else check(monitor, parsed.rows, source=source)
            if bad:
                why = f"{len(bad)} of {len(parsed.rows)} outcomes are invalid"
                result = Upload(problems=bad, refused=why)
            else:
                result = send(monitor, parsed.rows, skip_bad=skip_bad, source=source)
    result.problems.extend(parsed.problems)
    return _show(result, output)
