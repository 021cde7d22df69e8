"""Signing checkpoints: the log's key, its origin, and the rule never to sign a fork."""

from __future__ import annotations

import logging
import secrets
import socket
from pathlib import Path

from mrm.core.errors import IntegrityError
from mrm.core.keyfile import read_or_create
from mrm.kernel.clock import now_us
from mrm.ledger import merkle
from mrm.ledger.reads import SigningTxn
from mrm.ledger.records import SignedCheckpoint
from mrm.ledger.seal import Sealer, seal_key
from mrm.ledger.store import LedgerStore
from mrm.tlog.checkpoint import Checkpoint
from mrm.tlog.note import NoteError, Signer, generate_signer, parse_signer_key, sign_note

log = logging.getLogger(__name__)


def new_origin() -> str:
    """A fresh log's origin, so a new stack is never mistaken for a fork of an old one."""
    host = socket.gethostname().split(".")[0] or "mrm"
    return f"{host}/{secrets.token_hex(6)}"


def load_or_create_key(path: Path, name: str) -> Signer:
    """Read the signer key, or generate it on first start with mode 0600."""
    signer, created = read_or_create(
        path, "ledger key file", lambda: generate_signer(name).encode(), _parse_key
    )
    if created:
        log.info("generated ledger key %s (verifier key %s)", path, signer.vkey())
    return signer


def _parse_key(text: str) -> Signer:
    try:
        return parse_signer_key(text)
    except NoteError as exc:
        raise ValueError(str(exc)) from None


class CheckpointSigner:
    """Signs tree heads, each one proven consistent with the one before it."""

    def __init__(self, store: LedgerStore, signer: Signer, origin: str) -> None:
        self.store = store
        self.signer = signer
        self.origin = origin
        self.verifier_key = signer.vkey()
        self.seal_key = seal_key(signer)
        self._sealer = Sealer(self.seal_key)
        store.use_seal_key(self.seal_key)

    def sign(self) -> SignedCheckpoint:
        """Sign the current tree if it grew since the last checkpoint; return the latest.

        The new root is not read from storage: the signer takes the right edge of
        the last signed tree (checked against its signed root), extends it with
        each new leaf's sealed hash, checks that what it computes is what was
        stored, and signs the root it computed itself. So the checkpoint extends
        the previous one by construction, and no row written around the ledger
        (a leaf, or a subtree hash) can make it sign a root the leaves don't have.
        """
        with self.store.signing() as txn:
            latest = txn.latest_checkpoint()
            size = txn.size()
            if latest is not None and latest.tree_size == size:
                return latest
            old_size = 0 if latest is None else latest.tree_size
            if old_size > size:
                raise IntegrityError(
                    f"the log holds {size} leaves but a checkpoint of size {old_size} was "
                    "signed: leaves were removed",
                    leaf_index=size,
                )
            frontier = merkle.Frontier(old_size, txn.read_nodes)
            if latest is not None and frontier.root() != latest.root_hash:
                raise IntegrityError(
                    f"the stored tree no longer matches the checkpoint signed at size "
                    f"{old_size}; refusing to sign (run `mrmctl ledger verify`)"
                )
            self._extend(txn, frontier, size)
            new_root = frontier.root()
            body = Checkpoint(origin=self.origin, size=size, root_hash=new_root).text()
            cp = SignedCheckpoint(
                tree_size=size,
                root_hash=new_root,
                note=sign_note(body, [self.signer]),
                signed_at_us=now_us(),
            )
            txn.add(cp)
            log.info("signed checkpoint %s size=%d root=%s", self.origin, size, new_root.hex())
            return cp

    def _extend(self, txn: SigningTxn, frontier: merkle.Frontier, end: int) -> None:
        """Push every leaf about to be signed for the first time, checking each row.

        The seal binds a leaf's index to its stored hash, so a row inserted or
        re-hashed in the database around the ledger is refused here, before any
        checkpoint covers it. A record changed under an unchanged hash needs no
        check here: every audit re-derives the hash and names that leaf.
        """
        sealed = self._sealer.ok
        for index, stored_hash, subtrees, mark in txn.leaf_seals(frontier.size, end):
            if index != frontier.size:
                break
            if not sealed(index, stored_hash, mark):
                raise self._refuse(
                    txn,
                    index,
                    "carries no valid seal: it was written into the database around the ledger",
                )
            if frontier.push(stored_hash) != subtrees:
                raise self._refuse(txn, index, "stores subtree hashes its leaves do not have")
        if frontier.size != end:
            raise IntegrityError(
                f"leaf {frontier.size} is missing from the database; refusing to sign",
                leaf_index=frontier.size,
            )

    @staticmethod
    def _refuse(txn: SigningTxn, index: int, what: str) -> IntegrityError:
        record_id = txn.record_id_at(index)
        return IntegrityError(
            f"leaf {index} (record {record_id}) {what}; refusing to sign",
            leaf_index=index,
            record_id=record_id,
        )
