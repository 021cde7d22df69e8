"""canonicalize_json_object: the ledger's text-in, canonical-text-out path."""

from __future__ import annotations

import json
from typing import Any

import pytest
import rfc8785
from hypothesis import given, settings
from hypothesis import strategies as st

from mrm.tlog import canonical
from mrm.tlog.canonical import CanonicalJSONError, canonicalize_json_object
from tests.support.canonical_json import JSON, KEY_CHARS, PREDICTION

_OBJECTS = st.dictionaries(st.text(KEY_CHARS, max_size=5), JSON, max_size=6)


@settings(max_examples=800, deadline=None)
@given(_OBJECTS)
def test_any_spelling_gives_the_reference_form(value: dict[str, Any]) -> None:
    want = rfc8785.dumps(value).decode()
    # Already canonical (what MRM's clients send), and loosely spelled.
    assert canonicalize_json_object(want) == want
    assert canonicalize_json_object(json.dumps(value, indent=1)) == want


def test_canonical_records_never_take_the_strict_parser(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(_text: object) -> None:
        raise AssertionError("took the slow path")

    monkeypatch.setattr(canonical, "parse_json_object", refuse)
    text = rfc8785.dumps(PREDICTION).decode()
    assert canonicalize_json_object(text) == text


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ('{"a":1,"a":1}', "duplicate key"),
        ('{"a":1,"a":2}', "duplicate key"),
        ("[1]", "not an object"),
        ('{"a":NaN}', "NaN"),
        ('{"a":"\\ud800"}', "surrogate"),
        ('{"a":12345678901234567890}', "exactly representable"),
    ],
)
def test_refusals(text: str, reason: str) -> None:
    with pytest.raises(CanonicalJSONError, match=reason):
        canonicalize_json_object(text)
