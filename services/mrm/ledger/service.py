"""The ledger's domain core: append, read, prove. Transport-free."""

from __future__ import annotations

import base64
import hashlib
import logging
import threading
import uuid
from collections.abc import Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path

from mrm.core.errors import (
    FailedPrecondition,
    IntegrityError,
    InvalidArgument,
    NotFound,
    Unavailable,
)
from mrm.kernel.clock import now_us
from mrm.ledger import merkle
from mrm.ledger.batch import PendingBatch, Sequenced
from mrm.ledger.checkpoint import CheckpointSigner, load_or_create_key, new_origin
from mrm.ledger.reads import LedgerReader
from mrm.ledger.records import (
    Appended,
    NewRecord,
    RecordFilter,
    SignedCheckpoint,
    StoredRecord,
)
from mrm.ledger.store import LedgerStore
from mrm.ledger.writer import GroupCommitWriter

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class InclusionProof:
    leaf_index: int
    tree_size: int
    leaf_hash: bytes
    path: list[bytes]
    root_hash: bytes
    checkpoint: SignedCheckpoint | None
    record: StoredRecord


@dataclass(frozen=True)
class ConsistencyProof:
    old_size: int
    new_size: int
    old_root: bytes
    new_root: bytes
    path: list[bytes]


@dataclass(frozen=True)
class Page:
    records: list[StoredRecord]
    next_token: str


