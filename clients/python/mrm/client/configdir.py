"""Where mrmctl keeps its state, and how it writes there without tearing files."""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import re
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path


def config_dir(env: Mapping[str, str]) -> Path:
    """MRM_CONFIG_DIR, else $XDG_CONFIG_HOME/mrm, else ~/.config/mrm."""
    if env.get("MRM_CONFIG_DIR"):
        return Path(env["MRM_CONFIG_DIR"])
    if env.get("XDG_CONFIG_HOME"):
        return Path(env["XDG_CONFIG_HOME"]) / "mrm"
    return Path.home() / ".config" / "mrm"


def safe_name(name: str) -> str:
    """A file name for an arbitrary string (such as a log's origin): readable,
    free of path syntax, and unique by its hash."""
    slug = re.sub(r"[^A-Za-z0-9.-]+", "_", name).strip("._-")[:64] or "log"
    return f"{slug}-{hashlib.sha256(name.encode()).hexdigest()[:16]}"


def read_text(path: Path) -> str | None:
    """The file's text, or None if it does not exist."""
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None


def write_atomic(path: Path, text: str) -> None:
    """Replace `path` so that a crash leaves the old file or the new one, never half."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


@contextlib.contextmanager
def locked_dir(directory: Path) -> Iterator[Path]:
    """Create `directory` (0700) and hold an exclusive lock on it until exit.

    Two mrmctl processes must not interleave read-check-write, or one could
    overwrite a newer remembered checkpoint with an older one.
    """
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    with open(directory / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield directory
