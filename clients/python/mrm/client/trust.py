"""The client's memory of each ledger it has talked to, as in Go's sumdb client.

Per origin the store keeps the log's verifier key and the last checkpoint note
the client accepted. Every new checkpoint must be signed by that key and must
extend the remembered one (a consistency proof), so a log that is rolled back
or shows different histories to different clients is caught by the next call.

Layout: <config dir>/ledgers/<safe origin>/{vkey,checkpoint}. Both are plain
text; `checkpoint` is the signed note itself, so `mrmctl ledger verify-note`
can check it by hand.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from mrm.client.configdir import config_dir, locked_dir, read_text, safe_name, write_atomic
from mrm.tlog.checkpoint import CheckpointError, parse_checkpoint
from mrm.tlog.merkle import ProofError, verify_consistency
from mrm.tlog.note import NoteError, Verifier, open_note, parse_vkey
from mrm.v1 import ledger_pb2

# Fetches the consistency-proof path between two tree sizes from the server.
ConsistencyFetcher = Callable[[int, int], Sequence[bytes]]


class TrustError(Exception):
    """The log's key or history is not what the client trusts: a failed check.

    `details` holds further lines (such as both conflicting notes) that the
    one-line message refers to.
    """

    def __init__(self, message: str, details: str = "") -> None:
        super().__init__(message)
        self.details = details


class TrustConfigError(ValueError):
    """The user's trust configuration (for example MRM_LEDGER_VKEY) is malformed."""


@dataclass(frozen=True)
class TrustedCheckpoint:
    """A checkpoint whose signature and consistency with the past were verified."""

    origin: str
    size: int
    root_hash: bytes
    note: str
    vkey: str
    verifier: Verifier


def _indent(note: str) -> str:
    return "".join(f"    {line}\n" if line else "\n" for line in note.splitlines())


def open_checkpoint(note: str, verifier: Verifier, origin: str) -> tuple[int, bytes]:
    """Verify a checkpoint note's signature and origin; return (size, root)."""
    try:
        opened = open_note(note, [verifier])
        cp = parse_checkpoint(opened.text)
    except (NoteError, CheckpointError) as e:
        raise TrustError(f"checkpoint of log {origin} does not verify: {e}") from None
    if cp.origin != origin:
        raise TrustError(f"checkpoint is for origin {cp.origin!r}, expected {origin!r}")
    return cp.size, cp.root_hash


def _stderr(line: str) -> None:
    print(line, file=sys.stderr)


