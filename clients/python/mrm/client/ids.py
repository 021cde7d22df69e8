"""Record ids (UUIDv7): the SDK's names for them, which live in mrm.kernel.ids."""

from __future__ import annotations

from mrm.kernel.ids import UUID7_RE, derived_record_id, is_uuid7, new_record_id

__all__ = ["UUID7_RE", "derived_record_id", "is_uuid7", "new_record_id"]
