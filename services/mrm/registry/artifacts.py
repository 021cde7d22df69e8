"""The content-addressed artifact store: bytes named by their SHA-256.

Files live at `<root>/sha256/<first two hex digits>/<hex>`. A write goes to a
temporary file in the same directory, is hashed as it arrives, and is renamed
into place only when its hash and length are the ones declared, so a reader
never sees a partial or mislabelled artifact. Artifacts are never rewritten.
"""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
from collections.abc import Iterator
from pathlib import Path

from mrm.core.errors import InvalidArgument, NotFound

SHA256 = re.compile(r"[0-9a-f]{64}")
READ_CHUNK = 1 << 20


class ArtifactWrite:
    """One upload in progress: feed chunks, then `finish`."""

    def __init__(self, store: ArtifactStore, sha256: str, size: int) -> None:
        self._store = store
        self.sha256 = sha256
        self.size = size
        self._hash = hashlib.sha256()
        self._written = 0
        target = store.path_of(sha256)
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".upload-")
        self._file = os.fdopen(fd, "wb")
        self._tmp = Path(tmp)

    def write(self, chunk: bytes) -> None:
        self._written += len(chunk)
        if self._written > self.size:
            raise InvalidArgument("chunk", f"more bytes than the declared size {self.size}")
        self._hash.update(chunk)
        self._file.write(chunk)

    def finish(self) -> None:
        """Verify and publish; the artifact is visible only after this returns."""
        self._file.flush()
        os.fsync(self._file.fileno())
        self._file.close()
        if self._written != self.size:
            self.abort()
            raise InvalidArgument(
                "header.size", f"declared {self.size} bytes but {self._written} arrived"
            )
        got = self._hash.hexdigest()
        if got != self.sha256:
            self.abort()
            raise InvalidArgument("header.sha256", f"the bytes hash to {got}, not {self.sha256}")
        os.replace(self._tmp, self._store.path_of(self.sha256))

    def abort(self) -> None:
        if not self._file.closed:
            self._file.close()
        self._tmp.unlink(missing_ok=True)


class ArtifactStore:
    """Artifacts on a local filesystem (S3-compatible storage can come later)."""

    def __init__(self, root: Path, max_bytes: int) -> None:
        self.root = root
        self.max_bytes = max_bytes

    def path_of(self, sha256: str) -> Path:
        return self.root / "sha256" / sha256[:2] / sha256

    def has(self, sha256: str) -> bool:
        return self.path_of(sha256).is_file()

    def begin(self, sha256: str, size: int) -> ArtifactWrite:
        if not SHA256.fullmatch(sha256):
            raise InvalidArgument("header.sha256", "is not 64 lowercase hex digits")
        if size > self.max_bytes:
            raise InvalidArgument(
                "header.size", f"{size} bytes is over the {self.max_bytes}-byte artifact limit"
            )
        return ArtifactWrite(self, sha256, size)

    def read(self, sha256: str) -> Iterator[bytes]:
        """The artifact's bytes in chunks; NOT_FOUND if the store lacks it."""
        if not SHA256.fullmatch(sha256):
            raise InvalidArgument("sha256", "is not 64 lowercase hex digits")
        path = self.path_of(sha256)
        try:
            f = path.open("rb")
        except FileNotFoundError:
            raise NotFound(f"artifact {sha256} is not in the store") from None
        with f:
            while chunk := f.read(READ_CHUNK):
                yield chunk
