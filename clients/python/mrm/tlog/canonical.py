"""RFC 8785 (JCS) canonical JSON, fast enough for the ledger's append path.

The output is byte-identical to `rfc8785.dumps`, which is the reference here.
Most records are encoded by orjson (sorted keys), which already agrees with
JCS when three conditions hold (each is checked, not assumed; a property test
compares the two on random values):

- no object key has a character outside the BMP: Python sorts keys by code
  point, JCS by UTF-16 code unit, and the two orders differ only for
  surrogate pairs against U+E000..U+FFFF;
- every float is integral with |x| < 2**53 (converted to int, since JCS
  prints 1.0 as "1") or non-integral with |x| >= 1e-4 (below that orjson and
  Python switch to exponent form earlier than ECMAScript does);
- every int lies in JCS's exact-double range, |x| <= 2**53 - 1.

Anything else (tiny or huge floats, astral keys, subclasses of the JSON types)
goes to `rfc8785.dumps`, so the fast path never has to be clever.
"""

from __future__ import annotations

import json
import math
from typing import Any, cast

import orjson
import rfc8785

_MAX_INT = 2**53 - 1  # rfc8785 (and I-JSON) reject anything beyond
_FLOAT_INT_LIMIT = 2.0**53
_MIN_PLAIN_FLOAT = 1e-4


def _encode(value: Any) -> bytes:
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS)


class CanonicalJSONError(ValueError):
    """The value has no RFC 8785 form, or the text is not acceptable JSON."""


class Prepared(list[Any]):
    """A list already in the fast path's form (JSON scalars or nested lists of them:
    integral floats as ints, other floats finite with |x| >= 1e-4, ints within
    ±(2**53 - 1)), so the walk does not visit each element. Whoever builds one
    vouches for that, as the proxy does for a numeric array with one vectorized
    check (`mrm.proxy.audit`); the reference encoder takes it like any list."""


class _SlowPath(Exception):
    """Raised inside the walk when only the reference encoder can be trusted."""


def _prepare(value: Any) -> Any:
    """Copy `value` with integral floats made ints, or raise _SlowPath."""
    t = type(value)
    if t is str or t is bool or value is None:
        return value
    if t is int:
        if -_MAX_INT <= value <= _MAX_INT:
            return value
        raise CanonicalJSONError(f"integer {value} is outside JSON's exact range ±(2**53 - 1)")
    if t is float:
        if value.is_integer():
            if -_FLOAT_INT_LIMIT < value < _FLOAT_INT_LIMIT:
                return int(value)
            raise _SlowPath
        if math.isfinite(value):
            if value >= _MIN_PLAIN_FLOAT or value <= -_MIN_PLAIN_FLOAT:
                return value
            raise _SlowPath
        raise CanonicalJSONError(f"{value} is not a JSON number")
    if t is dict:
        out = {}
        for k, v in value.items():
            if type(k) is not str or (not k.isascii() and max(k) > "\uffff"):
                raise _SlowPath
            # Records are mostly flat strings and ints: skip the call for those.
            tv = type(v)
            if tv is str or tv is bool or v is None or (tv is int and -_MAX_INT <= v <= _MAX_INT):
                out[k] = v
            else:
                out[k] = _prepare(v)
        return out
    if t is list or t is tuple:
        return [_prepare(v) for v in value]
    if t is Prepared:
        return value
    raise _SlowPath


def canonical_json(value: object) -> bytes:
    """The RFC 8785 canonical UTF-8 encoding of a JSON-like value.

    Raises CanonicalJSONError for NaN, infinities, ints beyond ±(2**53 - 1),
    lone surrogates, non-string keys and types JSON does not have.
    """
    try:
        try:
            return _encode(_prepare(value))
        except _SlowPath:
            return rfc8785.dumps(cast(Any, value))
    except CanonicalJSONError:
        raise
    except (UnicodeEncodeError, orjson.JSONEncodeError) as e:
        raise CanonicalJSONError("string contains a lone surrogate, which is not Unicode") from e
    except RecursionError as e:
        raise CanonicalJSONError("value is nested too deeply or contains itself") from e
    except ValueError as e:  # rfc8785.CanonicalizationError, float domain errors
        raise CanonicalJSONError(str(e)) from e


def _reject_constant(name: str) -> object:
    raise CanonicalJSONError(f"{name} is not a JSON number")


