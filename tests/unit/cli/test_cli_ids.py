"""UUIDv7 record ids (RFC 9562 §5.7)."""

from __future__ import annotations

import threading
import time
import uuid

from mrm.client.ids import is_uuid7, new_record_id


def test_format_version_and_variant() -> None:
    rid = new_record_id()
    assert is_uuid7(rid)
    parsed = uuid.UUID(rid)
    assert str(parsed) == rid  # canonical lowercase 8-4-4-4-12
    assert parsed.version == 7
    assert parsed.variant == uuid.RFC_4122


def test_timestamp_is_unix_milliseconds() -> None:
    before = time.time_ns() // 1_000_000
    rid = new_record_id()
    after = time.time_ns() // 1_000_000
    assert before <= uuid.UUID(rid).int >> 80 <= after + 1


def test_ids_sort_in_creation_order() -> None:
    ids = [new_record_id() for _ in range(20_000)]
    assert ids == sorted(ids)
    assert len(set(ids)) == len(ids)
    time.sleep(0.002)
    assert new_record_id() > ids[-1]


def test_monotonic_across_threads() -> None:
    out: list[list[str]] = [[] for _ in range(4)]

    def work(bucket: list[str]) -> None:
        bucket.extend(new_record_id() for _ in range(2000))

    threads = [threading.Thread(target=work, args=(b,)) for b in out]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    everything = [i for bucket in out for i in bucket]
    assert len(set(everything)) == len(everything)
    for bucket in out:
        assert bucket == sorted(bucket)


def test_is_uuid7_rejects_other_forms() -> None:
    assert not is_uuid7(str(uuid.uuid4()))
    assert not is_uuid7(new_record_id().upper())
    assert not is_uuid7("abc")
    assert not is_uuid7(new_record_id() + "0")
