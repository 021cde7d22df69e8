"""Moved to tests/support/decisions.py; this name stays while tests in flight still
import it (no tests here)."""

from tests.support.decisions import (
    EXPLAIN_TABLE,
    decide,
    deploy_explained,
    wait_ready,
    wait_recorded,
)

__all__ = ["EXPLAIN_TABLE", "decide", "deploy_explained", "wait_ready", "wait_recorded"]