class Ledger:
    """One log: its records, its tree and its signed checkpoints."""

    def __init__(self, store: LedgerStore, signer: CheckpointSigner, checkpoint_every: int) -> None:
        self.store = store
        self.signer = signer
        self.checkpoint_every = checkpoint_every
        self._unsigned = 0  # leaves since the last signature (the writer's thread adds)
        self._unsigned_lock = threading.Lock()
        self._writer = GroupCommitWriter(store)
        self.integrity_failure: str | None = None
        """Set when the stored log failed a check: the ledger then serves reads only."""

    def close(self) -> None:
        """Finish queued appends and stop the writer thread."""
        self._writer.close()

    @property
    def origin(self) -> str:
        return self.signer.origin

    @property
    def verifier_key(self) -> str:
        return self.signer.verifier_key

    @classmethod
    def open(
        cls,
        store: LedgerStore,
        *,
        key_file: str,
        configured_origin: str | None,
        checkpoint_every: int,
    ) -> Ledger:
        """Load (or on first start create) the log's identity and sign its first checkpoint."""
        identity = store.identity()
        if identity is None:
            origin = configured_origin or new_origin()
            key = load_or_create_key(Path(key_file), origin)
            origin, vkey = store.create_identity(origin, key.vkey(), now_us())
        else:
            origin, vkey = identity
            if configured_origin and configured_origin != origin:
                raise FailedPrecondition(
                    f"MRM_LEDGER_ORIGIN is {configured_origin!r} but this database holds "
                    f"the log {origin!r}; unset it or point MRM_DATABASE_URL elsewhere"
                )
            key = load_or_create_key(Path(key_file), origin)
        if key.vkey() != vkey:
            raise FailedPrecondition(
                f"the ledger key in {key_file} ({key.vkey()}) is not the key of log "
                f"{origin!r} ({vkey}); configure MRM_LEDGER_KEY_FILE with the log's key"
            )
        ledger = cls(store, CheckpointSigner(store, key, origin), checkpoint_every)
        try:
            ledger.sign_checkpoint()
        except IntegrityError:
            # Start degraded rather than not at all: reads and `mrmctl ledger
            # verify` must still work to investigate. Appends are refused.
            log.critical("starting with a failed integrity check: %s", ledger.integrity_failure)
        return ledger

    # -- writes -----------------------------------------------------------------

    def submit(self, batch: PendingBatch) -> Future[Sequenced]:
        """Queue a stamped, hashed batch for the writer; the future says where it landed."""
        if self.integrity_failure is not None:
            raise Unavailable(
                "the ledger refuses appends until its integrity failure is resolved "
                f"({self.integrity_failure}); run `mrmctl ledger verify`"
            )
        future = self._writer.submit(batch)
        future.add_done_callback(self._count)
        return future

    def append(self, records: Sequence[NewRecord], actor: str) -> list[Appended]:
        """Append one batch of in-process records, stamped now, and wait for it (blocking)."""
        batch = PendingBatch.from_records(records, actor, now_us(), self.store.encode_rows)
        return self.submit(batch).result().appended()

    def _count(self, future: Future[Sequenced]) -> None:
        # A cancelled caller's future has no exception() to ask (it raises).
        if not future.cancelled() and future.exception() is None:
            with self._unsigned_lock:
                self._unsigned += future.result().added

    def checkpoint_due(self) -> bool:
        """Whether enough leaves arrived since the last signature to sign now."""
        return self._unsigned >= self.checkpoint_every

    def sign_checkpoint(self) -> SignedCheckpoint:
        """Sign now; an integrity failure is remembered and turns the ledger read-only."""
        with self._unsigned_lock:
            self._unsigned = 0
        try:
            return self.signer.sign()
        except IntegrityError as exc:
            self.integrity_failure = exc.message
            raise

    # -- reads ------------------------------------------------------------------

    def get(self, record_id: uuid.UUID) -> StoredRecord:
        with self.store.reading() as r:
            return _found(r.get(record_id), record_id)

    def query(
        self, flt: RecordFilter, *, page_token: str, page_size: int, newest_first: bool
    ) -> Page:
        after = _decode_token(page_token, flt, newest_first)
        with self.store.reading() as r:
            records = r.query(flt, after=after, limit=page_size + 1, newest_first=newest_first)
        more = len(records) > page_size
        records = records[:page_size]
        token = _encode_token(records[-1].leaf_index, flt, newest_first) if more else ""
        return Page(records, token)

    def latest_checkpoint(self, *, refresh: bool) -> SignedCheckpoint:
        if refresh:
            return self.sign_checkpoint()
        with self.store.reading() as r:
            cp = r.latest_checkpoint()
        return cp if cp is not None else self.sign_checkpoint()

    def list_checkpoints(
        self, *, page_token: str, page_size: int
    ) -> tuple[list[SignedCheckpoint], str]:
        after = _decode_token(page_token, None, False)
        with self.store.reading() as r:
            cps = r.list_checkpoints(after=after, limit=page_size + 1)
        more = len(cps) > page_size
        cps = cps[:page_size]
        return cps, (_encode_token(cps[-1].tree_size, None, False) if more else "")

    # -- proofs (each on one connection: a handful of queries, O(log n) rows) ----

    @staticmethod
    def _resolve_size(
        r: LedgerReader, tree_size: int, field: str
    ) -> tuple[int, SignedCheckpoint | None]:
        if tree_size == 0:
            cp = r.latest_checkpoint()
            if cp is None:  # only before Ledger.open signed the first one
                raise FailedPrecondition("the ledger has not signed a checkpoint yet")
            return cp.tree_size, cp
        current = r.size()
        if tree_size > current:
            raise InvalidArgument(field, f"{tree_size} is beyond the tree size {current}")
        return tree_size, r.checkpoint_at(tree_size)

    def inclusion_proof(
        self, *, record_id: uuid.UUID | None, leaf_index: int | None, tree_size: int
    ) -> InclusionProof:
        with self.store.reading() as r:
            if record_id is not None:
                rec = _found(r.get(record_id), record_id)
            else:
                assert leaf_index is not None
                found = r.get_by_index(leaf_index)
                if found is None:
                    size = r.size()
                    if leaf_index >= size:
                        raise InvalidArgument(
                            "leaf_index", f"{leaf_index} is beyond the tree size {size}"
                        )
                    raise NotFound(f"leaf {leaf_index} is missing from storage")
                rec = found
            size, cp = self._resolve_size(r, tree_size, "tree_size")
            if rec.leaf_index >= size:
                if tree_size == 0:
                    raise FailedPrecondition(
                        f"leaf {rec.leaf_index} is not yet covered by a signed checkpoint "
                        f"(latest size {size}); ask for a fresh checkpoint (GetCheckpoint "
                        "refresh) first"
                    )
                raise InvalidArgument(
                    "tree_size", f"{size} does not cover leaf {rec.leaf_index} (want > leaf index)"
                )
            ranges = merkle.inclusion_ranges(rec.leaf_index, size)
            hashes = merkle.hash_ranges([*ranges, (0, size)], r.read_nodes)
        return InclusionProof(
            leaf_index=rec.leaf_index,
            tree_size=size,
            leaf_hash=rec.leaf_hash,
            path=hashes[:-1],
            root_hash=hashes[-1],
            checkpoint=cp,
            record=rec,
        )

    def consistency_proof(self, old_size: int, new_size: int) -> ConsistencyProof:
        with self.store.reading() as r:
            new, _ = self._resolve_size(r, new_size, "new_size")
            if old_size > new:
                raise InvalidArgument("old_size", f"{old_size} is greater than new_size {new}")
            ranges = merkle.consistency_ranges(old_size, new)
            hashes = merkle.hash_ranges([*ranges, (0, old_size), (0, new)], r.read_nodes)
        return ConsistencyProof(
            old_size=old_size,
            new_size=new,
            old_root=hashes[-2],
            new_root=hashes[-1],
            path=hashes[:-2],
        )


def _found(rec: StoredRecord | None, record_id: uuid.UUID) -> StoredRecord:
    if rec is None:
        raise NotFound(f"record {record_id} is not in the ledger")
    return rec


def _fingerprint(flt: RecordFilter | None, newest_first: bool) -> str:
    raw = f"{flt.fingerprint() if flt else ''}|{newest_first}".encode()
    return hashlib.sha256(raw).hexdigest()[:12]


def _encode_token(position: int, flt: RecordFilter | None, newest_first: bool) -> str:
    raw = f"v1:{_fingerprint(flt, newest_first)}:{position}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode_token(token: str, flt: RecordFilter | None, newest_first: bool) -> int | None:
    if not token:
        return None
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode()
        version, fingerprint, position = raw.split(":")
        pos = int(position)
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidArgument("page_token", "is not a token this server issued") from exc
    if version != "v1" or fingerprint != _fingerprint(flt, newest_first) or pos < 0:
        raise InvalidArgument("page_token", "belongs to a different query; start from page 1")
    return pos
