"""The suite's own credential, and channels that present it.

Every stack `tests.conftest.start_ledger` starts holds TEST_TOKEN (all roles) in
its tokens file, and the autouse fixture sets MRM_TOKEN to it, so SDK clients
made in a test authenticate as "test-suite". Raw gRPC stubs use `channel()`.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import grpc

from mrm.client.channel import open_channel
from mrm.client.credentials import ClientAuth
from mrm.core.auth import tokens
from mrm.core.auth.principal import ROLES

TEST_TOKEN = tokens.new_token()
TEST_PRINCIPAL = "test-suite"


def channel(addr: str) -> grpc.Channel:
    """A channel to `addr` that sends TEST_TOKEN with every call."""
    return open_channel(addr, ClientAuth(TEST_TOKEN, None, "the test suite"))


def seed_test_token(tokens_file: Path) -> None:
    """Put TEST_TOKEN (every role) in a tokens file, creating it if need be."""
    sha = tokens.token_sha256(TEST_TOKEN)
    with tokens.editing(tokens_file) as entries:
        if not any(e.sha256 == sha for e in entries):
            entries.append(
                tokens.TokenEntry(
                    sha,
                    TEST_PRINCIPAL,
                    tuple(ROLES),
                    issued_at="2026-01-01T00:00:00Z",
                    issued_by="system:test-suite",
                    digest=bytes.fromhex(sha),
                )
            )


def issue(tokens_file: Path, principal: str, *roles: str, models: tuple[str, ...] = ("*",)) -> str:
    """A new token of `roles` in a stack's tokens file (servers see it within a second)."""
    with tokens.editing(tokens_file) as entries:
        token, _ = tokens.issue(
            entries, principal, roles, models=models, issued_by="system:test-suite"
        )
    return token


def seed_service_home(home: Path, *names: str) -> None:
    """A service process's own MRM_HOME: its tokens file holding TEST_TOKEN (so the
    suite can call it), and TEST_TOKEN as the token of each of `names` (e.g. "proxy")
    it presents to the other services."""
    home.mkdir(parents=True, exist_ok=True)
    seed_test_token(home / "tokens.json")
    for name in names:
        path = home / f"{name}.token"
        path.write_text(TEST_TOKEN + "\n")
        path.chmod(0o600)


def status_of(call: Callable[[], object]) -> grpc.StatusCode:
    """The status a call ends with (OK when it returns)."""
    try:
        call()
    except grpc.RpcError as e:
        return e.code()
    return grpc.StatusCode.OK
