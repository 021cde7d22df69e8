"""C2SP tlog-checkpoint note bodies (https://c2sp.org/tlog-checkpoint).

A checkpoint is the text of a signed note: the log's origin, its tree size and
its root hash, one per line, then optional extension lines.
"""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass

from mrm.tlog.merkle import HASH_SIZE

# The spec forbids leading zeroes; [0-9] rather than \d keeps out non-ASCII digits.
_DECIMAL = re.compile(r"0|[1-9][0-9]*")
_MAX_SIZE = 2**64 - 1  # tree sizes are uint64 in every other implementation


class CheckpointError(Exception):
    """A checkpoint body is malformed."""


@dataclass(frozen=True)
class Checkpoint:
    """A log's signed statement of its tree size and root hash."""

    origin: str
    size: int
    root_hash: bytes
    extensions: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        # Checked here too so that a server can never sign a body that
        # parse_checkpoint, or another implementation, would refuse.
        if not self.origin or "\n" in self.origin:
            raise CheckpointError("checkpoint origin must be one non-empty line")
        if not 0 <= self.size <= _MAX_SIZE:
            raise CheckpointError(f"checkpoint tree size {self.size} is out of range")
        if len(self.root_hash) != HASH_SIZE:
            raise CheckpointError(f"checkpoint root hash must be {HASH_SIZE} bytes")
        if any(not e or "\n" in e for e in self.extensions):
            raise CheckpointError("checkpoint extension lines must be non-empty single lines")

    def text(self) -> str:
        """The note text to sign; it ends with a newline."""
        lines = [self.origin, str(self.size), base64.b64encode(self.root_hash).decode()]
        lines.extend(self.extensions)
        return "\n".join(lines) + "\n"


def parse_checkpoint(text: str) -> Checkpoint:
    """Parse the text of a checkpoint note (already opened and verified)."""
    if not text.endswith("\n"):
        raise CheckpointError("checkpoint must end with a newline")
    lines = text[:-1].split("\n")
    if len(lines) < 3:
        raise CheckpointError(
            f"checkpoint has {len(lines)} lines; it needs origin, tree size and root hash"
        )
    origin, size_text, root_text, *extensions = lines
    if not origin:
        raise CheckpointError("checkpoint origin line is empty")
    if not _DECIMAL.fullmatch(size_text):
        raise CheckpointError(
            f"checkpoint tree size {size_text!r} is not a decimal number without leading zeroes"
        )
    size = int(size_text)
    if size > _MAX_SIZE:
        raise CheckpointError(f"checkpoint tree size {size} does not fit in 64 bits")
    try:
        root = base64.b64decode(root_text, validate=True)
    except (binascii.Error, ValueError) as e:
        raise CheckpointError(f"checkpoint root hash {root_text!r} is not valid base64") from e
    if len(root) != HASH_SIZE:
        raise CheckpointError(f"checkpoint root hash is {len(root)} bytes, not {HASH_SIZE}")
    for i, line in enumerate(extensions):
        if not line:
            raise CheckpointError(f"checkpoint extension line {i + 1} is empty")
    return Checkpoint(origin, size, root, tuple(extensions))
