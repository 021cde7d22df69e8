"""The exporter refuses a bundle larger than the verifier reads, before fetching proofs."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from mrm.client.ledger import Record
from mrm.evidence import build, derive


class FakeLedger:
    def __init__(self, n: int) -> None:
        self.n = n

    def query(self, **q: Any) -> Iterator[Record]:
        if q["kind"] == "PREDICTION":
            yield from (Record(leaf_index=i) for i in range(self.n))


def records(n: int, scope: derive.Scope) -> list[Record]:
    return build._records(FakeLedger(n), scope, None, 10_000)  # type: ignore[arg-type]


def test_too_many_records_is_refused_with_a_hint(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(build, "MAX_RECORDS", 3)
    scope = derive.Scope("credit-risk", None, "2026-12-01T00:00:00.000000Z")
    assert len(records(3, scope)) == 3
    with pytest.raises(build.EvidenceError) as e:
        records(4, scope)
    assert "--since" in str(e.value)
    assert e.value.exit_code == 2
