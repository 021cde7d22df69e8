"""Stamping decisions for the audit trail: record ids, sampling, subject references.

The stamp (record id, sampling decision) is made on the inference path and is
cheap. The PREDICTION record itself (the subject's keyed hash, the canonical
JSON of the exact request and response) is built later, in the shipper's
thread: the request path hands over a `PendingPrediction` holding the arrays,
which nobody writes to once the response is built.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, cast

import numpy as np

from mrm.client.ledger import new_record
from mrm.kernel.ids import new_record_id
from mrm.kernel.subjects import SubjectHasher
from mrm.proxy.shipper import Sample
from mrm.tlog.canonical import Prepared
from mrm.v1 import ledger_pb2

_RANDOM_BITS = (1 << 62) - 1


class Stamper(SubjectHasher):
    """Decides, per request, the record id, whether it is sampled, and the subject ref
    (the keyed hash Explain and the monitor compute too: mrm.kernel.subjects)."""

    @staticmethod
    def new_record_id() -> str:
        return new_record_id()

    @staticmethod
    def sampled(record_id: str, rate: float) -> bool:
        """Deterministic from the record id's random bits, so a replay decides the same."""
        if rate >= 1.0:
            return True
        if rate <= 0.0:
            return False
        return (uuid.UUID(record_id).int & _RANDOM_BITS) / (1 << 62) < rate


def _plain(array: np.ndarray[Any, Any]) -> Any:
    if array.dtype == object:
        return [v.decode() if isinstance(v, bytes) else v for v in array.reshape(-1).tolist()]
    return array.tolist()


_EXACT = 2**53  # integral floats below this become ints, as canonical JSON prints them
_PLAIN = 1e-4  # smaller non-integral floats take canonical JSON's reference encoder


def _numbers(array: np.ndarray[Any, Any]) -> Any:
    """A numeric array as nested lists, checked for canonical JSON's fast path in a
    few vectorized passes rather than element by element; anything the check does
    not vouch for is left to canonical JSON's own walk. Worth it for many rows at
    once (a shipper's batch), not for one request's."""
    kind = array.dtype.kind
    if kind == "b":
        return Prepared(array.tolist())
    if kind in "iu":
        if array.size and not (int(array.min()) > -_EXACT and int(array.max()) < _EXACT):
            return array.tolist()
        return Prepared(array.tolist())
    if kind != "f" or not array.size:
        return array.tolist()
    wide = array.astype(np.float64, copy=False)
    magnitude = np.abs(wide)
    integral = wide == np.trunc(wide)
    if not np.isfinite(wide).all() or (magnitude[integral] >= _EXACT).any():
        return array.tolist()  # canonical JSON refuses or takes the reference path
    if (magnitude[~integral] < _PLAIN).any():
        return array.tolist()
    if not integral.any():
        return Prepared(wide.tolist())
    mixed = wide.astype(object)
    mixed[integral] = wide[integral].astype(np.int64)
    return Prepared(mixed.tolist())


def prediction_record(
    *,
    record_id: str,
    model_name: str,
    model_version: str,
    onnx_sha256: str,
    subject: str,
    trace_id: str,
    span_id: str,
    inputs: Mapping[str, np.ndarray[Any, Any]],
    outputs: Mapping[str, np.ndarray[Any, Any]],
    request_id: str,
) -> ledger_pb2.Record:
    """The PREDICTION record: the exact request and response, and where it was served."""
    return _record(
        _as_lists(inputs, outputs),
        request_id,
        record_id=record_id,
        model_name=model_name,
        model_version=model_version,
        onnx_sha256=onnx_sha256,
        subject=subject,
        trace_id=trace_id,
        span_id=span_id,
    )


_Plain = tuple[dict[str, Any], dict[str, Any]]  # (inputs, outputs) as JSON-ready lists


def _as_lists(
    inputs: Mapping[str, np.ndarray[Any, Any]], outputs: Mapping[str, np.ndarray[Any, Any]]
) -> _Plain:
    return {k: _plain(v) for k, v in inputs.items()}, {k: _plain(v) for k, v in outputs.items()}


