"""Record ids the monitor derives rather than draws, so a replay is a duplicate.

A window's DRIFT record and its ALERT records get UUIDv7s whose time is the
window's last decision's and whose random bits are a hash of what identifies
them (model, version, first leaf; the window's spec, such as `rows=500`, when
the version configures several; and for an alert its DRIFT id, rule and
feature: one alert per problem, see mrm.monitor.problems). A monitor that crashed
after appending and evaluates the same window again sends the same ids with
the same content: the ledger answers `duplicate` and nothing is appended twice.
"""

from __future__ import annotations

import hashlib
import uuid


def derived_uuid7(unix_ms: int, *parts: str) -> str:
    """A valid UUIDv7 (RFC 9562) with timestamp `unix_ms` and 74 bits of sha256(parts)."""
    digest = int.from_bytes(hashlib.sha256("\x1f".join(parts).encode()).digest()[:10], "big")
    value = (unix_ms & ((1 << 48) - 1)) << 80
    value |= 0x7 << 76  # version
    value |= ((digest >> 62) & 0xFFF) << 64  # rand_a: 12 bits
    value |= 0b10 << 62  # variant
    value |= digest & ((1 << 62) - 1)  # rand_b: 62 bits
    return str(uuid.UUID(int=value))
