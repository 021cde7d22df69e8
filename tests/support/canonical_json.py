"""Hypothesis strategies for JSON values and a typical PREDICTION body (starts nothing)."""

from __future__ import annotations

from typing import Any

from hypothesis import strategies as st

PREDICTION: dict[str, Any] = {
    "schema": "mrm.prediction/v1",
    "request_id": "7f3c1c9a-5b1e-4e0f-9f7a-2a1b3c4d5e6f",
    "model_name": "credit-default",
    "model_version": "1.4.2",
    "timestamp": "2026-05-09T07:35:25.123456Z",
    "latency_ms": 3.271,
    "score": 0.8123456789,
    "decision": "approve",
    "label": 1,
    "sampled": True,
    "explain": None,
    "features": {"age": 42.0, "income": 52345.67, "debt_ratio": 0.3521, "n_accounts": 7},
}


KEY_CHARS = st.one_of(
    st.characters(max_codepoint=0x7F),
    st.characters(min_codepoint=0xE000, max_codepoint=0xFFFF),
    st.characters(min_codepoint=0x10000),
    st.characters(codec="utf-8"),
)


FLOATS = st.one_of(
    st.floats(allow_nan=False, allow_infinity=False),
    st.floats(min_value=-1e-3, max_value=1e-3),
    st.integers(-(2**60), 2**60).map(float),
    st.sampled_from([1e-4, 1e-5, 9.999999999999999e-5, 2.0**53, 2.0**53 + 2, 1e21, 5e-324]),
)


SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**53 - 1), 2**53 - 1),
    FLOATS,
    st.text(KEY_CHARS, max_size=8),
)


JSON = st.recursive(
    SCALARS,
    lambda children: st.one_of(
        st.lists(children, max_size=5),
        st.lists(children, max_size=3).map(tuple),
        st.dictionaries(st.text(KEY_CHARS, max_size=5), children, max_size=6),
    ),
    max_leaves=30,
)
