"""Check an evidence bundle offline: no server, no network, no MRM database.

The trust argument (docs/evidence.md says it at length): the only thing
trusted is the log's verifier key. The newest checkpoint is a note signed by
it; every record file is leaf bytes whose hash an inclusion proof places in
that checkpoint's tree; every older checkpoint is signed too and a
consistency proof shows the newest tree extends it. Everything else (the
model card, the summaries, the HTML, the PDF, the manifest) is recomputed
here from those records and must equal the bundle's bytes. The exporter is
trusted with nothing, except that it may have left records out; the
cross-references the records make to each other are checked for that.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from mrm.evidence import derive, render
from mrm.evidence.bundle import (
    DERIVED,
    FORMAT,
    MANIFEST,
    MODEL_CARD,
    REPORT_HTML,
    REPORT_PDF,
    SUMMARY,
    BundleUnreadable,
    classify,
    consistency_path,
    dump_json,
    note_path,
    proof_path,
    read_bundle,
    record_path,
)
from mrm.tlog.canonical import CanonicalJSONError, canonical_json, parse_json_object
from mrm.tlog.checkpoint import Checkpoint, CheckpointError, parse_checkpoint
from mrm.tlog.merkle import ProofError, leaf_hash
from mrm.tlog.note import NoteError, Verifier, open_note
from mrm.tlog.proofs import ConsistencyProof, InclusionProof, ProofFileError, verify_proof

_LEAF_KEYS = frozenset(
    {"actor", "body", "kind", "model_name", "model_version", "record_id", "recorded_at"}
    | {"span_id", "subject", "trace_id", "v"}
)


@dataclass(frozen=True)
class Problem:
    file: str
    reason: str


@dataclass
class Verdict:
    bundle: str
    origin: str = ""
    tree_size: int | None = None
    records: int = 0
    checkpoints: int = 0
    problems: list[Problem] = field(default_factory=list)

    @property
    def valid(self) -> bool:
        return not self.problems

    def fail(self, file: str, reason: str) -> None:
        self.problems.append(Problem(file, reason))

    def to_json(self) -> dict[str, Any]:
        return {
            "bundle": self.bundle,
            "valid": self.valid,
            "origin": self.origin,
            "tree_size": self.tree_size,
            "records": self.records,
            "checkpoints": self.checkpoints,
            "problems": [{"file": p.file, "reason": p.reason} for p in self.problems],
        }


_ERRORS = (ProofFileError, ProofError, NoteError, CheckpointError, CanonicalJSONError)


def _json(data: bytes) -> dict[str, object]:
    """A bundle JSON document, which must be exactly in the bundle's serialization."""
    value = parse_json_object(data)
    if dump_json(value) != data:
        raise CanonicalJSONError("not in the bundle's exact serialization (bytes were altered)")
    return value


