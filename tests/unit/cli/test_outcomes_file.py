"""Outcome files (mrm.cli.outcomes_file): rows keep their line, bad rows are named by
line and field, a file that cannot be read at all is a FileError; and
`mrmctl outcomes upload` reports local problems without contacting the monitor."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from click.testing import CliRunner
from hypothesis import given
from hypothesis import strategies as st

from mrm.cli.main import mrmctl
from mrm.cli.outcomes_file import FileError, Row, RowProblem, is_jsonl, parse_file, parse_text

ID = "0190c2a4-7b1e-7d3f-8a2b-1c2d3e4f5a6b"


def _csv(*lines: str) -> str:
    return "\n".join(lines) + "\n"


def test_csv_rows_by_record_id_and_by_subject() -> None:
    parsed = parse_text(
        _csv(
            "mrm_record_id,subject_id,decided_at,label,observed_at",
            f"{ID},,,approved,2026-05-01T12:00:00Z",
            "",
            ",cust-42,2026-05-01T09:30:00+02:00, 1 ,",
        ),
        jsonl=False,
    )
    assert parsed.problems == []
    assert parsed.rows == [
        Row(2, "approved", mrm_record_id=ID, observed_at=datetime(2026, 5, 1, 12, tzinfo=UTC)),
        Row(
            4,
            "1",
            subject_id="cust-42",
            decided_at=datetime(2026, 5, 1, 9, 30, tzinfo=timezone(timedelta(hours=2))),
        ),
    ]


def test_csv_bad_rows_are_named_by_line_and_field() -> None:
    parsed = parse_text(
        _csv(
            "mrm_record_id,subject_id,decided_at,label,observed_at",
            f"{ID},,,1,2026-05-01",  # 2: a date, not a time
            f"{ID},,,1,2026-05-01T12:00:00",  # 3: no offset
            f"{ID},,,,",  # 4: no label
            ",,,1,",  # 5: nothing names the decision
            f"{ID},cust-1,,1,",  # 6: both
            f"{ID},,2026-05-01T12:00:00Z,1,",  # 7: decided_at without subject_id
            f"{ID},1",  # 8: too few fields
            f"{ID},,,0,",  # 9: good
        ),
        jsonl=False,
    )
    assert [(p.line, p.field) for p in parsed.problems] == [
        (2, "observed_at"),
        (3, "observed_at"),
        (4, "label"),
        (5, "mrm_record_id"),
        (6, "subject_id"),
        (7, "decided_at"),
        (8, "line"),
    ]
    assert str(parsed.problems[2]) == "line 4: label: is required"
    assert str(parsed.problems[6]) == "line 8: line: has 2 fields, the header 5"
    assert [r.line for r in parsed.rows] == [9]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "the file is empty"),
        ("mrm_record_id\n", "no label column"),
        ("decided_at,label\n", "needs an mrm_record_id or a subject_id column"),
        ("mrm_record_id,lable\n", "unknown column 'lable'"),
        ("mrm_record_id,label,label\n", "names a column twice"),
        ("mrm_record_id,label\n", "holds no outcomes"),
    ],
)
def test_csv_whose_header_cannot_be_used(text: str, message: str) -> None:
    with pytest.raises(FileError, match=message):
        parse_text(text, jsonl=False)


_labels = st.text(st.characters(codec="utf-8", exclude_characters="\x00"), min_size=1).filter(
    lambda s: s.strip() == s and s != ""
)


@given(st.lists(_labels, min_size=1, max_size=20))
def test_csv_labels_and_lines_survive_any_quoting(labels: list[str]) -> None:
    """Whatever a spreadsheet quotes (commas, quotes, newlines), each row reads back with
    its label and the physical line it starts on."""
    out = io.StringIO()
    writer = csv.writer(out)  # \r\n line ends, as spreadsheets write them
    writer.writerow(["mrm_record_id", "label"])
    starts, line = [], 2
    for label in labels:
        writer.writerow([ID, label])
        starts.append(line)
        # Python's csv counts \n, \r and \r\n as one line end each.
        line += label.count("\r") + label.count("\n") - label.count("\r\n") + 1
    parsed = parse_text(out.getvalue(), jsonl=False)
    assert parsed.problems == []
    assert [r.label for r in parsed.rows] == labels
    assert [r.line for r in parsed.rows] == starts


def test_json_lines() -> None:
    parsed = parse_text(
        "\n".join(
            [
                f'{{"mrm_record_id": "{ID}", "label": 1}}',
                f'{{"mrm_record_id": "{ID}", "label": 1.0}}',
                f'{{"mrm_record_id": "{ID}", "label": 0.5}}',
                "",
                '{"subject_id": "c-1", "decided_at": "2026-05-01T12:00:00Z", "label": "no"}',
                f'{{"mrm_record_id": "{ID}", "label": true}}',
                f'{{"mrm_record_id": "{ID}"}}',
                f'{{"mrm_record_id": "{ID}", "label": ["a"]}}',
                '{"mrm_record_id": 7, "label": "a"}',
                "[1, 2]",
                "{not json",
            ]
        ),
        jsonl=True,
    )
    assert [(r.line, r.label) for r in parsed.rows] == [(1, "1"), (2, "1"), (3, "0.5"), (5, "no")]
    assert parsed.rows[3].decided_at == datetime(2026, 5, 1, 12, tzinfo=UTC)
    assert parsed.problems == [
        RowProblem(6, "label", "must be a string or a number, not true"),
        RowProblem(7, "label", "is required"),
        RowProblem(8, "label", "must be a string or a number, not list"),
        RowProblem(9, "mrm_record_id", "must be a string, not int"),
        RowProblem(10, "line", "is not a JSON object"),
        RowProblem(11, "line", parsed.problems[-1].message),
    ]
    assert parsed.problems[-1].message.startswith("is not JSON")


def test_json_lines_with_an_unknown_key_is_a_file_error() -> None:
    with pytest.raises(FileError, match="unknown column 'labl'"):
        parse_text(f'{{"mrm_record_id": "{ID}", "labl": "1"}}\n', jsonl=True)


def test_format_by_extension_else_by_content(tmp_path: Path) -> None:
    assert is_jsonl(tmp_path / "a.jsonl", "mrm_record_id,label")
    assert not is_jsonl(tmp_path / "a.csv", "{")
    assert is_jsonl(tmp_path / "a.txt", '  {"label": 1}')
    assert not is_jsonl(tmp_path / "a", "label,subject_id")
    bom = tmp_path / "excel.csv"
    bom.write_bytes(b"\xef\xbb\xbfmrm_record_id,label\r\n" + ID.encode() + b",1\r\n")
    assert parse_file(bom).rows == [Row(2, "1", mrm_record_id=ID)]
    with pytest.raises(FileError, match="cannot read"):
        parse_file(tmp_path / "missing.csv")
    (tmp_path / "latin1.csv").write_bytes(b"mrm_record_id,label\n" + ID.encode() + b",\xe9\n")
    with pytest.raises(FileError, match="not UTF-8"):
        parse_file(tmp_path / "latin1.csv")


# Nothing listens here: a command that tried to reach the monitor would exit 3.
DEAD = "127.0.0.1:9"


def _upload(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(mrmctl, ["--monitor-addr", DEAD, "outcomes", "upload", *args])
    return result.exit_code, result.output


def test_upload_reports_unreadable_rows_before_sending_anything(tmp_path: Path) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_text(_csv("mrm_record_id,label,observed_at", f"{ID},1,", f"{ID},,", f"{ID},1,soon"))
    code, output = _upload(str(bad))
    assert code == 1, output
    assert output.splitlines() == [
        "recorded 0, duplicates 0, rejected 2",
        "line 3: label: is required",
        "line 4: observed_at: 'soon' is not an RFC 3339 time (e.g. 2026-05-01T12:00:00Z)",
        "nothing was recorded: 2 rows cannot be read; nothing was sent",
    ]


def test_upload_usage_errors(tmp_path: Path) -> None:
    code, output = _upload(str(tmp_path / "missing.csv"))
    assert code == 2
    assert "cannot read" in output
    header = tmp_path / "header.csv"
    header.write_text("record,label\n")
    code, output = _upload(str(header))
    assert code == 2
    assert "unknown column 'record'" in output
    # More than one request's worth (10,000) is not refused: it goes to the monitor.
    big = tmp_path / "big.csv"
    big.write_text(_csv("mrm_record_id,label", *[f"{ID},1"] * 10_001))
    code, output = _upload(str(big))
    assert code == 3, output
    assert "cannot reach the monitor" in output
