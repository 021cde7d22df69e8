"""Secrets kept in files (the ledger's signing key, the subject-hash key).

Read when present, warning when others may read it; otherwise generated once,
mode 0600. Creation is atomic: the secret is written to a private temporary file
and hard-linked into place, so two processes starting together (the proxy and
the Explain service share the subject key) agree on one secret, and neither
ever reads a half-written file.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from mrm.core.errors import FailedPrecondition
from mrm.kernel.subjects import new_subject_key, parse_subject_key

log = logging.getLogger(__name__)
T = TypeVar("T")


def write_private(path: Path, text: str, *, exclusive: bool) -> None:
    """`text` (and a newline) into `path`, mode 0600, never half-written: through a
    private temporary file, then hard-linked into place (`exclusive`: FileExistsError
    when the path exists) or renamed over it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write(text + "\n")
            fh.flush()
            os.fsync(fh.fileno())
        if exclusive:
            os.link(tmp, path)
        else:
            os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def read_or_create(
    path: Path, what: str, generate: Callable[[], str], parse: Callable[[str], T]
) -> tuple[T, bool]:
    """The secret in `path` parsed, and whether it was created just now.

    `generate` makes a new secret's text; `parse` raises ValueError for text that
    is not one, which becomes a one-line FailedPrecondition naming the file.
    """
    if not path.exists():
        text = generate()
        try:
            write_private(path, text, exclusive=True)
            return parse(text), True
        except FileExistsError:
            pass  # another process created it first: use theirs
    mode = path.stat().st_mode & 0o777
    if mode & 0o077:
        log.warning("%s %s is readable by others (mode %o); chmod 600 it", what, path, mode)
    try:
        return parse(path.read_text().strip()), False
    except (ValueError, UnicodeDecodeError) as exc:
        raise FailedPrecondition(
            f"{what} {path} is not readable as one ({exc}); restore it from a backup, "
            "or move it away to generate a new one"
        ) from None


def load_or_create_subject_key(path: Path) -> bytes:
    """The server secret subject ids are hashed with (mrm.kernel.subjects), shared
    by the proxy, Explain and the monitor; created once with mode 0600."""
    key, _ = read_or_create(path, "subject key file", new_subject_key, parse_subject_key)
    return key
