"""Step 2 of an explanation: does the archived model still give the logged answer?

Labels must be equal; numbers within an absolute tolerance (the logged output
went through float32 and JSON, and a re-run on another CPU may differ in the
last bits). A difference is reported, never hidden.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

TOLERANCE = 1e-6
_MAX_SHOWN = 3


@dataclass(frozen=True)
class Reproduction:
    matches: bool
    detail: str
    tolerance: float
    onnx_sha256: str

    def to_json(self) -> dict[str, Any]:
        return {
            "matches": self.matches,
            "detail": self.detail,
            "tolerance": self.tolerance,
            "onnx_sha256": self.onnx_sha256,
        }


def _flat(value: Any, path: str) -> list[tuple[str, Any]]:
    if isinstance(value, list | tuple):
        out: list[tuple[str, Any]] = []
        for i, item in enumerate(value):
            out.extend(_flat(item, f"{path}[{i}]"))
        return out
    return [(path, value)]


def _same(a: Any, b: Any, tol: float) -> bool:
    numbers = (int, float)
    if isinstance(a, bool) or isinstance(b, bool):
        return bool(a == b)
    if isinstance(a, numbers) and isinstance(b, numbers):
        if math.isnan(a) or math.isnan(b):
            return math.isnan(a) and math.isnan(b)
        return abs(float(a) - float(b)) <= tol
    return str(a) == str(b)


def compare(
    logged: Mapping[str, Any],
    rerun: Mapping[str, Any],
    onnx_sha256: str,
    tol: float = TOLERANCE,
) -> Reproduction:
    """Every output the decision logged, against the re-run's."""
    problems: list[str] = []
    for name in sorted(set(logged) | set(rerun)):
        if name not in rerun:
            problems.append(f"the re-run has no output {name!r}")
            continue
        if name not in logged:
            problems.append(f"the logged response has no output {name!r}")
            continue
        want, got = _flat(logged[name], name), _flat(rerun[name], name)
        if len(want) != len(got):
            problems.append(f"{name}: {len(want)} values logged, {len(got)} re-computed")
            continue
        for (path, a), (_, b) in zip(want, got, strict=True):
            if not _same(a, b, tol):
                problems.append(f"{path}: logged {a!r}, re-computed {b!r}")
    shown = problems[:_MAX_SHOWN]
    if len(problems) > _MAX_SHOWN:
        shown.append(f"and {len(problems) - _MAX_SHOWN} more")
    return Reproduction(not problems, "; ".join(shown), tol, onnx_sha256)
