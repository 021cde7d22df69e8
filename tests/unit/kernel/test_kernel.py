"""The shared kernel: its parsers say what is wrong, and the subject hash is one."""

from __future__ import annotations

import hashlib
import hmac
import re

import pytest

from mrm.core.errors import InvalidArgument, parse_field
from mrm.kernel import names
from mrm.kernel.ids import new_record_id, parse_record_id
from mrm.kernel.subjects import SubjectHasher, parse_subject_key


def test_a_fresh_record_id_parses() -> None:
    rid = new_record_id()
    assert str(parse_record_id(rid)) == rid


@pytest.mark.parametrize(
    ("value", "says"),
    [
        ("", "is required (a UUIDv7)"),
        ("nope", "'nope' is not a UUID (want a UUIDv7)"),
        ("0190A2B3-C4D5-7E6F-8A9B-0C1D2E3F4A5B", "not in canonical lowercase"),
        ("6ba7b810-9dad-11d1-80b4-00c04fd430c8", "is a version 1 UUID (want v7)"),
    ],
)
def test_a_bad_record_id_says_what_it_is(value: str, says: str) -> None:
    with pytest.raises(ValueError, match=re.escape(says)):
        parse_record_id(value)


def test_a_server_turns_a_kernel_error_into_a_field_error() -> None:
    with pytest.raises(InvalidArgument) as caught:
        parse_field("version", names.semver, "1.2")
    assert caught.value.field == "version"
    assert caught.value.description == "'1.2' is not semver (want MAJOR.MINOR.PATCH, e.g. 1.2.4)"
    assert parse_field("model_name", names.model_name, "credit-risk") == "credit-risk"


def test_the_subject_ref_is_hmac_sha256_under_the_key() -> None:
    key = bytes(range(32))
    want = hmac.new(key, b"customer-42", hashlib.sha256).hexdigest()
    assert SubjectHasher(key).subject_ref("customer-42") == "hmac-sha256:" + want
    assert SubjectHasher(key).subject_ref("") == ""


def test_a_short_subject_key_is_refused() -> None:
    with pytest.raises(ValueError, match="at least 16 bytes, not 8"):
        parse_subject_key("00" * 8)
