"""Recorded decisions as a drift window: PREDICTION bodies to feature columns.

A PREDICTION body holds the request's ONNX inputs and the model's outputs as
the proxy served them (`{"request": {"inputs": {...}}, "response": {...}}`).
The input schema says how inputs map to features: one `[N, features]` tensor,
or one `[N, 1]` input per feature, named as the feature or in schema order.
A classifier's response has a label output and a per-class probability
output; a regressor's has one value output.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from mrm.drift.compare import Window
from mrm.kernel.schema import InputSchema


class UnreadableDecision(ValueError):
    """A body that does not match the schema; counted, never guessed at."""


def _flat(value: Any) -> list[Any]:
    if not isinstance(value, list):
        return [value]
    out: list[Any] = []
    for v in value:
        out.extend(_flat(v))
    return out


def _rows(value: Any, width: int, name: str) -> list[list[Any]]:
    if not isinstance(value, list) or not value:
        raise UnreadableDecision(f"input {name!r} is not a non-empty list")
    rows = value if isinstance(value[0], list) else [value]
    if any(not isinstance(r, list) or len(r) != width for r in rows):
        raise UnreadableDecision(f"input {name!r} is not [N, {width}]")
    return rows


def feature_rows(inputs: Mapping[str, Any], schema: InputSchema) -> dict[str, list[Any]]:
    """The request's inputs as one column per feature (schema order)."""
    if not isinstance(inputs, Mapping) or not inputs:
        raise UnreadableDecision("the request has no inputs")
    names = schema.names
    if schema.mode == "tensor":
        if len(inputs) != 1:
            raise UnreadableDecision(f"want one tensor input, got {len(inputs)}")
        ((name, value),) = inputs.items()
        rows = _rows(value, len(names), name)
        return {f: [r[i] for r in rows] for i, f in enumerate(names)}
    keys = list(inputs)
    if len(keys) != len(names):
        raise UnreadableDecision(f"want {len(names)} inputs, got {len(keys)}")
    columns: dict[str, list[Any]] = {}
    for i, f in enumerate(names):
        columns[f] = _flat(inputs[f] if f in inputs else inputs[keys[i]])
    counts = {len(c) for c in columns.values()}
    if len(counts) != 1 or 0 in counts:
        raise UnreadableDecision("the inputs have different row counts")
    return columns


def outputs(response: Mapping[str, Any], rows: int) -> tuple[list[Any], list[float] | None]:
    """(labels, scores): a classifier's labels and positive-class probability (binary),
    or no labels and a regressor's values as scores."""
    if not isinstance(response, Mapping) or not response:
        raise UnreadableDecision("the response has no outputs")
    label = next((k for k in response if "label" in k.lower()), None)
    proba = next((k for k in response if "prob" in k.lower()), None)
    if label is None:
        values = _flat(next(iter(response.values())))
        if len(values) != rows:
            raise UnreadableDecision("the output does not have one value per row")
        return [], [float(v) for v in values]
    labels = _flat(response[label])
    if len(labels) != rows:
        raise UnreadableDecision(f"output {label!r} does not have one label per row")
    scores: list[float] | None = None
    if proba is not None:
        p = response[proba]
        if isinstance(p, list) and p and isinstance(p[0], list) and len(p[0]) == 2:
            scores = [float(r[1]) for r in p]
    return labels, scores


@dataclass
class DecisionWindow:
    """Decisions gathered for one window, and how many bodies could not be read."""

    schema: InputSchema
    features: dict[str, list[Any]] = field(default_factory=dict)
    predictions: list[Any] = field(default_factory=list)
    scores: list[float] = field(default_factory=list)
    record_ids: list[str] = field(default_factory=list)
    unreadable: int = 0
    _has_scores: bool = True

    @property
    def rows(self) -> int:
        return len(next(iter(self.features.values()), []))

    def add(self, record_id: str, body: Mapping[str, Any]) -> None:
        """Add one PREDICTION body (all its rows); an unreadable one is only counted."""
        try:
            request = body.get("request") if isinstance(body, Mapping) else None
            if not isinstance(request, Mapping):
                raise UnreadableDecision("no request")
            columns = feature_rows(request.get("inputs", {}), self.schema)
            n = len(next(iter(columns.values())))
            labels, scores = outputs(body.get("response", {}), n)
        except UnreadableDecision:
            self.unreadable += 1
            return
        for name in self.schema.names:
            self.features.setdefault(name, []).extend(columns[name])
        self.predictions.extend(labels)
        if scores is None:
            self._has_scores = False
        else:
            self.scores.extend(scores)
        self.record_ids.append(record_id)

    def window(self) -> Window:
        return Window(
            features=self.features,
            predictions=self.predictions,
            scores=self.scores if self._has_scores and self.scores else None,
        )


def gather(records: Iterable[tuple[str, Mapping[str, Any]]], schema: InputSchema) -> DecisionWindow:
    """A window of (record id, PREDICTION body) pairs."""
    out = DecisionWindow(schema)
    for record_id, body in records:
        out.add(record_id, body)
    return out


__all__: Sequence[str] = (
    "DecisionWindow",
    "UnreadableDecision",
    "feature_rows",
    "gather",
    "outputs",
)
