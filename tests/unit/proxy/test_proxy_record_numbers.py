"""A prediction record's numeric arrays take canonical JSON's fast path only when
the bytes are exactly what the element-by-element walk (itself checked against
the RFC 8785 reference) gives, and NaN or infinity is still refused; a batch of
records built together is byte-identical to the same records built one by one."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import rfc8785
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from mrm.client.ledger import new_record
from mrm.proxy.audit import PendingPrediction, Stamper, _joined, _numbers, prediction_records
from mrm.tlog.canonical import CanonicalJSONError, Prepared, canonical_json

_EDGES = [0.0, -0.0, 1.0, -1.0, 1e-4, -1e-4, 9.9e-5, 0.1, 2.0**53, 2.0**53 - 1, 1e21, 3.4e38]
_DTYPES = st.sampled_from([np.float32, np.float64, np.float16, np.int64, np.int32, np.uint64])


def _cast(value: float, dtype: Any) -> float:
    """The value as `dtype` holds it (infinity when it overflows a narrow float)."""
    with np.errstate(over="ignore"):
        return float(np.asarray(value).astype(dtype).item())


def _arrays() -> st.SearchStrategy[np.ndarray[Any, Any]]:
    def one(dtype: Any) -> st.SearchStrategy[np.ndarray[Any, Any]]:
        kind = np.dtype(dtype).kind
        if kind == "f":
            elements = st.one_of(
                st.sampled_from(_EDGES), st.floats(allow_nan=False, allow_infinity=False)
            ).map(lambda v: _cast(v, dtype))
        else:
            info = np.iinfo(dtype)
            elements = st.one_of(
                st.integers(int(info.min), int(info.max)),
                st.sampled_from([0, 1, 2**53 - 1, 2**53]).filter(lambda v: v <= info.max),
            )
        shape = hnp.array_shapes(min_dims=1, max_dims=2, min_side=0, max_side=6)
        return hnp.arrays(dtype, shape, elements=elements)

    return _DTYPES.flatmap(one)


def _encoded(value: Any) -> bytes | str:
    try:
        return canonical_json({"v": value})
    except CanonicalJSONError as e:
        return f"refused: {type(e).__name__}"


@settings(max_examples=400, deadline=None)
@given(_arrays())
def test_same_bytes_as_the_element_walk(array: np.ndarray[Any, Any]) -> None:
    with np.errstate(over="ignore", invalid="ignore"):
        assert _encoded(_numbers(array)) == _encoded(array.tolist())


@pytest.mark.parametrize(
    "values", [[1.0, 2.5, -0.0, 7.0], [0.25, 0.5], [3.0, 4.0]], ids=["mixed", "floats", "ints"]
)
def test_common_rows_skip_the_walk(values: list[float]) -> None:
    array = np.asarray([values], np.float32)
    prepared = _numbers(array)
    assert type(prepared) is Prepared
    assert canonical_json({"v": prepared}) == rfc8785.dumps({"v": array.tolist()})


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_is_still_refused(bad: float) -> None:
    prepared = _numbers(np.asarray([[1.0, bad]], np.float32))
    assert type(prepared) is not Prepared
    with pytest.raises(CanonicalJSONError):
        canonical_json({"v": prepared})


def test_tiny_and_huge_values_take_the_reference_path() -> None:
    for value in (1e-5, 2.0**60):
        array = np.asarray([value, 1.5])
        assert type(_numbers(array)) is not Prepared
        assert canonical_json({"v": _numbers(array)}) == rfc8785.dumps({"v": array.tolist()})


def _pending(i: int, model: str, inputs: Any, outputs: Any) -> PendingPrediction:
    return PendingPrediction(
        Stamper(b"k" * 32),
        f"0190a0b0-0000-7000-8000-{i:012d}",
        model,
        "1",
        "0" * 64,
        f"subject-{i}",
        "0" * 32,
        "0" * 16,
        inputs,
        outputs,
        f"req-{i}",
    )


def _batch() -> list[Any]:
    rng = np.random.default_rng(7)
    out: list[Any] = []
    for i in range(40):
        rows = 1 + i % 3
        x = rng.normal(size=(rows, 4)).astype(np.float32)
        if i % 5 == 0:
            x[0, 0] = 1.0  # an integral float
        if i == 13:
            x[0, 1] = 1e-6  # its whole group takes the reference path
        proba = rng.random((rows, 2)).astype(np.float32)
        if i == 21:
            proba[0, 0] = np.nan  # this one record cannot be built
        label: Any = rng.integers(0, 2, rows)
        model = "credit" if i % 2 else "fraud"
        if i % 7 == 0:
            model, label = "text", np.array(["yes"] * rows, dtype=object)
        out.append(_pending(i, model, {"x": x}, {"label": label, "probabilities": proba}))
    out.append(_PlainSample())
    return out


class _PlainSample:
    """A sample that is not a prediction (it only knows record())."""

    model_name = "other"
    model_version = "1"

    def record(self) -> Any:
        return new_record("PREDICTION", {"n": 1}, record_id="0190a0b0-0000-7000-8000-999999999999")


def test_a_batch_builds_the_same_records_as_one_at_a_time() -> None:
    batch = _batch()
    together = prediction_records(batch)
    assert len(together) == len(batch)
    for sample, record in zip(batch, together, strict=True):
        try:
            alone = sample.record()
        except CanonicalJSONError:
            assert isinstance(record, CanonicalJSONError)
            continue
        assert not isinstance(record, Exception)
        assert record.SerializeToString() == alone.SerializeToString()
    failed = [i for i, r in enumerate(together) if isinstance(r, Exception)]
    assert failed == [21]


def test_a_batch_of_one_model_takes_the_vectorized_path() -> None:
    skip = {"req-13", "req-21"}  # a tiny value, a NaN
    batch = [b for b in _batch()[:40] if b.model_name == "credit" and b.request_id not in skip]
    plains = _joined(batch)
    assert all(p is not None and type(p[0]["x"]) is Prepared for p in plains)
