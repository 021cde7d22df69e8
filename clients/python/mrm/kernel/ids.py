"""Record ids: UUIDv7 (RFC 9562 §5.7), which Python 3.11's uuid module lacks.

The 48-bit millisecond timestamp makes ids sort by creation time, which keeps
the ledger's id index append-friendly. The 12 bits after the version carry
sub-millisecond time (RFC 9562 §6.2, method 3), and a process-wide counter on
the combined 60 bits makes ids from one process strictly increasing even when
the clock stalls or steps back.
"""

from __future__ import annotations

import hashlib
import os
import re
import threading
import time
import uuid

_lock = threading.Lock()
_last = 0  # the last (ms << 12 | sub-ms fraction) handed out by this process

UUID7_RE = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}")


def new_record_id() -> str:
    """A fresh UUIDv7 in canonical lowercase 8-4-4-4-12 form."""
    global _last
    ns = time.time_ns()
    stamp = (ns // 1_000_000) << 12 | (ns % 1_000_000) * 4096 // 1_000_000
    with _lock:
        # Running ahead of the clock by a few ticks under a burst is allowed
        # by RFC 9562 and is the price of strict monotonicity.
        stamp = max(stamp, _last + 1)
        _last = stamp
    rand_b = int.from_bytes(os.urandom(8)) & ((1 << 62) - 1)
    value = (stamp >> 12) << 80 | 0x7 << 76 | (stamp & 0xFFF) << 64 | 0b10 << 62 | rand_b
    h = f"{value:032x}"
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def is_uuid7(text: str) -> bool:
    """Whether `text` is a canonical lowercase UUIDv7, the form the ledger accepts."""
    return UUID7_RE.fullmatch(text) is not None


def derived_record_id(at_ms: int, name: str) -> str:
    """A UUIDv7 that is the same for the same (time, name): for a record that more
    than one writer may append for one event (the ledger then keeps one)."""
    digest = int.from_bytes(hashlib.sha256(name.encode()).digest()[:10])
    rand_a, rand_b = digest >> 68 & 0xFFF, digest & ((1 << 62) - 1)
    value = (at_ms & ((1 << 48) - 1)) << 80 | 0x7 << 76 | rand_a << 64 | 0b10 << 62 | rand_b
    h = f"{value:032x}"
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def parse_record_id(value: str) -> uuid.UUID:
    """`value` as a UUID if it is a canonical lowercase UUIDv7; otherwise ValueError
    saying what it is instead (the text a request's field error carries)."""
    if UUID7_RE.fullmatch(value):
        return uuid.UUID(value)
    if not value:
        raise ValueError("is required (a UUIDv7)")
    try:
        parsed = uuid.UUID(value)
    except ValueError:
        raise ValueError(f"{_show(value)} is not a UUID (want a UUIDv7)") from None
    if str(parsed) != value:
        raise ValueError(f"{_show(value)} is not in canonical lowercase 8-4-4-4-12 form")
    if parsed.version != 7 or parsed.variant != uuid.RFC_4122:
        raise ValueError(f"{_show(value)} is a version {parsed.version} UUID (want v7)")
    return parsed


def _show(value: str, width: int = 40) -> str:
    return repr(value if len(value) <= width else value[:width] + "…")
