"""How `mrm status` prints: a short text report, or JSON for scripts."""

from __future__ import annotations

import dataclasses
import json

from mrm.status import Status


def render(status: Status, output: str) -> str:
    if output == "json":
        data = dataclasses.asdict(status) | {"healthy": status.healthy}
        return json.dumps(data, indent=2, sort_keys=True)
    lines = ["services:"]
    for h in status.health:
        lines.append(f"  {h.service:<9} {h.address:<22} {h.status}")
    lines.append("models in production:")
    if status.production:
        lines.extend(f"  {m['model']} {m['version']}" for m in status.production)
    else:
        lines.append("  (none)")
    if status.ledger:
        lg = status.ledger
        lines.append(f"ledger: {lg['tree_size']} records, origin {lg['origin']}")
        lines.append(f"  latest checkpoint signed {lg['signed_at']}, root {lg['root_hash'][:16]}…")
    if status.proxy:
        px = status.proxy
        lines.append(
            f"proxy samples: {px['sampled']} sampled, {px['shipped']} shipped, "
            f"{px['spooled']} spooled, {px['dropped']} dropped "
            f"(queue {px['queue']}, spool {px['spool']}, {px['gap_records']} GAP records; "
            f"process {px['instance']})"
        )
        lines.extend(f"  serving {m}" for m in px["models"])
    lines.extend(f"problem: {p}" for p in status.problems)
    return "\n".join(lines)
