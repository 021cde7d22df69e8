"""A deployed model whose live traffic drifted, for the monitor's end-to-end tests.

`drifted_stack` starts the whole stack on a fresh PostgreSQL database (its fixture
asks for `postgres_server`, which marks its tests `postgres`), deploys
credit-risk 1.0.0 with `mrmctl deploy` (a 300-row window), sends one window of
applications whose income is shifted through the proxy, and waits until the
running monitor has recorded its alerts.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import pytest
from click.testing import CliRunner, Result

from mrm.cli.main import mrmctl
from mrm.client.ledger import LedgerClient, Record
from mrm.client.monitor import MonitorClient
from mrm.v1 import monitor_pb2
from tests.conftest import RunningLedger, start_ledger
from tests.support import postgres
from tests.support.auth import issue
from tests.support.credit import applicants, deploy, project, tree_model
from tests.support.decisions import decide
from tests.support.inference import wait_ready

MODEL = "credit-risk"
VERSION = "1.0.0"
WINDOW_ROWS = 300
MONITOR_TOML = f"[monitor]\nmin_rows = 200\n[[monitor.window]]\nrows = {WINDOW_ROWS}\n"
FEATURES = ["income", "debt_to_income", "credit_history_months"]


@dataclass
class Drifted:
    stack: RunningLedger
    decisions: list[str]
    alerts: list[monitor_pb2.Alert]
    tokens: dict[str, str] = field(default_factory=dict)
    """Principal-named tokens: ops (deployer), auditor, fraud-ops (deployer of fraud-*)."""

    @property
    def monitor_addr(self) -> str:
        return self.stack.stack.stack.monitor_addr

    def run(self, *args: str, token: str | None = None) -> Result:
        """`mrmctl` against this stack, as the suite's principal unless `token` is given."""
        env = {"MRM_TOKEN": token} if token is not None else None
        return CliRunner().invoke(
            mrmctl,
            [
                "--ledger-addr", self.stack.addr,
                "--registry-addr", self.stack.registry_addr,
                "--monitor-addr", self.monitor_addr,
                *args,
            ],
            env=env,
        )  # fmt: skip

    def records(self, kind: str) -> list[Record]:
        with LedgerClient(self.stack.addr) as ledger:
            return list(ledger.query(kind=kind, model_name=MODEL))

    def tree_size(self) -> int:
        with LedgerClient(self.stack.addr) as ledger:
            return int(ledger.checkpoint(refresh=True).tree_size)


def wait_for_alerts(
    addr: str, *, at_least: int = 1, timeout: float = 90.0
) -> list[monitor_pb2.Alert]:
    """Poll ListAlerts (bounded) until the monitor has raised `at_least` alerts of MODEL."""
    deadline = time.monotonic() + timeout
    with MonitorClient(addr) as monitor:
        while True:
            found = list(monitor.alerts(model_name=MODEL))
            if len(found) >= at_least:
                return found
            assert time.monotonic() < deadline, "the monitor raised no alert on a drifted window"
            time.sleep(0.2)


def drifted_stack(tmp: Path) -> Iterator[Drifted]:
    """The body of a module-scoped fixture: see the module docstring."""
    with postgres.fresh_database() as url, pytest.MonkeyPatch.context() as mp:
        mp.setenv("MRM_CONFIG_DIR", str(tmp / "mrmctl-config"))
        stack = start_ledger(tmp / "home", url)
        try:
            project_dir = tmp / "project"
            project_dir.mkdir()
            project(project_dir, tree_model)
            toml = project_dir / "mrm.toml"
            toml.write_text(toml.read_text() + MONITOR_TOML)
            done = deploy(stack, project_dir, "model.pkl", "--version", VERSION, monkeypatch=mp)
            assert done.exit_code == 0, done.output
            wait_ready(stack, MODEL)
            tokens_file = stack.settings.resolved_tokens_file()
            tokens = {
                "ops": issue(tokens_file, "ops@bank.example", "deployer"),
                "auditor": issue(tokens_file, "audit@bank.example", "auditor"),
                "fraud-ops": issue(
                    tokens_file, "fraud-ops@bank.example", "deployer", models=("fraud-*",)
                ),
            }
            # One full window of applicants whose income nearly doubled.
            frame = applicants(WINDOW_ROWS, 12)[FEATURES]
            frame["income"] = frame["income"] * 1.8
            decisions = decide(stack, MODEL, frame.to_numpy(), "drifted-applicant")
            world = Drifted(stack, decisions, [], tokens)
            world.alerts = wait_for_alerts(world.monitor_addr)
            # The window's alerts are appended in one batch with its DRIFT record.
            assert world.records("DRIFT"), "alerts without their DRIFT record"
            yield world
        finally:
            stack.stack.stop()


def rpc_error(call: object) -> grpc.RpcError:
    """The RpcError a zero-argument call raises (fails the test if it succeeds)."""
    assert callable(call)
    with pytest.raises(grpc.RpcError) as raised:
        call()
    return raised.value
