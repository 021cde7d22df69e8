"""Click parameter types whose errors name the flag and say what was expected."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import click

from mrm.client.ledger import kind_names
from mrm.kernel.ids import is_uuid7
from mrm.tlog.canonical import CanonicalJSONError, canonical_json, parse_json_object

_DATE_ONLY = re.compile(r"\d{4}-\d{2}-\d{2}")


class IsoTime(click.ParamType[datetime, Any]):
    """An ISO 8601 date or date-time; naive values are UTC.

    A bare date given as an upper bound means the end of that day, so
    `--since 2026-05-01 --until 2026-05-01` selects the whole day.
    """

    name = "DATE|DATETIME"

    def __init__(self, *, end_of_day: bool = False) -> None:
        self.end_of_day = end_of_day

    def convert(
        self, value: Any, param: click.Parameter | None, ctx: click.Context | None
    ) -> datetime:
        if isinstance(value, datetime):
            return value
        text = str(value).strip()
        try:
            if _DATE_ONLY.fullmatch(text):
                day = date.fromisoformat(text)
                moment = datetime(day.year, day.month, day.day, tzinfo=UTC)
                return moment + timedelta(days=1) if self.end_of_day else moment
            moment = datetime.fromisoformat(text)
        except ValueError:
            self.fail(
                f"{text!r} is not an ISO 8601 date or date-time "
                "(for example 2026-05-01 or 2026-05-01T13:30:00Z)",
                param,
                ctx,
            )
        if moment.tzinfo is None:
            return moment.replace(tzinfo=UTC)
        return moment.astimezone(UTC)


class JsonObject(click.ParamType[dict[str, object], Any]):
    """A JSON object given inline, or as @FILE to read it from a file."""

    name = "JSON|@FILE"

    def convert(
        self, value: Any, param: click.Parameter | None, ctx: click.Context | None
    ) -> dict[str, object]:
        if isinstance(value, dict):
            return value
        text = str(value)
        if text.startswith("@"):
            try:
                text = Path(text[1:]).read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError) as e:
                self.fail(
                    f"cannot read {text[1:]!r}: {getattr(e, 'strerror', None) or e}", param, ctx
                )
        try:
            body = parse_json_object(text)
            canonical_json(body)  # it must have a canonical form: no lone surrogates
            return body
        except CanonicalJSONError as e:
            self.fail(f"{e} (want a JSON object such as '{{\"score\": 0.7}}')", param, ctx)


class RecordId(click.ParamType[str, Any]):
    """A canonical lowercase UUIDv7, checked here so a typo never reaches the server."""

    name = "RECORD_ID"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> str:
        text = str(value).strip()
        if not is_uuid7(text):
            self.fail(
                f"{text!r} is not a UUIDv7 (want lowercase 8-4-4-4-12 hex with version 7, "
                "as printed by 'mrmctl ledger records')",
                param,
                ctx,
            )
        return text


def kind_choice() -> click.Choice[str]:
    return click.Choice(kind_names(), case_sensitive=False)
