"""RFC 8785 canonical JSON: the RFC's own examples, and equality with rfc8785.dumps."""

from __future__ import annotations

import struct
from typing import Any

import pytest
import rfc8785
from hypothesis import given, settings
from hypothesis import strategies as st

from mrm.tlog.canonical import CanonicalJSONError, canonical_json, parse_json_object
from tests.support.canonical_json import JSON, KEY_CHARS, PREDICTION

# RFC 8785 Appendix B: IEEE 754 bit patterns and their canonical form.
APPENDIX_B = [
    ("0000000000000000", "0"),
    ("8000000000000000", "0"),
    ("0000000000000001", "5e-324"),
    ("8000000000000001", "-5e-324"),
    ("7fefffffffffffff", "1.7976931348623157e+308"),
    ("ffefffffffffffff", "-1.7976931348623157e+308"),
    ("4340000000000000", "9007199254740992"),
    ("c340000000000000", "-9007199254740992"),
    ("4430000000000000", "295147905179352830000"),
    ("44b52d02c7e14af5", "9.999999999999997e+22"),
    ("44b52d02c7e14af6", "1e+23"),
    ("44b52d02c7e14af7", "1.0000000000000001e+23"),
    ("444b1ae4d6e2ef4e", "999999999999999700000"),
    ("444b1ae4d6e2ef4f", "999999999999999900000"),
    ("444b1ae4d6e2ef50", "1e+21"),
    ("3eb0c6f7a0b5ed8c", "9.999999999999997e-7"),
    ("3eb0c6f7a0b5ed8d", "0.000001"),
    ("41b3de4355555553", "333333333.3333332"),
    ("41b3de4355555554", "333333333.33333325"),
    ("41b3de4355555555", "333333333.3333333"),
    ("41b3de4355555556", "333333333.3333334"),
    ("41b3de4355555557", "333333333.33333343"),
    ("becbf647612f3696", "-0.0000033333333333333333"),
    ("43143ff3c1cb0959", "1424953923781206.2"),
]


def _double(bits: str) -> float:
    value: float = struct.unpack(">d", bytes.fromhex(bits))[0]
    return value


@pytest.mark.parametrize(("bits", "expected"), APPENDIX_B)
def test_appendix_b_numbers(bits: str, expected: str) -> None:
    x = _double(bits)
    assert canonical_json(x) == expected.encode()
    assert canonical_json([x, {"n": x}]) == f'[{expected},{{"n":{expected}}}]'.encode()


@pytest.mark.parametrize("bits", ["7fffffffffffffff", "7ff0000000000000", "fff0000000000000"])
def test_appendix_b_nan_and_infinity_are_refused(bits: str) -> None:
    with pytest.raises(CanonicalJSONError, match="not a JSON number"):
        canonical_json({"x": [_double(bits)]})


def test_section_3_2_3_sorting_by_utf16_code_units() -> None:
    value = {
        "\u20ac": "Euro Sign",
        "\r": "Carriage Return",
        "\ufb33": "Hebrew Letter Dalet With Dagesh",
        "1": "One",
        "\U0001f600": "Emoji: Grinning Face",
        "\u0080": "Control",
        "\u00f6": "Latin Small Letter O With Diaeresis",
    }
    expected = (
        '{"\\r":"Carriage Return","1":"One","\u0080":"Control",'
        '"\u00f6":"Latin Small Letter O With Diaeresis","\u20ac":"Euro Sign",'
        '"\U0001f600":"Emoji: Grinning Face","\ufb33":"Hebrew Letter Dalet With Dagesh"}'
    )
    assert canonical_json(value) == expected.encode()


def test_section_3_2_4_example_from_json_text() -> None:
    text = r"""{
      "numbers": [333333333.33333329, 1E30, 4.50, 2e-3, 0.000000000000000000000000001],
      "string": "\u20ac$\u000F\u000aA'\u0042\u0022\u005c\\\"\/",
      "literals": [null, true, false]
    }"""
    expected = (
        r'{"literals":[null,true,false],"numbers":[333333333.3333333,1e+30,4.5,0.002,1e-27],'
        r'"string":"€$\u000f\nA'
        "'"
        r'B\"\\\\\"/"}'
    )
    assert canonical_json(parse_json_object(text)) == expected.encode()


def test_reference_suite_weird_json() -> None:
    # testdata/input/weird.json of the RFC author's reference implementation.
    value = {
        "\u20ac": "Euro Sign",
        "1": "One",
        "\u0080": "Control\u007f",
        "\ud83d\ude02".encode("utf-16", "surrogatepass").decode("utf-16"): "Smiley",
        "\u00f6": "Latin Small Letter O With Diaeresis",
        "\ufb33": "Hebrew Letter Dalet With Dagesh",
        "</script>": "Browser Challenge",
    }
    expected = (
        '{"1":"One","</script>":"Browser Challenge","\u0080":"Control\u007f",'
        '"\u00f6":"Latin Small Letter O With Diaeresis","\u20ac":"Euro Sign",'
        '"\U0001f602":"Smiley","\ufb33":"Hebrew Letter Dalet With Dagesh"}'
    )
    assert canonical_json(value) == expected.encode()


