"""Outcome files for `mrmctl outcomes upload`: CSV with a header row, or JSON Lines.

Columns (CSV) or keys (JSON Lines): `mrm_record_id`, or `subject_id` with an
optional `decided_at`; `label`; an optional `observed_at`. Times are RFC 3339
with their offset (`2026-05-01T12:00:00Z`). Every row keeps its line in the
file, so a problem found here or by the server names it.

A file that cannot be read as either format, or a header without the needed
columns, is a `FileError`; a bad row is a `RowProblem` and the rest are read.
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

COLUMNS = ("mrm_record_id", "subject_id", "decided_at", "label", "observed_at")


class FileError(ValueError):
    """The file as a whole cannot be read (exit 2)."""


@dataclass(frozen=True)
class Row:
    line: int
    label: str
    mrm_record_id: str = ""
    subject_id: str = ""
    decided_at: datetime | None = None
    observed_at: datetime | None = None


@dataclass(frozen=True)
class RowProblem:
    line: int
    field: str
    message: str

    def __str__(self) -> str:
        return f"line {self.line}: {self.field}: {self.message}"


@dataclass
class Parsed:
    rows: list[Row] = field(default_factory=list)
    problems: list[RowProblem] = field(default_factory=list)


class _Bad(Exception):
    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field
        self.message = message


def parse_time(text: str, name: str) -> datetime | None:
    """An RFC 3339 time; None for empty. `_Bad` for anything else, or a time without offset."""
    if not text:
        return None
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        moment = None
    if moment is None or moment.tzinfo is None or ("T" not in text and " " not in text):
        raise _Bad(name, f"{text[:60]!r} is not an RFC 3339 time (e.g. 2026-05-01T12:00:00Z)")
    return moment


def _label(value: object) -> str:
    if value is None:
        raise _Bad("label", "is required")
    if isinstance(value, bool):
        raise _Bad("label", f"must be a string or a number, not {str(value).lower()}")
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise _Bad("label", f"{value} is not a label")
        return str(int(value)) if value.is_integer() else repr(value)
    if not isinstance(value, str):
        raise _Bad("label", f"must be a string or a number, not {type(value).__name__}")
    if not value.strip():
        raise _Bad("label", "is required")
    return value.strip()


def _text(fields: Mapping[str, object], name: str) -> str:
    value = fields.get(name)
    if value is None:
        return ""
    if not isinstance(value, str):
        raise _Bad(name, f"must be a string, not {type(value).__name__}")
    return value.strip()


def row(line: int, fields: Mapping[str, object]) -> Row:
    """One row's fields (unknown ones refused by the callers); `_Bad` names the first fault."""
    record_id, subject = _text(fields, "mrm_record_id"), _text(fields, "subject_id")
    if record_id and subject:
        raise _Bad("subject_id", "set mrm_record_id or subject_id, not both")
    if not record_id and not subject:
        raise _Bad("mrm_record_id", "is empty (set mrm_record_id, or subject_id)")
    decided = parse_time(_text(fields, "decided_at"), "decided_at")
    if decided is not None and not subject:
        raise _Bad("decided_at", "goes with subject_id, not with mrm_record_id")
    label = _label(fields.get("label"))
    observed = parse_time(_text(fields, "observed_at"), "observed_at")
    return Row(line, label, record_id, subject, decided, observed)


def _unknown(names: list[str]) -> None:
    extra = [n for n in names if n not in COLUMNS]
    if extra:
        raise FileError(
            f"unknown column {extra[0]!r} (the columns are {', '.join(COLUMNS)})"
            if len(extra) == 1
            else f"unknown columns {', '.join(map(repr, extra))} (the columns are "
            f"{', '.join(COLUMNS)})"
        )


def _csv(text: str) -> Iterator[tuple[int, Mapping[str, object]]]:
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = next(reader, None)
    except csv.Error as e:
        raise FileError(f"line 1: not CSV ({e})") from None
    if not header:
        raise FileError("the file is empty (want a header row, then one outcome per row)")
    names = [h.strip() for h in header]
    _unknown(names)
    if "label" not in names:
        raise FileError("the header has no label column")
    if "mrm_record_id" not in names and "subject_id" not in names:
        raise FileError("the header needs an mrm_record_id or a subject_id column")
    if len(set(names)) != len(names):
        raise FileError("the header names a column twice")
    line = reader.line_num + 1
    while True:
        try:
            values = next(reader)
        except StopIteration:
            return
        except csv.Error as e:
            raise FileError(f"line {line}: not CSV ({e})") from None
        if values and any(v.strip() for v in values):
            if len(values) != len(names):
                yield line, {"": f"has {len(values)} fields, the header {len(names)}"}
            else:
                yield line, dict(zip(names, values, strict=True))
        line = reader.line_num + 1


def _jsonl(text: str) -> Iterator[tuple[int, Mapping[str, object]]]:
    for line, raw in enumerate(text.splitlines(), start=1):
        if not raw.strip():
            continue
        try:
            value = json.loads(raw)
        except json.JSONDecodeError as e:
            yield line, {"": f"is not JSON ({e.msg})"}
            continue
        if not isinstance(value, dict):
            yield line, {"": "is not a JSON object"}
            continue
        _unknown(list(value))
        yield line, value


def is_jsonl(path: Path, text: str) -> bool:
    """By extension (.jsonl, .ndjson, .json), else by a first `{`."""
    if path.suffix.lower() in (".jsonl", ".ndjson", ".json"):
        return True
    if path.suffix.lower() == ".csv":
        return False
    return text.lstrip().startswith("{")


def parse_text(text: str, *, jsonl: bool) -> Parsed:
    out = Parsed()
    for line, fields in (_jsonl if jsonl else _csv)(text):
        if "" in fields:  # the line itself is malformed
            out.problems.append(RowProblem(line, "line", str(fields[""])))
            continue
        try:
            out.rows.append(row(line, fields))
        except _Bad as bad:
            out.problems.append(RowProblem(line, bad.field, bad.message))
    if not out.rows and not out.problems:
        raise FileError("the file holds no outcomes")
    return out


def parse_file(path: Path) -> Parsed:
    """Read `path`; FileError when it cannot be read at all."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except OSError as e:
        raise FileError(f"cannot read {path}: {e.strerror or e}") from None
    except UnicodeDecodeError:
        raise FileError(f"{path} is not UTF-8 text") from None
    return parse_text(text, jsonl=is_jsonl(path, text))