class TrustStore:
    """Verifier keys and last-seen checkpoints, one directory per origin."""

    def __init__(
        self,
        directory: Path,
        *,
        pinned_vkey: str | None = None,
        announce: Callable[[str], None] = _stderr,
    ) -> None:
        self.directory = directory
        self._announce = announce
        self._pinned_text = (pinned_vkey or "").strip()
        self._pinned: Verifier | None = None
        if self._pinned_text:
            try:
                self._pinned = parse_vkey(self._pinned_text)
            except NoteError as e:
                raise TrustConfigError(f"MRM_LEDGER_VKEY: {e}") from None

    @classmethod
    def from_env(
        cls, env: Mapping[str, str] | None = None, announce: Callable[[str], None] = _stderr
    ) -> TrustStore:
        env = os.environ if env is None else env
        return cls(config_dir(env), pinned_vkey=env.get("MRM_LEDGER_VKEY"), announce=announce)

    def log_dir(self, origin: str) -> Path:
        return self.directory / "ledgers" / safe_name(origin)

    def known_vkey(self, origin: str) -> str | None:
        text = read_text(self.log_dir(origin) / "vkey")
        return text.strip() if text else None

    def remembered_note(self, origin: str) -> str | None:
        return read_text(self.log_dir(origin) / "checkpoint")

    def _key_for(self, origin: str, offered: str, path: Path) -> tuple[Verifier, str, bool]:
        """(verifier, vkey, whether the key is new to the store) for `origin`."""
        stored = self.known_vkey(origin)
        if self._pinned is not None:
            pinned = self._pinned_text
            if stored is not None and stored != pinned:
                raise TrustError(
                    f"MRM_LEDGER_VKEY pins key {pinned} for log {origin}, but mrmctl already "
                    f"trusts {stored} (stored in {path}); remove that file only if the log's "
                    "key was really replaced"
                )
            return self._pinned, pinned, stored is None
        if stored is not None:
            if offered and offered != stored:
                raise TrustError(
                    f"log {origin} now presents key {offered}, but mrmctl trusts {stored} "
                    f"(stored in {path}); a known log never changes its key. If the operator "
                    "really replaced it, check the new key out of band and delete that file"
                )
            return self._parse_stored(stored, path), stored, False
        if not offered:
            raise TrustError(f"log {origin} sent no verifier key; set MRM_LEDGER_VKEY to pin one")
        try:
            return parse_vkey(offered), offered, True
        except NoteError as e:
            raise TrustError(f"log {origin} sent a malformed verifier key: {e}") from None

    @staticmethod
    def _parse_stored(stored: str, path: Path) -> Verifier:
        try:
            return parse_vkey(stored)
        except NoteError as e:
            raise TrustError(f"the key stored in {path} is malformed: {e}") from None

    def verifier(self, origin: str) -> Verifier | None:
        """The trusted key for `origin` (the pinned one first), if there is one."""
        if self._pinned is not None:
            return self._pinned
        stored = self.known_vkey(origin)
        return None if stored is None else self._parse_stored(stored, self.log_dir(origin))

    def check(self, cp: ledger_pb2.Checkpoint, prove: ConsistencyFetcher) -> TrustedCheckpoint:
        """Accept `cp` only if it is signed by the trusted key and extends what was seen."""
        with locked_dir(self.log_dir(cp.origin)) as d:
            key_path = d / "vkey"
            verifier, vkey, new_key = self._key_for(cp.origin, cp.verifier_key, key_path)
            size, root = open_checkpoint(cp.note, verifier, cp.origin)
            if size != cp.tree_size or root != cp.root_hash:
                raise TrustError(
                    f"log {cp.origin} sent a checkpoint whose fields (size {cp.tree_size}, root "
                    f"{cp.root_hash.hex()}) disagree with its signed note (size {size}, root "
                    f"{root.hex()})"
                )
            if new_key:
                # Learned only once a note verified with it: a server cannot
                # plant a key it cannot sign with.
                write_atomic(key_path, vkey + "\n")
                if self._pinned is None:
                    self._announce(
                        f"mrmctl: trusting new log {cp.origin} with key {vkey} "
                        f"(stored in {key_path})"
                    )
            old_note = self.remembered_note(cp.origin)
            if old_note is None or self._extends(cp, old_note, verifier, size, root, prove):
                write_atomic(d / "checkpoint", cp.note)
            return TrustedCheckpoint(cp.origin, size, root, cp.note, vkey, verifier)

    def _extends(
        self,
        cp: ledger_pb2.Checkpoint,
        old_note: str,
        verifier: Verifier,
        size: int,
        root: bytes,
        prove: ConsistencyFetcher,
    ) -> bool:
        """Raise unless the new checkpoint extends the remembered one; True if it grew."""
        path = self.log_dir(cp.origin) / "checkpoint"
        try:
            old_size, old_root = open_checkpoint(old_note, verifier, cp.origin)
        except TrustError as e:
            raise TrustError(f"{e} (remembered in {path}; delete it to start over)") from None
        both = f"remembered checkpoint ({path}):\n{_indent(old_note)}"
        both += f"checkpoint from the server:\n{_indent(cp.note)}"
        if size < old_size:
            raise TrustError(
                f"log {cp.origin} was rolled back: it now shows {size} leaves, but mrmctl "
                f"already saw a signed checkpoint of {old_size} leaves",
                both,
            )
        if size == old_size:
            if root != old_root:
                raise TrustError(
                    f"log {cp.origin} has forked: two signed checkpoints of {size} leaves "
                    "with different roots",
                    both,
                )
            return False
        try:
            verify_consistency(old_size, size, prove(old_size, size), old_root, root)
        except ProofError as e:
            raise TrustError(
                f"log {cp.origin} has forked: its checkpoint of {size} leaves does not extend "
                f"the one of {old_size} leaves mrmctl saw before ({e})",
                both,
            ) from None
        return True
