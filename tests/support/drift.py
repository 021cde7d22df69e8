"""A DRIFT record built from real parts, for the report and dashboard tests: the
deployed version's reference profile (the registry's artifact) compared by
mrm.drift.compare with a shifted window of its own evaluation data, in the body the
monitor (mrm.monitor.engine) writes."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import pandas as pd  # type: ignore[import-untyped,unused-ignore]

from mrm.client.ledger import LedgerClient, new_record
from mrm.client.registry import RegistryClient
from mrm.drift.compare import Window, compare
from mrm.drift.profile import ReferenceProfile
from mrm.v1 import registry_pb2
from tests.conftest import RunningLedger


def drift_body(profile: ReferenceProfile, frame: pd.DataFrame, first_leaf: int) -> dict[str, Any]:
    """The monitor's DRIFT body (mrm.monitor.engine) for a window of `frame`."""
    window = Window(
        features={name: frame[name].tolist() for name in profile.features},
        predictions=[1 if i % 3 else 0 for i in range(len(frame))],
    )
    report = compare(profile, window)
    return {
        "window": {
            "first_leaf": first_leaf,
            "last_leaf": first_leaf + len(frame) - 1,
            "first_recorded_at_us": 1_790_000_000_000_000,
            "last_recorded_at_us": 1_790_000_060_000_000,
            "decisions": len(frame),
            "rows": len(frame),
            "unreadable": 0,
            "spec": {"rows": len(frame)},
        },
        "report": report.to_json(),
        "thresholds": profile.monitor.to_json(),
    }


@dataclass
class Recorded:
    record_id: str
    leaf_index: int
    top: list[str]
    """The three features the report ranks first (drifted, then by PSI)."""
    shifted: list[str]
    """The features moved."""


def record_drift(stack: RunningLedger, X: pd.DataFrame, version: str = "1.2.4") -> Recorded:
    """Append a DRIFT record of credit-risk `version`: its evaluation data with two
    numeric features shifted, compared with its deployed reference profile."""
    with RegistryClient(stack.registry_addr) as reg:
        sha = next(
            a.sha256
            for a in reg.get_version("credit-risk", version).artifacts
            if a.role == registry_pb2.ARTIFACT_ROLE_REFERENCE_PROFILE
        )
        profile = ReferenceProfile.from_json(json.loads(reg.download(sha)))
    shifted = pd.concat([X] * 2, ignore_index=True)
    numeric = [c for c in X.columns if pd.api.types.is_numeric_dtype(X[c])]
    for name in numeric[:2]:  # two features move a lot, the rest stay
        shifted[name] = shifted[name] * 3 + float(X[name].std()) * 2
    body = drift_body(profile, shifted, first_leaf=0)
    ranked = sorted(body["report"]["features"], key=lambda f: (not f["drifted"], -(f["psi"] or 0)))
    drift = new_record("DRIFT", body, model_name="credit-risk", model_version=version)
    with LedgerClient(stack.addr) as led:
        (appended,) = led.append([drift])
    return Recorded(
        drift.record_id, appended.leaf_index, [f["name"] for f in ranked[:3]], numeric[:2]
    )
