"""The client catches a log that was rolled back or forked, with no help from the server.

The realistic way to roll a ledger back is to restore an old backup of its
home (database and signing key): the restored server signs honestly, but from
an older state. Records appended after that fork the log.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from mrm.tlog.note import generate_signer
from tests.conftest import RunningLedger, start_ledger
from tests.support.ledger_cli import append_many, cli, ok_json, one_error, refresh


class Servers:
    """Ledgers started by one test, all stopped at its end."""

    def __init__(self) -> None:
        self.running: list[RunningLedger] = []

    def start(self, home: Path) -> str:
        server = start_ledger(home)
        self.running.append(server)
        return server.addr

    def stop(self) -> None:
        while self.running:
            self.running.pop().stack.stop()


@pytest.fixture
def servers() -> Iterator[Servers]:
    s = Servers()
    yield s
    s.stop()


def test_restored_backup_is_a_rollback_then_a_fork(servers: Servers, tmp_path: Path) -> None:
    home, backup = tmp_path / "home", tmp_path / "backup"
    addr = servers.start(home)
    append_many(addr, 3)
    assert ok_json(addr, "ledger", "checkpoint", "--refresh")["tree_size"] == 3
    servers.stop()
    shutil.copytree(home, backup)

    addr = servers.start(home)
    append_many(addr, 3, start=3)
    seen = ok_json(addr, "ledger", "checkpoint", "--refresh")
    assert seen["tree_size"] == 6  # accepted after a 3 -> 6 consistency proof
    servers.stop()

    old = servers.start(backup)
    for command in (["checkpoint"], ["records"], ["verify"]):
        result = cli(old, "ledger", *command)
        assert result.exit_code == 1, result.output
        assert "was rolled back: it now shows 3 leaves" in result.stderr
        assert seen["note"].splitlines()[2] in result.stderr  # the note we remembered
        assert "checkpoint from the server:" in result.stderr
    refused = cli(old, "ledger", "append", "--kind", "gap", "--body", "{}")
    assert refused.exit_code == 1  # nothing is appended to a log that lied

    append_many(old, 3, start=100)  # a different history of the same length
    assert refresh(old) == 6
    forked = cli(old, "ledger", "checkpoint")
    assert forked.exit_code == 1
    assert "has forked: two signed checkpoints of 6 leaves" in forked.stderr

    append_many(old, 2, start=200)
    assert refresh(old) == 8
    longer = cli(old, "ledger", "checkpoint")
    assert longer.exit_code == 1
    assert "does not extend the one of 6 leaves" in longer.stderr


def test_pinned_key_that_the_log_does_not_use(ledger_server: RunningLedger) -> None:
    other = generate_signer("someone-else").vkey()
    result = cli(ledger_server.addr, "ledger", "checkpoint", env={"MRM_LEDGER_VKEY": other})
    assert result.exit_code == 1
    assert "does not verify" in one_error(result)


def test_pinned_key_that_matches(ledger_server: RunningLedger) -> None:
    vkey = ok_json(ledger_server.addr, "ledger", "checkpoint")["verifier_key"]
    result = cli(ledger_server.addr, "ledger", "checkpoint", env={"MRM_LEDGER_VKEY": vkey})
    assert result.exit_code == 0
    assert result.stderr == ""
