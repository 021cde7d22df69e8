"""Ground truth joined to recorded decisions: OUTCOME records (mrm.v1.OutcomeService).

Each outcome names its decision by PREDICTION record id, or by the raw subject
id, hashed here with the proxy's subject key (`mrm.kernel.subjects`, as
`mrm explain` ListDecisions does) and matched against the stored reference.
Its label must be one of the model version's classes, as recorded with the
version at deploy (the performance snapshot in the version's facts).

An OUTCOME's record id is derived from its decision's (mrm.monitor.ids), so a
decision has at most one outcome: the same label again is a duplicate and
appends nothing, another label is rejected. Every outcome is checked before
anything is appended; the accepted ones are appended on behalf of the caller
in one ledger batch, atomically, up to the ledger's 4096 records per call. A
larger request goes in several batches: should the ledger fail between them,
the earlier ones stay recorded and sending the request again completes it.
A request with `validate_only` is checked the same way and appends nothing,
so a client can check a file of any size before recording any of it.

Clock skew: a decision is the one recorded at or before `decided_at` plus a
minute, and an observation may precede the decision's ledger time by up to a
minute (the proxy ships its records after it answers).
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import orjson
from google.protobuf.timestamp_pb2 import Timestamp

from mrm.client.errors import AlreadyExists as ClientAlreadyExists
from mrm.client.errors import MrmRpcError
from mrm.client.errors import NotFound as ClientNotFound
from mrm.client.ledger import LedgerClient, new_record
from mrm.client.registry import RegistryClient
from mrm.client.timestamps import timestamp
from mrm.core.errors import AlreadyExists, InvalidArguments, Unavailable
from mrm.drift.profile import category
from mrm.kernel.subjects import SubjectHasher
from mrm.monitor.ids import derived_uuid7
from mrm.tlog.leaf import format_timestamp
from mrm.v1 import ledger_pb2

MAX_OUTCOMES = 10_000
MAX_SOURCE = 200
MAX_LABEL = 200
MAX_SUBJECT = 1024
MAX_LISTED = 25
"""Violations sent back with INVALID_ARGUMENT: a status travels in gRPC trailers,
which peers refuse beyond a few kilobytes."""
SKEW = timedelta(minutes=1)
LEDGER_BATCH = 4096
"""The most records the ledger appends in one call (AppendRecordsRequest)."""
_LOOKUPS = 16  # concurrent ledger reads while resolving a request's decisions

Authorize = Callable[[Iterable[str]], str]
"""Checks the caller may change every model named; returns the actor to record."""


@dataclass(frozen=True)
class OutcomeIn:
    """One outcome as asked (times already converted; unset is None)."""

    mrm_record_id: str = ""
    subject_id: str = ""
    decided_at: datetime | None = None
    label: str = ""
    observed_at: datetime | None = None
    line: int = 0


@dataclass(frozen=True)
class Problem:
    """A rejected outcome: its index in the request, its file line, the field at fault."""

    index: int
    line: int
    field: str
    message: str

    def violation(self) -> tuple[str, str]:
        """As a google.rpc.BadRequest field violation."""
        where = f"line {self.line}: " if self.line else ""
        return f"outcomes[{self.index}].{self.field}", where + self.message


@dataclass
class Recorded:
    recorded: int = 0
    duplicates: int = 0
    problems: list[Problem] = field(default_factory=list)
    record_ids: list[str] = field(default_factory=list)


class _Bad(Exception):
    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field
        self.message = message


@dataclass(frozen=True)
class _Plan:
    """A valid outcome, resolved: its OUTCOME record, or the one already recorded."""

    decision_id: str
    model: str
    record: ledger_pb2.Record
    duplicate: bool


def _when(ts: Timestamp) -> datetime:
    return ts.ToDatetime(tzinfo=UTC)


def _rfc3339(moment: datetime) -> str:
    delta = moment - datetime(1970, 1, 1, tzinfo=UTC)
    return format_timestamp(delta // timedelta(microseconds=1))


class Outcomes:
    """Records outcomes through the monitor's own ledger and registry clients."""

    def __init__(
        self,
        ledger: LedgerClient,
        registry: RegistryClient,
        subjects: SubjectHasher,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.ledger = ledger
        self.registry = registry
        self.subjects = subjects
        self.now = now
        self._known: dict[tuple[str, str], tuple[str, list[str] | None]] = {}
        """A version's (task, classes): fixed when it is registered, so kept."""

    def record(
        self,
        outcomes: Sequence[OutcomeIn],
        *,
        source: str,
        skip_bad: bool,
        authorize: Authorize,
        validate_only: bool = False,
    ) -> Recorded:
        """Validate and resolve every outcome, then append the new ones (see `_append`).

        PERMISSION_DENIED (from `authorize`) unless the caller may change every
        model the resolved outcomes are about; INVALID_ARGUMENT naming each bad
        outcome, and nothing recorded, when one is bad and `skip_bad` is not set.
        With `validate_only` nothing is appended and every bad outcome is in
        `problems` (as with `skip_bad`); the counts and ids are what the good
        outcomes would be.
        """
        now = self.now()
        try:
            with ThreadPoolExecutor(_LOOKUPS) as pool:
                plans = list(pool.map(lambda o: self._plan(o, now, source), outcomes))
        except MrmRpcError as e:
            raise Unavailable(f"the ledger or registry did not answer: {e.summary()}") from None
        out = Recorded()
        first: dict[str, int] = {}
        accepted: list[tuple[int, _Plan]] = []
        for i, (o, plan) in enumerate(zip(outcomes, plans, strict=True)):
            if isinstance(plan, _Bad):
                out.problems.append(Problem(i, o.line, plan.field, plan.message))
            elif (j := first.setdefault(plan.decision_id, i)) != i:
                again = f"line {outcomes[j].line}" if outcomes[j].line else f"outcomes[{j}]"
                msg = (
                    f"decision {plan.decision_id} already has an outcome in this request ({again})"
                )
                out.problems.append(Problem(i, o.line, _key_field(o), msg))
            else:
                accepted.append((i, plan))
        actor = authorize(sorted({p.model for _, p in accepted}))
        if out.problems and not (skip_bad or validate_only):
            raise _invalid(out.problems, len(outcomes))
        new = [p.record for _, p in accepted if not p.duplicate]
        already = set[str]() if validate_only else self._append(new, actor)
        for _, plan in accepted:
            out.record_ids.append(plan.record.record_id)
            if plan.duplicate or plan.record.record_id in already:
                out.duplicates += 1
            else:
                out.recorded += 1
        return out

    def _append(self, records: list[ledger_pb2.Record], actor: str) -> set[str]:
        """One ledger batch (atomic) up to LEDGER_BATCH records; a larger request in
        batches of that size, where a failure leaves the earlier batches recorded and
        sending the request again completes it (they are then duplicates).

        Returns the ids the ledger already held, identically: a concurrent request
        recorded them first."""
        done, already = 0, set[str]()
        try:
            for start in range(0, len(records), LEDGER_BATCH):
                batch = records[start : start + LEDGER_BATCH]
                results = self.ledger.append(batch, on_behalf_of=actor)
                already.update(r.record_id for r in results if r.duplicate)
                done += len(batch)
        except ClientAlreadyExists:
            raise AlreadyExists(
                "another outcome for one of these decisions was recorded meanwhile; "
                f"{_kept(done)} (send the request again)"
            ) from None
        except MrmRpcError as e:
            raise Unavailable(
                f"the ledger did not record the outcomes: {e.summary()}; {_kept(done)} "
                "(send the request again)"
            ) from None
        return already

    def _plan(self, o: OutcomeIn, now: datetime, source: str) -> _Plan | _Bad:
        try:
            _check(o)
            decision = self._decision(o)
            label = self._label(decision, o.label)
            observed = o.observed_at or now
            decided = _when(decision.recorded_at)
            if observed > now + SKEW:
                raise _Bad("observed_at", f"{_rfc3339(observed)} is in the future")
            if observed < decided - SKEW:
                raise _Bad(
                    "observed_at",
                    f"{_rfc3339(observed)} is before the decision (recorded {_rfc3339(decided)})",
                )
            return self._outcome(decision, label, observed, source)
        except _Bad as bad:
            return bad

    def _decision(self, o: OutcomeIn) -> ledger_pb2.Record:
        if o.mrm_record_id:
            try:
                rec = self.ledger.get_record(o.mrm_record_id)
            except ClientNotFound:
                raise _Bad("mrm_record_id", f"no record has id {o.mrm_record_id}") from None
            if rec.kind != ledger_pb2.RECORD_KIND_PREDICTION:
                kind = ledger_pb2.RecordKind.Name(rec.kind).removeprefix("RECORD_KIND_")
                raise _Bad(
                    "mrm_record_id", f"record {o.mrm_record_id} is a {kind}, not a PREDICTION"
                )
            return rec
        req = ledger_pb2.QueryRecordsRequest(
            kind=ledger_pb2.RECORD_KIND_PREDICTION,
            subject=self.subjects.subject_ref(o.subject_id),
            newest_first=True,
            page_size=1,
        )
        if o.decided_at is not None:
            req.end_time.CopyFrom(timestamp(o.decided_at + SKEW))
        page = self.ledger.query_page(req).records
        if not page:
            when = "" if o.decided_at is None else f" at or before {_rfc3339(o.decided_at)}"
            raise _Bad(
                "subject_id",
                f"no decision about this subject is recorded{when} (it must be the "
                "subject_id sent to the inference proxy)",
            )
        return page[0]

    def _label(self, decision: ledger_pb2.Record, label: str) -> str:
        """The label as the model spells it; _Bad when the model cannot produce it."""
        task, classes = self._classes(decision.model_name, decision.model_version)
        model = f"{decision.model_name} {decision.model_version}"
        if task == "regression":
            try:
                if math.isfinite(float(label)):
                    return label
            except ValueError:
                pass
            raise _Bad("label", f"{label!r} is not a number (model {model} is a regressor)")
        if classes is None or label in classes:
            return label  # a version deployed without its classes recorded: not checkable
        shown = ", ".join(classes[:20]) + (", …" if len(classes) > 20 else "")
        raise _Bad("label", f"{label!r} is not one of the classes of model {model}: {shown}")

    def _classes(self, model: str, version: str) -> tuple[str, list[str] | None]:
        """(task, classes spelled as strings) from the version's recorded performance."""
        if (known := self._known.get((model, version))) is not None:
            return known
        try:
            facts = orjson.loads(self.registry.get_version(model, version).facts_json or "{}")
        except (ClientNotFound, orjson.JSONDecodeError):
            return "", None
        self._known[model, version] = known = _task_and_classes(facts)
        return known

    def _outcome(
        self, decision: ledger_pb2.Record, label: str, observed: datetime, source: str
    ) -> _Plan:
        decided_us = decision.recorded_at.seconds * 1_000_000 + decision.recorded_at.nanos // 1000
        outcome_id = derived_uuid7(decided_us // 1000, "OUTCOME", decision.record_id)
        try:
            existing = self.ledger.get_record(outcome_id)
        except ClientNotFound:
            existing = None
        if existing is not None:
            before = str(orjson.loads(existing.body_json).get("label"))
            if before != label:
                raise _Bad(
                    "label",
                    f"decision {decision.record_id} already has the outcome {before!r} "
                    f"(record {outcome_id}); a different label is not recorded",
                )
            return _Plan(decision.record_id, decision.model_name, existing, duplicate=True)
        body = {
            "decision_record_id": decision.record_id,
            "label": label,
            "observed_at": _rfc3339(observed),
            "decided_at": format_timestamp(decided_us),
            "source": source,
            "model_name": decision.model_name,
            "model_version": decision.model_version,
        }
        record = new_record(
            "OUTCOME",
            body,
            record_id=outcome_id,
            model_name=decision.model_name,
            model_version=decision.model_version,
            subject=decision.subject,
        )
        return _Plan(decision.record_id, decision.model_name, record, duplicate=False)


def _task_and_classes(facts: object) -> tuple[str, list[str] | None]:
    """(task, classes spelled as strings) from a version's facts (its performance)."""
    perf = facts.get("performance") if isinstance(facts, dict) else None
    if not isinstance(perf, dict):
        return "", None
    classes = perf.get("classes")
    spelled = [category(c) for c in classes] if isinstance(classes, list) else None
    return str(perf.get("task", "")), spelled


def _kept(done: int) -> str:
    if not done:
        return "nothing of this request was recorded"
    return f"the first {done} new outcomes were recorded"


def _key_field(o: OutcomeIn) -> str:
    return "mrm_record_id" if o.mrm_record_id else "subject_id"


def _check(o: OutcomeIn) -> None:
    """The outcome's own fields, before anything is looked up."""
    if o.mrm_record_id and o.subject_id:
        raise _Bad("subject_id", "set mrm_record_id or subject_id, not both")
    if o.mrm_record_id:
        try:
            if str(uuid.UUID(o.mrm_record_id)) != o.mrm_record_id:
                raise ValueError
        except ValueError:
            raise _Bad(
                "mrm_record_id", f"{o.mrm_record_id[:60]!r} is not a record id (a UUID)"
            ) from None
        if o.decided_at is not None:
            raise _Bad("decided_at", "goes with subject_id, not with mrm_record_id")
    elif not o.subject_id:
        raise _Bad("mrm_record_id", "is required (or subject_id, with decided_at)")
    elif len(o.subject_id) > MAX_SUBJECT:
        raise _Bad("subject_id", f"is {len(o.subject_id)} characters (at most {MAX_SUBJECT})")
    if not o.label:
        raise _Bad("label", "is required")
    if len(o.label) > MAX_LABEL or not o.label.isprintable():
        raise _Bad("label", f"is not a label (printable, at most {MAX_LABEL} characters)")


def _invalid(problems: Sequence[Problem], total: int) -> InvalidArguments:
    n = len(problems)
    listed = "" if n <= MAX_LISTED else f" (the first {MAX_LISTED} are listed)"
    return InvalidArguments(
        f"{n} of {total} outcomes are invalid{listed}; nothing was recorded",
        [p.violation() for p in problems[:MAX_LISTED]],
    )