def test_every_control_character_is_escaped_like_the_reference() -> None:
    s = "".join(chr(i) for i in range(0x20)) + '"\\/\x7f\u2028\u2029\ufeff'
    assert canonical_json({s: s}) == rfc8785.dumps({s: s})


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (1.0, b"1"),
        (-0.0, b"0"),
        ([True, False, None, 1, 0.5], b"[true,false,null,1,0.5]"),
        ((1, (2.0, "x")), b'[1,[2,"x"]]'),
        (2.0**53 - 1, b"9007199254740991"),
        (1e-4, b"0.0001"),
        (1e-5, b"0.00001"),
        (1e16, b"10000000000000000"),
        ({"b": {}, "a": []}, b'{"a":[],"b":{}}'),
        ("\U0001f600", '"\U0001f600"'.encode()),
    ],
)
def test_simple_values(value: object, expected: bytes) -> None:
    assert canonical_json(value) == expected
    assert rfc8785.dumps(value) == expected  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        (2**53, "outside JSON's exact range"),
        ({"a": [-(2**53)]}, "outside JSON's exact range"),
        (float("nan"), "not a JSON number"),
        ({"x": float("-inf")}, "not a JSON number"),
        ("lone \ud800 surrogate", "lone surrogate"),
        ({"\udc00": 1}, "lone surrogate"),
        ({1: "int key"}, "keys must be strings"),
        ({"a": {1, 2}}, "unsupported type"),
        (b"bytes", "unsupported type"),
        ({"\U0001f600": float("nan")}, "not representable"),  # the slow path's own error
    ],
)
def test_values_without_a_canonical_form(value: object, reason: str) -> None:
    with pytest.raises(CanonicalJSONError, match=reason):
        canonical_json(value)


def test_cycles_are_refused() -> None:
    loop: list[object] = []
    loop.append(loop)
    with pytest.raises(CanonicalJSONError, match="contains itself"):
        canonical_json({"a": loop})


def test_common_records_take_the_fast_path(monkeypatch: pytest.MonkeyPatch) -> None:
    expected = rfc8785.dumps(PREDICTION)

    def forbidden(value: object) -> bytes:
        raise AssertionError("fell back to rfc8785 for an ordinary record")

    monkeypatch.setattr(rfc8785, "dumps", forbidden)
    assert canonical_json(PREDICTION) == expected


@settings(max_examples=1500, deadline=None)
@given(JSON)
def test_matches_rfc8785_reference(value: Any) -> None:
    assert canonical_json(value) == rfc8785.dumps(value)


@settings(max_examples=200, deadline=None)
@given(st.one_of(st.integers(), st.lists(st.integers(), min_size=1)))
def test_integers_agree_with_reference_or_both_refuse(value: Any) -> None:
    try:
        want = rfc8785.dumps(value)
    except rfc8785.CanonicalizationError:
        with pytest.raises(CanonicalJSONError):
            canonical_json(value)
    else:
        assert canonical_json(value) == want


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(st.text(KEY_CHARS, max_size=5), JSON, max_size=6))
def test_parse_then_canonicalize_is_stable(value: dict[str, Any]) -> None:
    once = canonical_json(value)
    assert canonical_json(parse_json_object(once)) == once


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ('{"a": 1, "a": 2}', "duplicate key 'a'"),
        ('{"x": {"b": 1, "c": 2, "b": 3}}', "duplicate key 'b'"),
        ('{"x": NaN}', "NaN is not a JSON number"),
        ('{"x": [Infinity]}', "Infinity is not a JSON number"),
        ('{"x": -Infinity}', "-Infinity is not a JSON number"),
        ('{"x": 1e400}', "overflows a double"),
        ('{"x": 9007199254740993}', "not exactly representable"),
        ('{"x": -9007199254740993}', "not exactly representable"),
        ('{"x": 1' + "0" * 400 + "}", "not exactly representable"),
        ("[1, 2]", "top level is list"),
        ('"text"', "top level is str"),
        ("null", "top level is NoneType"),
        ('{"a": 1', "not valid JSON"),
        ('{"a": 1} trailing', "not valid JSON"),
        ("", "not valid JSON"),
        (b'{"a": "\xff"}', "not valid UTF-8"),
        (b'\xef\xbb\xbf{"a": 1}', "not valid JSON"),
    ],
)
def test_parse_json_object_refuses(text: str | bytes, reason: str) -> None:
    with pytest.raises(CanonicalJSONError, match=reason):
        parse_json_object(text)


def test_big_integer_literals_that_are_canonical_doubles_parse_as_doubles() -> None:
    # canonical_json writes these doubles as integer literals; reading them back
    # as ints beyond 2**53 - 1 would make the output impossible to re-canonicalize.
    text = '{"a":9007199254740992,"b":-295147905179352830000,"c":9007199254740991}'
    value = parse_json_object(text)
    assert value == {"a": 2.0**53, "b": -(2.0**68), "c": 2**53 - 1}
    assert type(value["c"]) is int
    assert canonical_json(value) == text.encode()


def test_parse_json_object_accepts_objects() -> None:
    assert parse_json_object(b'{"a": [1, 2.5, "\xc3\xa9"], "b": {}}') == {
        "a": [1, 2.5, "\u00e9"],
        "b": {},
    }