def _finite_float(text: str) -> float:
    # "1e400" parses to inf without ever reaching parse_constant.
    value = float(text)
    if not math.isfinite(value):
        raise CanonicalJSONError(f"number {text} overflows a double")
    return value


def _int_literal(text: str) -> int | float:
    value = int(text)
    if -_MAX_INT <= value <= _MAX_INT:
        return value
    # JCS numbers are doubles, and canonical_json writes a double such as
    # 2.0**53 as an integer literal; taking such a literal back as that double
    # keeps parse-then-canonicalize stable. Any other big literal would be
    # rounded, so it is refused rather than silently changed.
    try:
        as_float = float(value)
    except OverflowError:
        as_float = math.inf
    if math.isfinite(as_float) and canonical_json(as_float) == text.encode():
        return as_float
    raise CanonicalJSONError(f"integer {text} is not exactly representable as a JSON number")


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj = dict(pairs)
    if len(obj) != len(pairs):
        seen: set[str] = set()
        for k, _ in pairs:
            if k in seen:
                raise CanonicalJSONError(f"duplicate key {k!r} in JSON object")
            seen.add(k)
    return obj


_decode = json.JSONDecoder(
    object_pairs_hook=_no_duplicates,
    parse_constant=_reject_constant,
    parse_float=_finite_float,
    parse_int=_int_literal,
).decode


def parse_json_object(text: str | bytes) -> dict[str, object]:
    """Parse JSON text whose top level is an object, rejecting duplicate keys and NaN."""
    if isinstance(text, bytes):
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError as e:
            raise CanonicalJSONError("JSON text is not valid UTF-8") from e
    try:
        value = _decode(text)
    except CanonicalJSONError:
        raise
    except ValueError as e:  # json.JSONDecodeError, and int digit limits
        raise CanonicalJSONError(f"not valid JSON: {e}") from e
    except RecursionError as e:
        raise CanonicalJSONError("JSON is nested too deeply") from e
    if type(value) is not dict:
        raise CanonicalJSONError(f"JSON top level is {type(value).__name__}, not an object")
    return value


def _check_plain(value: Any, keys: bool = True) -> None:
    """Raise _SlowPath unless orjson's encoding of `value` is already RFC 8785.

    The same three conditions as `_prepare`, checked without copying: canonical
    input holds no integral floats (they would be written as ints), so nothing
    needs converting on the fast path. `keys=False` skips the key check, for
    values parsed from ASCII text (which has no key beyond the BMP).
    """
    items = value.values() if type(value) is dict else value
    if keys and type(value) is dict:
        for k in value:
            if not k.isascii() and max(k) > "\uffff":
                raise _SlowPath
    for v in items:
        t = type(v)
        if t is str or t is bool or v is None:
            continue
        if t is float:
            if v.is_integer() or -_MIN_PLAIN_FLOAT < v < _MIN_PLAIN_FLOAT:
                raise _SlowPath
        elif t is int:
            if not -_MAX_INT <= v <= _MAX_INT:
                raise _SlowPath
        elif t is dict or t is list:
            _check_plain(v, keys)
        else:
            raise _SlowPath


def canonicalize_json_object(text: str) -> str:
    """The RFC 8785 form of JSON text whose top level is an object.

    The ledger's append path. Text that is already canonical (what MRM's own
    clients send) is confirmed with orjson in a few microseconds: if the
    canonical encoding of what orjson parsed equals the input byte for byte,
    the input can have held no duplicate key, since orjson would have dropped
    it. Anything else takes the strict parser, which names what is wrong.
    """
    if already_canonical_object(text.encode("utf-8", errors="surrogatepass")):
        return text
    return canonical_json(parse_json_object(text)).decode("utf-8")


def already_canonical_object(raw: bytes) -> bool:
    """Whether UTF-8 `raw` is, byte for byte, the RFC 8785 form of a JSON object.

    False means "not confirmed" (not canonical, not JSON, or a value only the
    reference encoder handles): take `canonicalize_json_object` then.
    """
    try:
        parsed = orjson.loads(raw)
        if type(parsed) is dict:
            _check_plain(parsed, keys=not raw.isascii())
            return _encode(parsed) == raw
    except (orjson.JSONDecodeError, orjson.JSONEncodeError, _SlowPath, CanonicalJSONError):
        pass
    return False