class _Checker:
    def __init__(self, files: dict[str, bytes], verifiers: Sequence[Verifier], v: Verdict) -> None:
        self.files, self.verifiers, self.v = files, verifiers, v
        self.used: set[str] = set()

    def take(self, name: str) -> bytes | None:
        self.used.add(name)
        data = self.files.get(name)
        if data is None:
            self.v.fail(name, "missing from the bundle")
        return data

    def checkpoints(self) -> tuple[str, Checkpoint] | None:
        """Verify every note; return the newest (its text and body), or None."""
        opened: dict[int, tuple[str, Checkpoint]] = {}
        for name in sorted(self.files):
            what = classify(name)
            if what is None or what[0] != "note":
                continue
            # Its consistency proof is accounted for even when the note fails.
            self.used.update((name, consistency_path(what[1])))
            try:
                text = self.files[name].decode("utf-8")
                cp = parse_checkpoint(open_note(text, self.verifiers).text)
            except UnicodeDecodeError:
                self.v.fail(name, "not UTF-8 text, so not a signed note")
                continue
            except (NoteError, CheckpointError) as e:
                self.v.fail(name, f"signed checkpoint rejected: {e}")
                continue
            if cp.size != what[1]:
                self.v.fail(name, f"holds a checkpoint of tree size {cp.size}, not {what[1]}")
                continue
            opened[cp.size] = (text, cp)
        if not opened:
            self.v.fail("checkpoints/", "no checkpoint signed by the given key")
            return None
        newest_text, newest = opened[max(opened)]
        self.v.origin, self.v.tree_size, self.v.checkpoints = (
            newest.origin,
            newest.size,
            len(opened),
        )
        for size, (text, cp) in sorted(opened.items()):
            if cp.origin != newest.origin:
                self.v.fail(note_path(size), f"is for log {cp.origin!r}, not {newest.origin!r}")
            elif size != newest.size:
                self._consistency(size, text, newest_text, newest)
        return newest_text, newest

    def _consistency(self, size: int, text: str, newest_text: str, newest: Checkpoint) -> None:
        name = consistency_path(size)
        data = self.take(name)
        if data is None:
            return
        try:
            proof = ConsistencyProof.from_json(_json(data))
            if (proof.old_size, proof.new_size) != (size, newest.size):
                raise ProofError(
                    f"is from {proof.old_size} to {proof.new_size}, not {size} to {newest.size}"
                )
            if proof.old_checkpoint != text or proof.new_checkpoint != newest_text:
                raise ProofError("its checkpoints are not the bundle's signed checkpoints")
            verify_proof(proof, self.verifiers)
        except _ERRORS as e:
            self.v.fail(
                name,
                f"checkpoint of size {size} is not consistent with the newest ({newest.size}): "
                f"{e} (a forked or rolled-back log, or an altered proof)",
            )

    def records(self, newest_text: str, newest: Checkpoint) -> list[derive.Leaf]:
        leaves = []
        for name in sorted(self.files):
            what = classify(name)
            if what is None or what[0] != "record":
                continue
            self.used.add(name)
            leaf = self._record(name, what[1], newest_text, newest)
            if leaf is not None:
                leaves.append(leaf)
        self.v.records = len(leaves)
        return leaves

    def _record(
        self, name: str, index: int, newest_text: str, newest: Checkpoint
    ) -> derive.Leaf | None:
        data = self.files[name]
        pname = proof_path(index)
        pdata = self.take(pname)
        if pdata is None:
            return None
        try:
            proof = InclusionProof.from_json(_json(pdata))
            if proof.leaf_index != index:
                raise ProofError(f"is for leaf {proof.leaf_index}, not {index}")
            if proof.tree_size != newest.size or proof.checkpoint != newest_text:
                raise ProofError("is not against the bundle's newest signed checkpoint")
            verify_proof(proof, self.verifiers)
        except _ERRORS as e:
            self.v.fail(pname, f"inclusion proof of {name} failed: {e}")
            return None
        got = leaf_hash(data)
        if got != proof.leaf_hash:
            self.v.fail(
                name,
                f"its leaf hash {got.hex()} is not the one the signed tree holds at leaf "
                f"{index} ({proof.leaf_hash.hex()}): the record was altered",
            )
            return None
        try:
            value = parse_json_object(data)
            if canonical_json(value) != data:
                raise CanonicalJSONError("not canonical JSON")
        except CanonicalJSONError as e:
            self.v.fail(name, f"in the log, but not a readable record: {e}")
            return None
        if set(value) != _LEAF_KEYS or value.get("v") != 1:
            self.v.fail(name, "in the log, but not a version-1 record envelope")
            return None
        return derive.Leaf(index, value)

    def scope(self, manifest: dict[str, object], leaves: list[derive.Leaf]) -> derive.Scope | None:
        scope = manifest.get("scope")
        if not isinstance(scope, dict):
            self.v.fail(MANIFEST, "has no scope object")
            return None
        model, version, since = scope.get("model"), scope.get("version"), scope.get("since")
        if not isinstance(model, str) or not model:
            self.v.fail(MANIFEST, "scope.model is not a model name")
            return None
        if not (version is None or isinstance(version, str)):
            self.v.fail(MANIFEST, "scope.version is not a version or null")
            return None
        if not (since is None or isinstance(since, str)):
            self.v.fail(MANIFEST, "scope.since is not a time or null")
            return None
        for r in leaves:
            if r.data["model_name"] != model or (version and r.data["model_version"] != version):
                self.v.fail(
                    record_path(r.leaf_index),
                    f"is about {r.data['model_name']} {r.data['model_version']}, outside the "
                    f"bundle's scope ({model} {version or 'all versions'})",
                )
            elif since and r.kind in derive.DECISION_KINDS and str(r.data["recorded_at"]) < since:
                self.v.fail(record_path(r.leaf_index), f"was recorded before --since {since}")
        return derive.Scope(model, version, since)

    def derived(self, scope: derive.Scope, log: derive.LogState, leaves: list[derive.Leaf]) -> None:
        card = derive.model_card(scope, log, leaves)
        summ = derive.summary(scope, log, leaves)
        report = render.build_report(card, summ)
        expected = {
            MODEL_CARD: lambda: dump_json(card),
            SUMMARY: lambda: dump_json(summ),
            REPORT_HTML: lambda: render.render_html(report),
            REPORT_PDF: lambda: render.render_pdf(report),
        }
        for name in DERIVED:
            data = self.take(name)
            if data is not None and data != expected[name]():
                self.v.fail(
                    name,
                    "differs from what the verified records give (the document was altered, "
                    "or made from records not in the bundle)",
                )

    def other_renderer(self, claimed: object) -> bool:
        """Whether the bundle was derived by another layout or PDF library than this
        verifier's: then its documents cannot be re-derived here, and each says so."""
        mine = render.renderer()
        if claimed == mine:
            return False
        for name in DERIVED:
            if self.take(name) is not None:
                self.v.fail(
                    name,
                    f"cannot be re-derived here: made by {_spell(claimed)}, this verifier has "
                    f"{_spell(mine)}; check it with the mrmctl release that made it (records, "
                    "proofs and checkpoints are checked regardless)",
                )
        return True

    def manifest(
        self,
        manifest_bytes: bytes,
        scope: derive.Scope,
        log: derive.LogState,
        newest: int,
        renderer: dict[str, str],
    ) -> None:
        claimed = parse_json_object(manifest_bytes)
        listed = claimed.get("files") if isinstance(claimed.get("files"), dict) else {}
        assert isinstance(listed, dict)
        for name in sorted(set(self.files) - {MANIFEST}):
            entry = derive.file_entry(self.files[name])
            if listed.get(name) != entry:
                self.v.fail(name, "its sha256 or size is not the one manifest.json lists")
        for name in sorted(set(listed) - set(self.files)):
            self.v.fail(name, "listed in manifest.json but missing from the bundle")
        expected = derive.manifest(scope, log, note_path(newest), renderer, self.files)
        if expected != manifest_bytes:
            self.v.fail(MANIFEST, _manifest_difference(claimed, parse_json_object(expected)))


