"""A window built from bodies decoded once, its columns joined in one pass, is the
window the bodies make added one by one; the fast float conversion is pandas'."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd  # type: ignore[import-untyped,unused-ignore]
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats  # type: ignore[import-untyped,unused-ignore]

from mrm.drift.compare import ks_2samp
from mrm.drift.decisions import DecisionWindow, decode, gather_decoded
from mrm.drift.profile import as_floats
from mrm.kernel.schema import Feature, InputSchema

FEATURES = (Feature("a", "float", 0), Feature("b", "float", 1))
TENSOR = InputSchema(FEATURES, "tensor")
COLUMNS = InputSchema(FEATURES, "columns")

_value = st.one_of(
    st.floats(allow_nan=True), st.integers(-(2**60), 2**60), st.none(), st.booleans(), st.text()
)
_row = st.lists(st.floats(-1e6, 1e6), min_size=2, max_size=2)


@st.composite
def _body(draw: st.DrawFn) -> dict[str, Any]:
    kind = draw(st.sampled_from(["classifier", "proba", "regressor", "unreadable"]))
    rows = draw(st.lists(_row, min_size=1, max_size=3))
    labels = [[draw(st.integers(0, 2))] for _ in rows]
    if draw(st.booleans()):
        request: dict[str, Any] = {"inputs": {"x": rows}}  # one [N, 2] tensor
    else:  # one [N, 1] input per feature
        request = {"inputs": {"a": [[r[0]] for r in rows], "b": [[r[1]] for r in rows]}}
    if kind == "classifier":
        return {"request": request, "response": {"label": labels}}
    if kind == "proba":
        proba = [[0.25, 0.75] for _ in rows]
        return {"request": request, "response": {"label": labels, "probabilities": proba}}
    if kind == "regressor":
        return {"request": request, "response": {"variable": [[r[0]] for r in rows]}}
    return draw(st.sampled_from([{"request": "?"}, {"request": {"inputs": {"x": [[1.0]]}}}]))


@settings(max_examples=200, deadline=None)
@given(st.lists(_body(), max_size=8), st.sampled_from([TENSOR, COLUMNS]))
def test_batch_built_columns_equal_per_record_ones(
    bodies: list[dict[str, Any]], schema: InputSchema
) -> None:
    one_by_one = DecisionWindow(schema)
    for i, body in enumerate(bodies):
        one_by_one.add(f"r{i}", body)
    decoded = [(f"r{i}", decode(body, schema)) for i, body in enumerate(bodies)]
    batch = gather_decoded(decoded, schema)
    assert batch.features == one_by_one.features
    assert batch.predictions == one_by_one.predictions
    assert batch.record_ids == one_by_one.record_ids
    assert batch.unreadable == one_by_one.unreadable
    assert batch.rows == one_by_one.rows
    assert batch.window() == one_by_one.window()


@settings(max_examples=200, deadline=None)
@given(st.lists(_value, max_size=20))
def test_as_floats_reads_json_numbers_as_pandas_does(values: list[object]) -> None:
    expected = pd.to_numeric(pd.Series(values, dtype=object), errors="coerce")
    got = as_floats(values)
    assert got.dtype == np.float64
    np.testing.assert_array_equal(got, np.asarray(expected, dtype=np.float64))


_sample = st.lists(
    st.one_of(st.integers(-5, 5).map(float), st.floats(-1e3, 1e3)), min_size=1, max_size=60
)


@pytest.mark.filterwarnings("ignore:ks_2samp. Exact calculation unsuccessful:RuntimeWarning")
@settings(max_examples=300, deadline=None)
@given(_sample, _sample)
def test_ks_2samp_is_scipys_whether_remembered_or_not(a: list[float], b: list[float]) -> None:
    present, sample = np.asarray(a), np.asarray(b)
    ks = stats.ks_2samp(present, sample)
    expected = (float(ks.statistic), float(ks.pvalue))
    assert ks_2samp(present, sample) == expected
    assert ks_2samp(present, sample) == expected  # the second time from memory