def _record(plain: _Plain, request_id: str, onnx_sha256: str, **fields: str) -> ledger_pb2.Record:
    """`prediction_record` with the tensors already lists; `fields` are the record's
    own (record_id, model_name, model_version, subject, trace_id, span_id)."""
    body = {
        "request": {"id": request_id, "inputs": plain[0]},
        "response": plain[1],
        "onnx_sha256": onnx_sha256,
    }
    return new_record("PREDICTION", body, **fields)


@dataclass(frozen=True, slots=True)
class PendingPrediction:
    """A sampled decision whose record is built off the request path (`record()`)."""

    stamper: Stamper
    record_id: str
    model_name: str
    model_version: str
    onnx_sha256: str
    subject_id: str  # raw: hashed in record(), never stored
    trace_id: str
    span_id: str
    inputs: Mapping[str, np.ndarray[Any, Any]]
    outputs: Mapping[str, np.ndarray[Any, Any]]
    request_id: str

    def record(self, plain: _Plain | None = None) -> ledger_pb2.Record:
        """The record; `plain` is its tensors as lists when made for a whole batch."""
        return _record(
            plain or _as_lists(self.inputs, self.outputs),
            self.request_id,
            record_id=self.record_id,
            model_name=self.model_name,
            model_version=self.model_version,
            onnx_sha256=self.onnx_sha256,
            subject=self.stamper.subject_ref(self.subject_id),
            trace_id=self.trace_id,
            span_id=self.span_id,
        )


def prediction_records(samples: Sequence[Sample]) -> list[ledger_pb2.Record | Exception]:
    """Many sampled decisions' records at once, in order (the shipper's batch); an
    exception in place of a record that cannot be built (NaN in an output, say).

    Per model version, each tensor's rows are joined across the decisions and
    checked for canonical JSON in one vectorized pass (`_numbers`), so what is
    left per record is its few keys. The bytes are those of `record()` one at a
    time; a group the joint check cannot vouch for is built one at a time.
    """
    plains: list[_Plain | None] = [None] * len(samples)
    groups: dict[tuple[str, str], list[int]] = {}
    for i, sample in enumerate(samples):
        if isinstance(sample, PendingPrediction):
            groups.setdefault((sample.model_name, sample.model_version), []).append(i)
    for members in groups.values():
        joined = _joined([cast(PendingPrediction, samples[i]) for i in members])
        for i, plain in zip(members, joined, strict=True):
            plains[i] = plain
    built: list[ledger_pb2.Record | Exception] = []
    for sample, plain in zip(samples, plains, strict=True):
        try:
            if isinstance(sample, PendingPrediction):
                built.append(sample.record(plain))
            else:
                built.append(sample.record())
        except Exception as exc:
            built.append(exc)
    return built


def _joined(group: Sequence[PendingPrediction]) -> list[_Plain | None]:
    """Each decision's tensors as lists, from one pass per tensor name over all of
    them; None for every decision when they differ in names, types or row shape, or
    hold text (which `_plain` decodes one by one)."""
    alone: list[_Plain | None] = [None] * len(group)
    if len(group) < 2:
        return alone
    first = group[0]
    sizes = (len(first.inputs), len(first.outputs))
    if any((len(s.inputs), len(s.outputs)) != sizes for s in group):
        return alone
    out: list[_Plain] = [({}, {}) for _ in group]
    for side, named in enumerate((first.inputs, first.outputs)):
        for name, head in named.items():
            try:
                arrays = [(s.inputs, s.outputs)[side][name] for s in group]
            except KeyError:
                return alone
            dtype, rest = head.dtype, head.shape[1:]
            if dtype.kind not in "biuf" or dtype.itemsize > 8 or head.ndim == 0:
                return alone  # text, or what record() alone would refuse (float128)
            if any(a.dtype != dtype or a.shape[1:] != rest or a.ndim == 0 for a in arrays):
                return alone
            values = _numbers(np.concatenate(arrays))
            wrap = Prepared if type(values) is Prepared else list
            at = 0
            for plain, array in zip(out, arrays, strict=True):
                plain[side][name] = wrap(values[at : at + len(array)])
                at += len(array)
    return list(out)
