"""google.protobuf.Timestamp from the two forms MRM keeps time in."""

from __future__ import annotations

from datetime import datetime

from google.protobuf.timestamp_pb2 import Timestamp


def timestamp(moment: datetime) -> Timestamp:
    """A datetime as a Timestamp; a naive one is taken as UTC."""
    ts = Timestamp()
    ts.FromDatetime(moment)
    return ts


def timestamp_us(micros: int) -> Timestamp:
    """Microseconds since the epoch (how the stores keep time) as a Timestamp."""
    return Timestamp(seconds=micros // 1_000_000, nanos=(micros % 1_000_000) * 1000)
