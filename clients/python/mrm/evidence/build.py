"""Build an evidence bundle through the public APIs: the ledger's queries and proofs
and the registry. Nothing here is trusted by the verifier; the bundle is checked
with the log's key before it is written."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from mrm.client.errors import NotFound
from mrm.client.ledger import LedgerClient, Record, kind_names
from mrm.client.registry import RegistryClient, role_name
from mrm.client.trust import TrustedCheckpoint
from mrm.evidence import derive, render
from mrm.evidence.bundle import (
    MANIFEST,
    MAX_RECORDS,
    MODEL_CARD,
    REPORT_HTML,
    REPORT_PDF,
    SUMMARY,
    consistency_path,
    dump_json,
    note_path,
    proof_path,
    record_path,
    write_bundle,
)
from mrm.evidence.verify import verify_bundle
from mrm.tlog.canonical import parse_json_object
from mrm.tlog.leaf import format_timestamp, leaf_bytes_from_proto
from mrm.tlog.merkle import leaf_hash
from mrm.tlog.proofs import ConsistencyProof, InclusionProof

_PROOF_BATCH = 256


class EvidenceError(Exception):
    """The bundle cannot be built; `exit_code` says whose fault (2 input, 1 a check)."""

    def __init__(self, message: str, exit_code: int = 2) -> None:
        super().__init__(message)
        self.exit_code = exit_code


@dataclass(frozen=True)
class Built:
    path: str
    records: int
    checkpoints: int
    tree_size: int
    origin: str


def _micros(when: datetime) -> int:
    """Microseconds since the epoch; a naive time is UTC, as in the ledger's queries."""
    aware = when if when.tzinfo is not None else when.replace(tzinfo=UTC)
    return (aware - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(microseconds=1)


def _check_scope(registry: RegistryClient, model: str, version: str | None) -> None:
    try:
        registry.get_model(model)
        if version:
            registry.get_version(model, version)
    except NotFound as e:
        raise EvidenceError(f"{e.summary()} (see `mrmctl models list`)") from None


def _records(
    ledger: LedgerClient, scope: derive.Scope, since: datetime | None, size: int
) -> list[Record]:
    """Every record of the model (and version) the checkpoint covers; decisions since `since`."""
    out: dict[int, Record] = {}
    for kind in kind_names():
        q = ledger.query(
            kind=kind,
            model_name=scope.model,
            model_version=scope.version or "",
            since=since if kind in derive.DECISION_KINDS else None,
            page_size=1000,
        )
        for rec in q:
            if rec.leaf_index < size:
                out[int(rec.leaf_index)] = rec
            if len(out) > MAX_RECORDS:
                raise EvidenceError(
                    f"{scope.model} has more than {MAX_RECORDS} records"
                    + (f" since {scope.since}" if scope.since else "")
                    + ", more than one bundle may hold; narrow the decisions with --since "
                    "(or --version)"
                )
    return [out[i] for i in sorted(out)]


def _inclusion(
    ledger: LedgerClient, records: list[Record], cp: TrustedCheckpoint
) -> dict[str, bytes]:
    files: dict[str, bytes] = {}
    for start in range(0, len(records), _PROOF_BATCH):
        batch = records[start : start + _PROOF_BATCH]
        futures = [ledger.inclusion_proof_future(int(r.leaf_index), cp.size) for r in batch]
        for rec, future in zip(batch, futures, strict=True):
            got = future.result()
            data = leaf_bytes_from_proto(rec)
            if leaf_hash(data) != rec.leaf_hash or got.leaf_hash != rec.leaf_hash:
                raise EvidenceError(
                    f"the ledger's record {rec.record_id} (leaf {rec.leaf_index}) does not hash "
                    "to its leaf; run `mrmctl ledger verify`",
                    exit_code=1,
                )
            proof = InclusionProof(
                origin=cp.origin,
                leaf_index=int(rec.leaf_index),
                tree_size=cp.size,
                leaf_hash=bytes(got.leaf_hash),
                inclusion_path=tuple(bytes(h) for h in got.inclusion_path),
                root_hash=cp.root_hash,
                checkpoint=cp.note,
            )
            files[record_path(int(rec.leaf_index))] = data
            files[proof_path(int(rec.leaf_index))] = dump_json(proof.to_json())
    return files


def _checkpoints(
    ledger: LedgerClient, leaves: Iterable[int], cp: TrustedCheckpoint
) -> dict[str, bytes]:
    """The newest checkpoint, and for each record the first signed checkpoint that covered
    it, with a consistency proof from that one to the newest."""
    notes: dict[int, str] = {}
    for c in ledger.list_checkpoints():
        notes.setdefault(int(c.tree_size), c.note)
    sizes = sorted(s for s in notes if 0 < s < cp.size)
    wanted: set[int] = set()
    for index in leaves:
        first = next((s for s in sizes if s > index), None)
        if first is not None:
            wanted.add(first)
    files = {note_path(cp.size): cp.note.encode()}
    for size in sorted(wanted):
        got = ledger.consistency_proof(size, cp.size)
        proof = ConsistencyProof(
            origin=cp.origin,
            old_size=size,
            new_size=cp.size,
            old_root=bytes(got.old_root),
            new_root=cp.root_hash,
            consistency_path=tuple(bytes(h) for h in got.consistency_path),
            old_checkpoint=notes[size],
            new_checkpoint=cp.note,
        )
        files[note_path(size)] = notes[size].encode()
        files[consistency_path(size)] = dump_json(proof.to_json())
    return files


def _check_artifacts(registry: RegistryClient, model: str, leaves: list[derive.Leaf]) -> None:
    """The registry must still serve the artifacts MODEL_INGESTED recorded."""
    for r in leaves:
        if r.kind != "MODEL_INGESTED":
            continue
        recorded = r.body.get("artifacts") or {}
        version = registry.get_version(model, str(r.data["model_version"]))
        served = {role_name(a.role): a.sha256 for a in version.artifacts}
        if served != recorded:
            raise EvidenceError(
                f"{model} {r.data['model_version']}: the registry's artifacts {served} are not "
                f"the ones MODEL_INGESTED {r.data['record_id']} recorded {recorded}",
                exit_code=1,
            )


def build_bundle(
    ledger: LedgerClient,
    registry: RegistryClient,
    cp: TrustedCheckpoint,
    out: str,
    *,
    model: str,
    version: str | None = None,
    since: datetime | None = None,
    progress: Callable[[str], None] = lambda _line: None,
) -> Built:
    """Write the bundle to `out` (atomically) and check it with the log's key first."""
    _check_scope(registry, model, version)
    scope = derive.Scope(
        model, version, None if since is None else format_timestamp(_micros(since))
    )
    records = _records(ledger, scope, since, cp.size)
    progress(f"{len(records)} records of {model} in tree size {cp.size}")
    files = _inclusion(ledger, records, cp)
    files |= _checkpoints(ledger, (int(r.leaf_index) for r in records), cp)
    leaves = [
        derive.Leaf(int(r.leaf_index), parse_json_object(files[record_path(int(r.leaf_index))]))
        for r in records
    ]
    _check_artifacts(registry, model, leaves)
    log = derive.LogState(cp.origin, cp.size, cp.root_hash.hex())
    card, summ = derive.model_card(scope, log, leaves), derive.summary(scope, log, leaves)
    report = render.build_report(card, summ)
    files[MODEL_CARD], files[SUMMARY] = dump_json(card), dump_json(summ)
    files[REPORT_HTML], files[REPORT_PDF] = render.render_html(report), render.render_pdf(report)
    files[MANIFEST] = derive.manifest(scope, log, note_path(cp.size), render.renderer(), files)
    directory = os.path.dirname(os.path.abspath(out))
    fd, tmp = tempfile.mkstemp(prefix=".evidence-", suffix=".zip", dir=directory)
    os.close(fd)
    try:
        write_bundle(tmp, files)
        verdict = verify_bundle(tmp, [cp.verifier])
        if not verdict.valid:
            first = verdict.problems[0]
            raise EvidenceError(
                f"the bundle does not verify ({first.file}: {first.reason}); not written",
                exit_code=1,
            )
        os.replace(tmp, out)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    n_checkpoints = sum(1 for name in files if name.endswith(".note"))
    return Built(out, len(records), n_checkpoints, cp.size, cp.origin)
