"""Ledger helpers: record ids, new records, and a Ledger opened on a store (starts no server)."""

from __future__ import annotations

import json
import os
import time
import uuid
from pathlib import Path

import sqlalchemy as sa

from mrm.ledger.records import NewRecord
from mrm.ledger.service import Ledger
from mrm.ledger.store import open_store


def uuid7() -> uuid.UUID:
    """A UUIDv7 (RFC 9562): 48-bit millisecond time, version, variant, random."""
    ms = time.time_ns() // 1_000_000
    rand = int.from_bytes(os.urandom(10), "big")
    value = (ms << 80) | (0x7 << 76) | (((rand >> 62) & 0xFFF) << 64) | (0b10 << 62)
    return uuid.UUID(int=value | (rand & ((1 << 62) - 1)))


def new_record(i: int = 0, **fields: str) -> NewRecord:
    """A PREDICTION record numbered `i`, with `fields` overriding its columns."""
    base = {
        "kind": "PREDICTION",
        "model_name": "credit-risk",
        "model_version": "1.2.4",
        "subject": f"subject-{i % 7}",
        "trace_id": "",
        "span_id": "",
    }
    base.update(fields)
    body = json.dumps(
        {"input": {"income": i, "ratio": 0.25}, "output": {"label": i % 2}},
        sort_keys=True,
        separators=(",", ":"),
    )
    return NewRecord(
        record_id=uuid7(),
        body=fields.get("body", body),
        **{k: v for k, v in base.items() if k != "body"},
    )


def open_ledger(engine: sa.Engine, home: Path, every: int = 1000) -> Ledger:
    """A Ledger on `engine`, keyed from `home`, checkpointing every `every` leaves."""
    return Ledger.open(
        open_store(engine),
        key_file=str(home / "ledger.key"),
        configured_origin=None,
        checkpoint_every=every,
    )
