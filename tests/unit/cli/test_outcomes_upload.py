"""`mrmctl outcomes upload` against a stand-in monitor, at the real request size
(10,000 outcomes): without --skip-bad every request is checked with
validate_only before any is sent for real, whatever the file's size; rows in
different requests naming one decision are refused; --skip-bad sends at once.
(tests/e2e/test_outcomes.py runs the same journeys against a real monitor, with
smaller requests.)"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path

import click
import orjson
import pytest
from click.testing import CliRunner

from mrm.cli import outcomes as outcomes_cli
from mrm.cli.main import mrmctl
from mrm.client.monitor import Outcome
from mrm.v1 import monitor_pb2 as pb

BAD = "not-a-class"


class FakeMonitor:
    """Answers as the monitor does for outcomes by record id: a label BAD is
    refused, the rest accepted; an outcome's id is derived from its decision's."""

    def __init__(self) -> None:
        self.timeout = 30.0
        self.calls: list[tuple[bool, int]] = []
        """(validate_only, outcomes) per request."""
        self.recorded: set[str] = set()

    def record_outcomes(
        self,
        outcomes: Sequence[Outcome],
        *,
        skip_bad: bool = False,
        source: str = "",
        validate_only: bool = False,
    ) -> pb.RecordOutcomesResponse:
        self.calls.append((validate_only, len(outcomes)))
        out = pb.RecordOutcomesResponse()
        for i, o in enumerate(outcomes):
            if o.label == BAD:
                out.problems.add(index=i, line=o.line, field="label", message="not a class")
                continue
            outcome_id = str(uuid.uuid5(uuid.NAMESPACE_OID, o.mrm_record_id))
            out.record_ids.append(outcome_id)
            if outcome_id in self.recorded:
                out.duplicates += 1
            else:
                out.recorded += 1
                if not validate_only:
                    self.recorded.add(outcome_id)
        assert validate_only or skip_bad or not out.problems, "a real request would be refused"
        return out


@pytest.fixture
def monitor(monkeypatch: pytest.MonkeyPatch) -> FakeMonitor:
    fake = FakeMonitor()

    @contextlib.contextmanager
    def session(ctx: click.Context) -> Iterator[FakeMonitor]:
        yield fake

    monkeypatch.setattr(outcomes_cli, "monitor_session", session)
    return fake


def _ids(n: int) -> list[str]:
    return [str(uuid.UUID(int=i + 1)) for i in range(n)]


def _upload(path: Path, *rows: str, args: Sequence[str] = ()) -> tuple[int, str]:
    path.write_text("\n".join(["mrm_record_id,label", *rows]) + "\n")
    result = CliRunner().invoke(mrmctl, ["outcomes", "upload", str(path), *args])
    return result.exit_code, result.output


def test_a_bad_row_near_the_end_of_a_large_file_records_nothing(
    monitor: FakeMonitor, tmp_path: Path
) -> None:
    rows = [f"{i},1" for i in _ids(10_050)]
    rows[10_040] = rows[10_040].replace(",1", f",{BAD}")  # line 10,042
    code, output = _upload(tmp_path / "big.csv", *rows)
    assert code == 1, output
    assert output.splitlines() == [
        "recorded 0, duplicates 0, rejected 1",
        "line 10042: label: not a class",
        "nothing was recorded: 1 of 10050 outcomes are invalid",
    ]
    assert monitor.calls == [(True, 10_000), (True, 50)]
    assert monitor.recorded == set()


def test_a_clean_large_file_is_checked_then_recorded_whole(
    monitor: FakeMonitor, tmp_path: Path
) -> None:
    rows = [f"{i},1" for i in _ids(10_050)]
    code, output = _upload(tmp_path / "big.csv", *rows, args=["--output", "json"])
    assert code == 0, output
    report = orjson.loads(output)
    assert (report["recorded"], report["duplicates"], report["rejected"]) == (10_050, 0, 0)
    assert len(report["record_ids"]) == 10_050
    assert monitor.calls == [(True, 10_000), (True, 50), (False, 10_000), (False, 50)]
    assert len(monitor.recorded) == 10_050


def test_one_decision_in_two_requests_is_refused(monitor: FakeMonitor, tmp_path: Path) -> None:
    ids = _ids(10_001)
    code, output = _upload(tmp_path / "twice.csv", *(f"{i},1" for i in ids), f"{ids[3]},0")
    assert code == 1, output
    assert output.splitlines()[1:] == [
        "line 10003: mrm_record_id: names the same decision as line 5 (one outcome per decision)",
        "nothing was recorded: 1 of 10002 outcomes are invalid",
    ]
    assert all(validate_only for validate_only, _ in monitor.calls)


def test_skip_bad_sends_at_once(monitor: FakeMonitor, tmp_path: Path) -> None:
    rows = [f"{i},1" for i in _ids(3)]
    code, output = _upload(tmp_path / "some.csv", *rows, f"{_ids(4)[3]},{BAD}", args=["--skip-bad"])
    assert code == 1, output
    assert output.splitlines() == [
        "recorded 3, duplicates 0, rejected 1",
        "line 5: label: not a class",
    ]
    assert monitor.calls == [(False, 4)]