def _spell(renderer: object) -> str:
    if not isinstance(renderer, dict):
        return "an unknown renderer"
    return ", ".join(f"{k} {v}" for k, v in sorted(renderer.items()))


def _manifest_difference(claimed: dict[str, object], expected: dict[str, object]) -> str:
    for key in sorted(set(claimed) | set(expected)):
        if claimed.get(key) != expected.get(key):
            return f"field {key!r} is not what the bundle's verified contents give"
    return "bytes differ from the manifest the bundle's verified contents give"


def verify_bundle(path: str, verifiers: Sequence[Verifier]) -> Verdict:
    """Check a bundle; raises BundleUnreadable when the input is not one at all."""
    contents = read_bundle(path)
    v = Verdict(path)
    for name, why in sorted(contents.unreadable.items()):
        v.fail(name, why)
    files = contents.files
    if MANIFEST not in files and MANIFEST not in contents.unreadable:
        raise BundleUnreadable(f"{path}: not an evidence bundle (no {MANIFEST})")
    checker = _Checker(files, verifiers, v)
    checker.used.update((MANIFEST, *DERIVED))
    manifest_bytes = files.get(MANIFEST)
    manifest: dict[str, object] = {}
    if manifest_bytes is not None:
        try:
            manifest = _json(manifest_bytes)
            if manifest.get("format") != FORMAT:
                v.fail(MANIFEST, f"format is {manifest.get('format')!r}, not {FORMAT!r}")
        except CanonicalJSONError as e:
            v.fail(MANIFEST, f"not readable: {e}")
            manifest_bytes = None
    newest = checker.checkpoints()
    if newest is None:
        return v
    newest_text, cp = newest
    leaves = checker.records(newest_text, cp)
    for r, missing in derive.missing_references(leaves):
        v.fail(record_path(r.leaf_index), f"names record {missing}, which the bundle leaves out")
    log = derive.LogState(cp.origin, cp.size, cp.root_hash.hex())
    if manifest_bytes is not None:
        scope = checker.scope(manifest, leaves)
        if scope is not None:
            claimed = manifest.get("renderer")
            if checker.other_renderer(claimed):
                # Not a dict: the manifest is then named as not what the contents give.
                renderer = (
                    {str(k): str(v) for k, v in claimed.items()}
                    if isinstance(claimed, dict)
                    else {}
                )
            else:
                checker.derived(scope, log, leaves)
                renderer = render.renderer()
            checker.manifest(manifest_bytes, scope, log, cp.size, renderer)
    for name in sorted(set(files) - checker.used):
        v.fail(name, "not a file an evidence bundle holds (unexpected)")
    return v
