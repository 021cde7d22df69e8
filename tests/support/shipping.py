"""Helpers for the audit shipper's tests: a shipper-process config, sampled decisions,
a ledger stack on a fixed port, and what the ledger holds."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from mrm.client.credentials import ClientAuth
from mrm.client.ledger import LedgerClient
from mrm.core.settings import Settings
from mrm.kernel.ids import new_record_id
from mrm.proxy.audit import PendingPrediction, Stamper
from mrm.proxy.shipping import ShipperConfig
from mrm.stack import BackgroundStack
from mrm.v1.ledger_pb2 import Record
from tests.support.auth import seed_test_token

KEY = bytes(range(32))
"""The subject key of the decisions below."""


def stack_on(home: Path, port: int) -> BackgroundStack:
    """A stack whose ledger listens on a fixed port, so a restarted one is found again."""
    addrs: dict[str, Any] = {n: "127.0.0.1:0" for n in Settings.model_fields if n.endswith("_addr")}
    settings = Settings(
        home=home, auth_record_tokens=False, **(addrs | {"ledger_addr": f"127.0.0.1:{port}"})
    )
    seed_test_token(settings.resolved_tokens_file())
    return BackgroundStack(settings)


def in_ledger(addr: str, model: str, kind: str = "PREDICTION") -> list[Record]:
    with LedgerClient(addr) as client:
        return list(client.query(kind=kind, model_name=model))


def shipper_config(addr: str, home: Path, **overrides: Any) -> ShipperConfig:
    """A shipper process for the ledger at `addr`, its spool in `home`, the test token."""
    values: dict[str, Any] = {
        "ledger_target": addr,
        "spool_path": home / "spool.db",
        "spool_max_records": 100_000,
        "queue_max": 10_000,
        "subject_key": KEY,
        "auth": ClientAuth.from_env(),
        "log_level": "WARNING",
    }
    return ShipperConfig(**(values | overrides))


def decisions(model: str, n: int, start: int = 0, width: int = 2) -> list[PendingPrediction]:
    """`n` sampled decisions of `model` 1.0.0 as the proxy hands them over, each with a
    `width`-feature input row."""
    stamper = Stamper(KEY)
    return [
        PendingPrediction(
            stamper,
            new_record_id(),
            model,
            "1.0.0",
            "ab" * 32,
            f"subject-{i}",
            f"{i + 1:032x}",
            f"{i + 1:016x}",
            {"x": np.full((1, width), i / 7, dtype=np.float32)},
            {"label": np.array([i % 2]), "probabilities": np.array([[0.25, 0.75]], np.float32)},
            f"request-{i}",
        )
        for i in range(start, start + n)
    ]
