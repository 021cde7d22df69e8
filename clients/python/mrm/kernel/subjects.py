"""Subject references: the keyed hash that stands in for a subject id.

The proxy stamps a decision's subject with it; Explain and the monitor hash a
subject id someone asks about (or reports an outcome for) with the same key,
so the reference they compute matches the stored one. The raw id is never
stored. The key is a server secret (mrm.core.keyfile keeps it in a file).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

MIN_KEY_BYTES = 16


class SubjectHasher:
    """Subject ids to references under one key."""

    def __init__(self, subject_key: bytes) -> None:
        self._key = subject_key

    def subject_ref(self, subject_id: str) -> str:
        """A keyed hash: equal subjects give equal refs; "" for no subject."""
        if not subject_id:
            return ""
        digest = hmac.new(self._key, subject_id.encode(), hashlib.sha256).hexdigest()
        return "hmac-sha256:" + digest


def new_subject_key() -> str:
    """A fresh key as the key file holds it: 32 random bytes in hex."""
    return secrets.token_bytes(32).hex()


def parse_subject_key(text: str) -> bytes:
    """The key in a key file's text; ValueError if it is not hex or too short."""
    key = bytes.fromhex(text)
    if len(key) < MIN_KEY_BYTES:
        raise ValueError(f"a subject key needs at least {MIN_KEY_BYTES} bytes, not {len(key)}")
    return key
