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
from itertools import chain
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
    matrix, columns = _read_inputs(inputs, schema)
    if matrix is not None:
        return {f: [r[i] for r in matrix] for i, f in enumerate(schema.names)}
    assert columns is not None
    return columns


def _read_inputs(
    inputs: Mapping[str, Any], schema: InputSchema
) -> tuple[list[list[Any]] | None, dict[str, list[Any]] | None]:
    """The request's inputs, checked against the schema: a tensor's rows (one value
    per feature, left as they are: a window transposes all of them at once), or
    one column per feature."""
    if not isinstance(inputs, Mapping) or not inputs:
        raise UnreadableDecision("the request has no inputs")
    names = schema.names
    if schema.mode == "tensor":
        if len(inputs) != 1:
            raise UnreadableDecision(f"want one tensor input, got {len(inputs)}")
        ((name, value),) = inputs.items()
        return _rows(value, len(names), name), None
    keys = list(inputs)
    if len(keys) != len(names):
        raise UnreadableDecision(f"want {len(names)} inputs, got {len(keys)}")
    columns: dict[str, list[Any]] = {}
    for i, f in enumerate(names):
        columns[f] = _flat(inputs[f] if f in inputs else inputs[keys[i]])
    counts = {len(c) for c in columns.values()}
    if len(counts) != 1 or 0 in counts:
        raise UnreadableDecision("the inputs have different row counts")
    return None, columns


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


@dataclass(frozen=True)
class Decision:
    """One readable PREDICTION body: its inputs and outputs, checked against the schema."""

    matrix: list[list[Any]] | None
    """A tensor input's rows, one value per feature in schema order."""
    columns: Mapping[str, list[Any]] | None
    """Per-feature inputs: one column per feature (when there is no `matrix`)."""
    labels: list[Any]
    scores: list[float] | None

    @property
    def rows(self) -> int:
        if self.matrix is not None:
            return len(self.matrix)
        return len(next(iter(self.columns.values()), [])) if self.columns else 0

    def column(self, index: int, name: str) -> list[Any]:
        """The values of the feature at `index` (schema order) named `name`."""
        if self.matrix is not None:
            return [r[index] for r in self.matrix]
        assert self.columns is not None
        return self.columns[name]


def decode(body: Mapping[str, Any], schema: InputSchema) -> Decision | None:
    """A PREDICTION body read against the schema; None when it is unreadable.

    A follower decodes each body once, when it reads the record, and builds every
    window that holds it from the result (`gather_decoded`)."""
    try:
        request = body.get("request") if isinstance(body, Mapping) else None
        if not isinstance(request, Mapping):
            raise UnreadableDecision("no request")
        matrix, columns = _read_inputs(request.get("inputs", {}), schema)
        n = len(matrix) if matrix is not None else len(next(iter((columns or {}).values())))
        labels, scores = outputs(body.get("response", {}), n)
    except UnreadableDecision:
        return None
    return Decision(matrix, columns, labels, scores)


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
        self.add_decoded(record_id, decode(body, self.schema))

    def add_decoded(self, record_id: str, decision: Decision | None) -> None:
        """Add one decoded body (None: unreadable, only counted)."""
        if decision is None:
            self.unreadable += 1
            return
        for i, name in enumerate(self.schema.names):
            self.features.setdefault(name, []).extend(decision.column(i, name))
        self.predictions.extend(decision.labels)
        if decision.scores is None:
            self._has_scores = False
        else:
            self.scores.extend(decision.scores)
        self.record_ids.append(record_id)

    def window(self) -> Window:
        return Window(
            features=self.features,
            predictions=self.predictions,
            scores=self.scores if self._has_scores and self.scores else None,
        )


def gather(records: Iterable[tuple[str, Mapping[str, Any]]], schema: InputSchema) -> DecisionWindow:
    """A window of (record id, PREDICTION body) pairs."""
    return gather_decoded(((rid, decode(body, schema)) for rid, body in records), schema)


def gather_decoded(
    records: Iterable[tuple[str, Decision | None]], schema: InputSchema
) -> DecisionWindow:
    """A window of (record id, decoded body) pairs, each column built in one pass:
    the same window as adding them one by one."""
    out = DecisionWindow(schema)
    readable: list[Decision] = []
    for record_id, decision in records:
        if decision is None:
            out.unreadable += 1
        else:
            readable.append(decision)
            out.record_ids.append(record_id)
    if not readable:
        return out
    names = schema.names
    if all(d.matrix is not None for d in readable):  # tensors: one transposition
        rows = chain.from_iterable(d.matrix for d in readable if d.matrix is not None)
        for name, column in zip(names, zip(*rows, strict=True), strict=True):
            out.features[name] = list(column)
    else:
        for i, name in enumerate(names):
            out.features[name] = list(chain.from_iterable(d.column(i, name) for d in readable))
    out.predictions = list(chain.from_iterable(d.labels for d in readable))
    if any(d.scores is None for d in readable):
        out._has_scores = False
    out.scores = [s for d in readable if d.scores is not None for s in d.scores]
    return out


__all__: Sequence[str] = (
    "Decision",
    "DecisionWindow",
    "UnreadableDecision",
    "decode",
    "feature_rows",
    "gather",
    "gather_decoded",
    "outputs",
)
