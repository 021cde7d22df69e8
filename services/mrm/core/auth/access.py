"""ACCESS records: every credential issued or revoked is a ledger record.

`mrm auth issue` records the issuance before the token works, and `mrm auth
revoke` the revocation right after it takes effect (a revocation must never wait
on the ledger). The ledger also compares the tokens file with what it recorded,
at start and every half minute: a token that appeared in the file, or was
revoked in it, without a record (edited by hand, or the ledger was down) is
recorded then, by "system:tokens-file". Each event has one derived record id, so
whichever writer comes first records it and the other's append is a replay.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any, Literal

from mrm.client.ledger import new_record
from mrm.core.auth.tokens import TokenEntry, parse_time
from mrm.core.errors import AlreadyExists
from mrm.kernel.ids import derived_record_id
from mrm.v1 import ledger_pb2

log = logging.getLogger(__name__)
Action = Literal["issued", "revoked"]
RECONCILER = "system:tokens-file"


def access_body(entry: TokenEntry, action: Action) -> dict[str, Any]:
    return {
        "action": action,
        "token_id": entry.id,
        "principal": entry.principal,
        "roles": list(entry.roles),
        "models": list(entry.models),
        "expires_at": entry.expires_at,
        "at": entry.issued_at if action == "issued" else entry.revoked_at,
        "by": entry.issued_by if action == "issued" else entry.revoked_by,
    }


def access_record(entry: TokenEntry, action: Action) -> ledger_pb2.Record:
    """The one ACCESS record of this event (the same bytes whoever appends it)."""
    at = entry.issued_at if action == "issued" else entry.revoked_at
    at_ms = parse_time(at, "at") // 1000 if at else 0
    return new_record(
        "ACCESS",
        access_body(entry, action),
        record_id=derived_record_id(at_ms, f"{entry.id}:{action}"),
    )


def expected_records(entries: tuple[TokenEntry, ...] | list[TokenEntry]) -> list[ledger_pb2.Record]:
    """The ACCESS records the tokens file implies, oldest event first."""
    out = []
    for entry in entries:
        out.append(access_record(entry, "issued"))
        if entry.revoked_at:
            out.append(access_record(entry, "revoked"))
    return out


class Reconciler:
    """Records what the tokens file holds and the ledger does not (see the module).

    `append` appends one record as RECONCILER, raising AlreadyExists when the id
    holds other content (the entry was edited by hand: its "changed" record is
    then appended under an id derived from the new content).
    """

    GRACE_US = 10_000_000
    """An event younger than this is left to the `mrm auth` command that made it
    (MRM's own, by "system:…", are recorded at once: nobody else will)."""

    def __init__(self, append: Callable[[ledger_pb2.Record], None]) -> None:
        self._append = append
        self._done: set[str] = set()

    def run(self, entries: Sequence[TokenEntry], now_us: int) -> int:
        """Append what is missing; how many records were tried (replays included)."""
        tried = 0
        for entry in entries:
            actions: tuple[Action, ...] = ("issued", "revoked")
            for action in actions:
                at = entry.issued_at if action == "issued" else entry.revoked_at
                by = entry.issued_by if action == "issued" else entry.revoked_by
                if not at:
                    continue
                if not by.startswith("system:") and parse_time(at, "at") > now_us - self.GRACE_US:
                    continue  # `mrm auth` is recording it as its author
                record = access_record(entry, action)
                key = f"{record.record_id}:{record.body_json}"
                if key in self._done:
                    continue
                tried += 1
                try:
                    self._append(record)
                except AlreadyExists:
                    body = access_body(entry, action)
                    body["action"] = "changed"
                    changed = new_record(
                        "ACCESS",
                        body,
                        record_id=derived_record_id(
                            parse_time(at, "at") // 1000, f"{entry.id}:changed:{record.body_json}"
                        ),
                    )
                    log.warning(
                        "token %s was changed in the tokens file by hand; recording it", entry.id
                    )
                    self._append(changed)
                self._done.add(key)
        return tried
