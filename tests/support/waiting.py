"""Waiting for real servers in tests: a free local port to start one on, and a
bounded poll until something they do becomes true."""

from __future__ import annotations

import socket
import time
from collections.abc import Callable

DEADLINE = 120.0
"""Seconds `wait_until` waits by default: generous, for a loaded CI machine."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_until(condition: Callable[[], bool], what: str, timeout: float = DEADLINE) -> None:
    """Poll `condition` every 20 ms; fail with "timed out waiting until `what`"."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting until {what}")
        time.sleep(0.02)
