"""The timeline: deploys, promotions, refusals, fairness checks, alerts and their
acknowledgements, newest first, paged.

Each kind is read with its own filtered query (newest first, one page), and the
pages are merged by leaf index. The page token is the position of the last
event shown (its time and leaf index): the next page asks every kind for records
up to that moment and skips what was already shown.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from itertools import islice

from mrm.client.ledger import Record, kind_value
from mrm.core.errors import InvalidArgument
from mrm.dashboard.sources import Sources, upstream
from mrm.dashboard.views import Actor, body_of, when
from mrm.tlog.leaf import kind_name

PAGE = 25
MAX_PAGE = 200
MAX_RANGE = timedelta(days=3660)
"""The widest since/until range a request may ask for (ten years)."""
_KINDS = ("MODEL_INGESTED", "DEPLOYMENT", "FAIRNESS_SNAPSHOT", "ALERT")


@dataclass(frozen=True)
class Event:
    record_id: str
    leaf_index: int
    at: str
    kind: str
    """"registered", "promoted", "refused", "fairness", "alert" or "acknowledged"."""
    model: str
    version: str
    what: str
    """One sentence for a person."""
    by: Actor
    attention: bool


@dataclass(frozen=True)
class Page:
    events: tuple[Event, ...]
    next_page_token: str


@dataclass(frozen=True)
class Cursor:
    """Where a page ended: events strictly older than (time, leaf) come next."""

    us: int
    leaf: int

    def token(self) -> str:
        raw = json.dumps({"us": self.us, "leaf": self.leaf}, separators=(",", ":"))
        return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")

    @classmethod
    def parse(cls, token: str) -> Cursor:
        bad = InvalidArgument("page_token", "is not a token this endpoint gave out")
        if len(token) > 200:
            raise bad
        try:
            doc = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
        except (ValueError, binascii.Error):
            raise bad from None
        if not isinstance(doc, dict) or set(doc) != {"us", "leaf"}:
            raise bad
        us, leaf = doc["us"], doc["leaf"]
        if not all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in (us, leaf)):
            raise bad
        if us > 253402300799_000_000:  # beyond year 9999
            raise bad
        return cls(us, leaf)


def parse_time(value: str, name: str) -> datetime:
    """An ISO 8601 moment ("2026-12-01", "2026-12-01T10:00:00Z"); naive means UTC."""
    if len(value) > 40 or not value.isprintable():
        raise InvalidArgument(name, "is not an ISO 8601 date or time")
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise InvalidArgument(
            name, f"{value!r} is not an ISO 8601 date or time (e.g. 2026-12-01T10:00:00Z)"
        ) from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def time_range(since: str, until: str, now: datetime) -> tuple[datetime | None, datetime | None]:
    """The since/until of a request, checked: not inverted, not wider than MAX_RANGE."""
    start = parse_time(since, "since") if since else None
    end = parse_time(until, "until") if until else None
    if start is not None and end is not None and start >= end:
        raise InvalidArgument("until", "must be later than since")
    if start is not None and (end or now) - start > MAX_RANGE:
        raise InvalidArgument(
            "since", f"asks for more than {MAX_RANGE.days} days; narrow the range"
        )
    return start, end


def page_size(value: str) -> int:
    if not value:
        return PAGE
    if not value.isdigit() or not 1 <= int(value) <= MAX_PAGE:
        raise InvalidArgument("page_size", f"must be a whole number from 1 to {MAX_PAGE}")
    return int(value)


def _event(record: Record) -> Event:
    body = body_of(record)
    identity = body.get("identity") if isinstance(body.get("identity"), dict) else {}
    if identity:
        by = Actor.from_identity(identity, str(body.get("actor") or record.actor))
    else:  # the ledger stamps `actor` from the principal it authenticated
        by = Actor(record.actor or "—", bool(record.actor), "authenticated by the ledger")
    kind = kind_name(record.kind)
    model, version = record.model_name, record.model_version
    attention = False
    if kind == "MODEL_INGESTED":
        what, label = f"{model} {version} was registered", "registered"
    elif kind == "DEPLOYMENT" and body.get("action") == "refused":
        reasons = body.get("reasons") or []
        said = "; ".join(str(r) for r in reasons[:3]) if isinstance(reasons, list) else ""
        what, label, attention = f"Deploy of {model} {version} refused: {said}", "refused", True
    elif kind == "DEPLOYMENT":
        stage = str(body.get("stage") or "")
        what = f"{model} {version} moved to {stage or 'a new stage'}"
        if body.get("demoted_version"):
            what += f" (replacing {body['demoted_version']})"
        if body.get("reason"):
            what += f": {body['reason']}"
        label = "promoted"
    elif kind == "FAIRNESS_SNAPSHOT":
        passed = body.get("passed")
        verdict = "passed" if passed is True else "failed" if passed is False else "recorded"
        what, label, attention = (
            f"Fairness check of {model} {version} {verdict}",
            "fairness",
            (passed is False),
        )
    elif body.get("state") == "acknowledged":
        note = str(body.get("note") or "")
        said = str(body.get("by") or record.actor)
        # The monitor records an acknowledgement on behalf of whom it verified.
        by = Actor(said, said == record.actor, f"recorded by {record.actor}")
        what = f"Alert on {model} acknowledged" + (f": {note}" if note else "")
        label = "acknowledged"
    else:
        what = str(body.get("summary") or f"Alert on {model} {version}")
        label, attention = "alert", True
    return Event(
        record.record_id,
        record.leaf_index,
        when(record.recorded_at),
        label,
        model,
        version,
        what,
        by,
        attention,
    )


def timeline(
    sources: Sources,
    *,
    model: str = "",
    since: datetime | None = None,
    until: datetime | None = None,
    cursor: Cursor | None = None,
    size: int = PAGE,
) -> Page:
    end = until
    if cursor is not None:
        moment = datetime.fromtimestamp(0, UTC) + timedelta(microseconds=cursor.us + 1)
        end = moment if end is None else min(end, moment)
    found: list[Record] = []
    for name in _KINDS:
        try:
            kind = kind_value(name)
        except ValueError:
            continue  # a kind this ledger does not have yet
        with upstream("ledger"):
            records = sources.ledger.query(
                kind=kind,
                model_name=model,
                since=since,
                until=end,
                newest_first=True,
                page_size=size + 1,
            )
            found.extend(
                islice(
                    (r for r in records if cursor is None or r.leaf_index < cursor.leaf),
                    size + 1,
                )
            )
    found.sort(key=lambda r: r.leaf_index, reverse=True)
    shown = found[:size]
    token = ""
    if len(found) > size and shown:
        last = shown[-1]
        token = Cursor(last.recorded_at.ToMicroseconds(), last.leaf_index).token()
    return Page(tuple(_event(r) for r in shown), token)
